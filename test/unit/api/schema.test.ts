import { test } from "node:test";
import assert from "node:assert/strict";
import { describeErrors, parseEngineCluster, parseSpec, type FieldError } from "../../../src/api/index.ts";

const base = { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: "psum", namespace: "default" } };
const mpiSpec = (extra: Record<string, unknown> = {}, engines = 8) => ({ engines, backend: { mpi: { image: "ghcr.io/ipp/engine:9.2", ...extra } } });
const pbs = (extra: Record<string, unknown> = {}) => ({
  engines: 8,
  backend: { pbs: { host: "login.carc.example.edu", user: "alice", credentialsSecret: "carc-ssh", ...extra } },
});

function errorsOf(spec: unknown): FieldError[] {
  const r = parseSpec(spec);
  assert.equal(r.ok, false, "expected the spec to be rejected");
  return r.ok ? [] : r.errors;
}

test("a minimal mpi spec parses with every default filled in", () => {
  const r = parseEngineCluster({ ...base, spec: mpiSpec() });
  assert.ok(r.ok, r.ok ? "" : describeErrors(r.errors));
  assert.deepEqual(r.value.spec, {
    engines: 8,
    backend: { mpi: { image: "ghcr.io/ipp/engine:9.2", imagePullPolicy: "IfNotPresent", slotsPerWorker: 1, implementation: "openmpi", workersReadyTimeoutSeconds: 300 } },
    controller: { imagePullPolicy: "IfNotPresent", service: { type: "ClusterIP", exposeApi: false }, heartbeatPeriodMs: 3000, taskScheme: "leastload", curve: false, taskRecords: "memory", apiAuth: "token", reattachTimeoutSeconds: 120 },
  });
});

test("a full pbs spec parses with defaults", () => {
  const r = parseSpec(pbs({
    queue: "debug", walltime: "01:00:00", account: "proj-42", select: "2:ncpus=8:mpiprocs=8",
    modules: ["gcc/12", "openmpi/4.1"], setup: ["source /opt/env.sh", "export OMP_NUM_THREADS=1"], extraDirectives: ["-m abe", "-l mem=4gb"],
    network: { mode: "direct", address: "10.0.0.5" },
  }));
  assert.ok(r.ok, r.ok ? "" : describeErrors(r.errors));
  assert.equal(r.value.backend.pbs?.port, 22);
  assert.equal(r.value.backend.pbs?.dialect, "auto");
  assert.equal(r.value.backend.pbs?.resubmitOnWalltime, true);
  assert.deepEqual(r.value.backend.pbs?.network, { mode: "direct", address: "10.0.0.5" });
});

test("pbs network defaults to sshTunnel", () => {
  const r = parseSpec(pbs());
  assert.ok(r.ok);
  assert.deepEqual(r.value.backend.pbs?.network, { mode: "sshTunnel" });
});

test("backend needs exactly one of mpi or pbs", () => {
  assert.deepEqual(errorsOf({ engines: 1, backend: {} }), [{ field: "spec.backend", message: "spec.backend: exactly one of mpi or pbs must be set" }]);
  const both = errorsOf({ engines: 1, backend: { ...mpiSpec().backend, ...pbs().backend } });
  assert.deepEqual(both.map((e) => e.field), ["spec.backend"]);
});

test("engines must be an integer in range", () => {
  for (const engines of [0, -1, 2.5, 5000, "8"]) {
    const errs = errorsOf(mpiSpec({}, engines as number));
    assert.deepEqual(errs.map((e) => e.field), ["spec.engines"], `engines=${String(engines)}`);
  }
});

test("mpi capacity rule: workers × slotsPerWorker ≥ engines", () => {
  assert.deepEqual(errorsOf(mpiSpec({ workers: 2, slotsPerWorker: 3 }, 8)), [{
    field: "spec.backend.mpi.workers", message: "spec.backend.mpi.workers × spec.backend.mpi.slotsPerWorker must be at least spec.engines",
  }]);
  assert.ok(parseSpec(mpiSpec({ workers: 2, slotsPerWorker: 4 }, 8)).ok);
  assert.ok(parseSpec(mpiSpec({ slotsPerWorker: 3 }, 8)).ok, "workers defaults to ceil(engines/slots)");
});

test("mpi field validation names the field", () => {
  assert.deepEqual(errorsOf(mpiSpec({ implementation: "intel" })).map((e) => e.field), ["spec.backend.mpi.implementation"]);
  assert.deepEqual(errorsOf(mpiSpec({ image: "bad image; rm -rf /" })).map((e) => e.field), ["spec.backend.mpi.image"]);
  assert.deepEqual(errorsOf(mpiSpec({ env: [{ name: "1BAD", value: "x" }] })).map((e) => e.field), ["spec.backend.mpi.env[0].name"]);
  assert.deepEqual(errorsOf(mpiSpec({ resources: { limits: { cpu: "lots" } } })).map((e) => e.field), ["spec.backend.mpi.resources.limits.cpu"]);
  assert.ok(parseSpec(mpiSpec({ resources: { limits: { cpu: 2, memory: "4Gi" }, requests: { cpu: "500m" } } })).ok);
  assert.deepEqual(errorsOf(mpiSpec({ engineArgs: ["--log-level=WARN", "$(reboot)"] })).map((e) => e.field), ["spec.backend.mpi.engineArgs[1]"]);
});

