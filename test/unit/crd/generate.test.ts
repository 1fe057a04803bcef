import { test } from "node:test";
import assert from "node:assert/strict";
import { parse } from "yaml";
import { checkStructural, engineClusterCrd, renderCrdYaml } from "../../../src/crd/generate.ts";

type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const crd = engineClusterCrd() as unknown as J;
const version = crd.spec.versions[0] as J;
const root = version.schema.openAPIV3Schema as J;
const spec = root.properties.spec as J;

function walk(node: unknown, visit: (n: J, path: string) => void, path = ""): void {
  if (Array.isArray(node)) { node.forEach((n, i) => walk(n, visit, `${path}[${i}]`)); return; }
  if (typeof node !== "object" || node === null) return;
  visit(node as J, path);
  for (const [k, v] of Object.entries(node)) if (!k.startsWith("x-kubernetes-") && k !== "default" && k !== "enum") walk(v, visit, `${path}.${k}`);
}

test("names, scope, version", () => {
  assert.equal(crd.metadata.name, "engineclusters.ipp.dev");
  assert.deepEqual(crd.spec.names, { kind: "EngineCluster", listKind: "EngineClusterList", plural: "engineclusters", singular: "enginecluster", shortNames: ["ec"], categories: ["ipp"] });
  assert.equal(crd.spec.scope, "Namespaced");
  assert.equal(version.name, "v1alpha1");
  assert.equal(version.served, true);
  assert.equal(version.storage, true);
});

test("status and scale subresources", () => {
  assert.deepEqual(version.subresources, { status: {}, scale: { specReplicasPath: ".spec.engines", statusReplicasPath: ".status.engines.registered" } });
});

test("printer columns: Backend, Desired, Ready, Phase, Reason, Age", () => {
  assert.deepEqual(version.additionalPrinterColumns.map((c: J) => [c.name, c.type, c.jsonPath]), [
    ["Backend", "string", ".status.backend"],
    ["Desired", "integer", ".spec.engines"],
    ["Ready", "integer", ".status.engines.registered"],
    ["Phase", "string", ".status.phase"],
    ["Reason", "string", ".status.reason"],
    ["Age", "date", ".metadata.creationTimestamp"],
  ]);
  // every printer column path exists in the schema
  for (const c of version.additionalPrinterColumns as J[]) {
    if (c.jsonPath.startsWith(".metadata")) continue;
    let node: J | undefined = root;
    for (const seg of c.jsonPath.slice(1).split(".")) node = node?.properties?.[seg];
    assert.ok(node, `${c.jsonPath} not in the schema`);
  }
});

test("schema is structural: no $ref/definitions/additionalProperties beside properties/type null, every node typed", () => {
  checkStructural(root);
  walk(root, (n, p) => {
    assert.ok(!("$ref" in n) && !("definitions" in n) && !("$schema" in n), p);
    assert.ok(!(n.properties && n.additionalProperties), `${p}: additionalProperties beside properties`);
    assert.notEqual(n.type, "null", p);
  });
});

test("no ±2^53 integer bounds leak from z.int()", () => {
  walk(root, (n, p) => {
    assert.ok(Math.abs(n.minimum ?? 0) < Number.MAX_SAFE_INTEGER, `${p}.minimum`);
    assert.ok(Math.abs(n.maximum ?? 0) < Number.MAX_SAFE_INTEGER, `${p}.maximum`);
  });
});

test("checkStructural rejects what Kubernetes rejects", () => {
  assert.throws(() => checkStructural({ type: "object", properties: { a: { $ref: "#/x" } } }), /\$ref/);
  assert.throws(() => checkStructural({ type: "object", properties: { a: { type: "string" } }, additionalProperties: false }), /additionalProperties/);
  assert.throws(() => checkStructural({ type: "object", properties: { a: { anyOf: [{ type: "string" }, { type: "null" }] } } }), /anyOf|null/);
  assert.throws(() => checkStructural({ type: "object", properties: { a: { description: "untyped" } } }), /type/);
});

test("defaults are visible in the schema", () => {
  const mpi = spec.properties.backend.properties.mpi.properties;
  assert.equal(mpi.slotsPerWorker.default, 1);
  assert.equal(mpi.implementation.default, "openmpi");
  assert.deepEqual(mpi.implementation.enum, ["openmpi", "mpich"]);
  const ctl = spec.properties.controller;
  assert.deepEqual(ctl.default, {});
  assert.equal(ctl.properties.heartbeatPeriodMs.default, 3000);
  assert.equal(ctl.properties.taskScheme.default, "leastload");
  assert.equal(ctl.properties.curve.default, false);
  assert.equal(ctl.properties.service.properties.type.default, "ClusterIP");
  const pbsNet = spec.properties.backend.properties.pbs.properties.network;
  assert.equal(pbsNet.properties.mode.default, "sshTunnel");
  assert.deepEqual(spec.required, ["engines", "backend"]);
  assert.equal(spec.properties.engines.minimum, 1);
});

test("resource quantities are int-or-string", () => {
  const q = spec.properties.backend.properties.mpi.properties.resources.properties.limits.additionalProperties;
  assert.equal(q["x-kubernetes-int-or-string"], true);
  assert.deepEqual(q.anyOf, [{ type: "integer" }, { type: "string" }]);
  assert.match("500m", new RegExp(q.pattern));
  assert.doesNotMatch("lots", new RegExp(q.pattern));
});

test("CEL rules are present, with messages that name the field and fieldPaths", () => {
  const rules: J[] = [];
  walk(root, (n) => { if (Array.isArray(n["x-kubernetes-validations"])) rules.push(...n["x-kubernetes-validations"]); });
  // 5, plus spec.controller.clients[]: the peer's "a selector is set" and each selector's matchExpressions rule
  assert.equal(rules.length, 8);
  for (const r of rules) {
    assert.equal(typeof r.rule, "string");
    assert.match(r.message, /^(spec|metadata)\./, "message names the field");
  }
  assert.deepEqual(spec["x-kubernetes-validations"].map((r: J) => r.fieldPath), [".backend.mpi.workers", ".backend.pbs.network.address"]);
  assert.ok(spec.properties.backend["x-kubernetes-validations"][0].rule.includes("has(self.mpi)"));
  assert.ok(root["x-kubernetes-validations"][0].rule.includes("self.metadata.name.size() <= 40"));
});

test("shell-reaching pbs fields carry patterns", () => {
  const p = spec.properties.backend.properties.pbs.properties;
  for (const f of ["host", "user", "credentialsSecret", "queue", "walltime", "account", "select"]) assert.ok(p[f].pattern, f);
  for (const f of ["modules", "setup", "extraDirectives"]) assert.ok(p[f].items.pattern, f);
  assert.ok(p.network.properties.address.pattern);
});

test("conditions are a list-map keyed by type", () => {
  const c = root.properties.status.properties.conditions;
  assert.equal(c["x-kubernetes-list-type"], "map");
  assert.deepEqual(c["x-kubernetes-list-map-keys"], ["type"]);
  assert.deepEqual([...c.items.required].sort(), ["lastTransitionTime", "message", "reason", "status", "type"]);
});

test("YAML rendering round-trips to the same object", () => {
  assert.deepEqual(parse(renderCrdYaml()), crd);
});