test("controller field validation", () => {
  const spec = (controller: unknown) => ({ ...mpiSpec(), controller });
  assert.deepEqual(errorsOf(spec({ heartbeatPeriodMs: 50 })).map((e) => e.field), ["spec.controller.heartbeatPeriodMs"]);
  assert.deepEqual(errorsOf(spec({ taskScheme: "random" })).map((e) => e.field), ["spec.controller.taskScheme"]);
  assert.deepEqual(errorsOf(spec({ service: { type: "ExternalName" } })).map((e) => e.field), ["spec.controller.service.type"]);
});

// Every pbs field that reaches the remote shell rejects shell metacharacters.
const SHELL_FIELDS: [string, (bad: string) => Record<string, unknown>][] = [
  ["host", (v) => ({ host: v })],
  ["user", (v) => ({ user: v })],
  ["credentialsSecret", (v) => ({ credentialsSecret: v })],
  ["queue", (v) => ({ queue: v })],
  ["walltime", (v) => ({ walltime: v })],
  ["account", (v) => ({ account: v })],
  ["select", (v) => ({ select: v })],
  ["modules[0]", (v) => ({ modules: [v] })],
  ["setup[0]", (v) => ({ setup: [v] })],
  ["extraDirectives[0]", (v) => ({ extraDirectives: [v] })],
  ["network.address", (v) => ({ network: { mode: "direct", address: v } })],
];
const NASTY = ["a;reboot", "a|b", "a&b", "$(id)", "`id`", "a>b", "a<b", "'x'", "\"x\"", "a\\b", "a*", "a\nb", "a#b", "a{b}", "a!b", "a b  c"];

for (const [field, make] of SHELL_FIELDS) {
  test(`spec.backend.pbs.${field} rejects shell metacharacters`, () => {
    for (const bad of NASTY) {
      const errs = errorsOf(pbs(make(bad)));
      assert.ok(errs.some((e) => e.field === `spec.backend.pbs.${field}`), `${JSON.stringify(bad)} accepted: ${describeErrors(errs)}`);
    }
  });
}

test("pbs cross-field rules", () => {
  assert.deepEqual(errorsOf(pbs({ select: "1:ncpus=8", nodes: 1, ppn: 8 })), [{
    field: "spec.backend.pbs.select", message: "spec.backend.pbs: set either select (PBS Pro) or nodes/ppn (Torque), not both",
  }]);
  assert.deepEqual(errorsOf(pbs({ network: { mode: "direct" } })), [{
    field: "spec.backend.pbs.network.address", message: "spec.backend.pbs.network.address is required when network.mode is direct, unless spec.controller.service.type is LoadBalancer",
  }]);
  // a LoadBalancer Service gives the address itself
  assert.equal(parseSpec({ ...pbs({ network: { mode: "direct" } }), controller: { service: { type: "LoadBalancer" } } }).ok, true);
  assert.deepEqual(errorsOf(pbs({ dialect: "lsf" })).map((e) => e.field), ["spec.backend.pbs.dialect"]);
});

test("parseEngineCluster checks apiVersion and kind, and reports paths from the root", () => {
  const r = parseEngineCluster({ ...base, apiVersion: "ipp.dev/v1", spec: mpiSpec({ slotsPerWorker: 0 }) });
  assert.equal(r.ok, false);
  if (!r.ok) assert.deepEqual(r.errors.map((e) => e.field).sort(), ["apiVersion", "spec.backend.mpi.slotsPerWorker"]);
  const missing = parseEngineCluster({ ...base });
  assert.equal(missing.ok, false);
  if (!missing.ok) assert.deepEqual(missing.errors.map((e) => e.field), ["spec"]);
});

test("describeErrors joins and truncates", () => {
  const errs = Array.from({ length: 7 }, (_, i) => ({ field: `f${i}`, message: "bad" }));
  assert.equal(describeErrors(errs, 2), "f0: bad; f1: bad; and 5 more");
});

test("metadata.name: a DNS label of at most 40 characters", () => {
  const named = (name: string) => parseEngineCluster({ ...base, metadata: { name }, spec: mpiSpec() });
  assert.ok(named("psum-2").ok);
  for (const bad of ["a".repeat(41), "9lives", "Psum", "psum.x", "psum-"]) {
    const r = named(bad);
    assert.equal(r.ok, false, bad);
    if (!r.ok) assert.deepEqual(r.errors.map((e) => e.field), ["metadata.name"]);
  }
});
