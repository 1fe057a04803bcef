/**
 * The JSON API's `kubernetes` authentication against a real kube-apiserver, real engines and our
 * controller. ServiceAccounts get real tokens through TokenRequest; RBAC grants the chart's
 * api-access ClusterRole (create on engineclusters/api) to one of them in the cluster's namespace,
 * in another namespace to a second, and nothing to a third. Both reviewers are exercised:
 * - `ipp-operator controller --api-auth=kubernetes` with a reviewer ServiceAccount bound to
 *   system:auth-delegator (TokenReview + SubjectAccessReview as the controller's identity);
 * - the controller in-process with the self reviewer (a SelfSubjectAccessReview sent with the
 *   caller's token), as the operator's controller Deployment runs it.
 * Every API route: the allowed identity and the cluster's token run code; the others get 403 or
 * 401 and run nothing; no token reaches a log line; a denial is not cached for long.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { startController, type ControllerHandle } from "../../../src/controller/controller.ts";
import { kubernetesAuth, newApiToken } from "../../../src/controller/http/auth.ts";
import { selfReviewer } from "../../../src/controller/http/kube-reviews.ts";
import { startHttpServer, type HttpServerHandle } from "../../../src/controller/http/server.ts";
import type { EngineConnectionInfo } from "../../../src/controller/connection-files.ts";
import { loadConnectionConfig } from "../../../src/operator/kube/config.ts";
import { launchEngines, type EngineGroup } from "../../../src/local/engines.ts";
import { createLogger, silentLogger } from "../../../src/util/log.ts";
import { createNamespace, freePort, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { python, REPO_ROOT } from "../../support/paths.ts";
import { one, renderChart } from "../chart/render.ts";
import { serviceAccountKubeconfig } from "../chart/operator-under-chart.ts";

const NS = "sci";
const OTHER_NS = "other";
const CLUSTER = "psum";
const ENGINES = 2;

let api: ApiServer;
let dir: string;
const tokens: Record<"alice" | "bob" | "carol" | "dave", string> = { alice: "", bob: "", carol: "", dave: "" };

async function tokenFor(namespace: string, name: string): Promise<string> {
  const tr = await api.client.request<{ status: { token: string } }>("POST", `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
  });
  return tr.status.token;
}

async function create(path: string, body: Record<string, unknown>): Promise<void> {
  await api.client.request("POST", path, { body });
}

const roleBinding = (namespace: string, name: string, clusterRole: string, sa: { namespace: string; name: string }) => create(
  `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`, {
    apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: clusterRole },
    subjects: [{ kind: "ServiceAccount", namespace: sa.namespace, name: sa.name }],
  });

before(async () => {
  api = await startApiServer();
  dir = mkdtempSync(join(tmpdir(), "ipp-kube-auth-"));
  for (const ns of [NS, OTHER_NS]) await createNamespace(api.client, ns);
  await create(`/apis/ipp.dev/v1alpha1/namespaces/${NS}/engineclusters`, {
    apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: CLUSTER },
    spec: { engines: ENGINES, backend: { mpi: { image: "registry.example.org/ipp-engine:1" } }, controller: { apiAuth: "kubernetes" } },
  });
  // the chart's ClusterRole for API users, as helm renders it
  const apiAccess = one(renderChart(), "ClusterRole", "ipp-ipp-operator-api-access");
  await create("/apis/rbac.authorization.k8s.io/v1/clusterroles", apiAccess as unknown as Record<string, unknown>);
  for (const [ns, name] of [[NS, "alice"], [NS, "bob"], [OTHER_NS, "carol"], [NS, "dave"], [NS, "reviewer"]] as const) {
    await create(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name } });
  }
  // alice: the API verb in the cluster's namespace; carol: only in another namespace; bob, dave: nothing (yet)
  await roleBinding(NS, "alice-api", apiAccess.metadata.name, { namespace: NS, name: "alice" });
  await roleBinding(OTHER_NS, "carol-api", apiAccess.metadata.name, { namespace: OTHER_NS, name: "carol" });
  // the delegated reviewer's identity: system:auth-delegator (TokenReview + SubjectAccessReview)
  await create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
    apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding", metadata: { name: "ipp-reviewer-auth-delegator" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:auth-delegator" },
    subjects: [{ kind: "ServiceAccount", namespace: NS, name: "reviewer" }],
  });
  tokens.alice = await tokenFor(NS, "alice");
  tokens.bob = await tokenFor(NS, "bob");
  tokens.carol = await tokenFor(OTHER_NS, "carol");
  tokens.dave = await tokenFor(NS, "dave");
});

after(async () => {
  await api?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function call(base: string, method: string, path: string, token: string | undefined, body?: unknown, contentType?: string) {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  let payload: string | Buffer | undefined;
  if (body !== undefined) {
    payload = Buffer.isBuffer(body) ? body : JSON.stringify(body);
    headers["content-type"] = contentType ?? "application/json";
  }
  const res = await fetch(base + path, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
  const text = await res.text();
  return { status: res.status, json: text.startsWith("{") ? JSON.parse(text) as { error?: string } : undefined, text };
}

async function waitEngines(controllerEngines: () => number, group: EngineGroup): Promise<void> {
  const deadline = Date.now() + 180_000;
  while (controllerEngines() < ENGINES) {
    if (Date.now() > deadline) throw new Error(`engines did not register; output:\n${group.outputTail()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Every route with every identity. `allowed` run code (a marker file per identity and route
 * appears); the rest are refused with `status` and their markers never appear.
 */
async function checkEveryRoute(base: string, clusterToken: string, markers: string): Promise<void> {
  mkdirSync(markers, { recursive: true });
  const who: Array<[string, string | undefined, number]> = [
    ["cluster-token", clusterToken, 200],
    ["alice", tokens.alice, 200],
    ["bob", tokens.bob, 403],
    ["carol", tokens.carol, 403],
    ["none", undefined, 401],
    ["garbage", "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJub2JvZHkifQ.c2lnbmF0dXJl", 401],
    ["wrong-api-token", newApiToken(), 401],
  ];
  for (const [name, token, want] of who) {
    const marker = (route: string) => join(markers, `${name}-${route}`);
    const touch = (route: string) => `open(${JSON.stringify(marker(route))}, "w").write("x")`;
    const results = {
      engines: await call(base, "GET", "/api/v1/engines", token),
      execute: await call(base, "POST", "/api/v1/execute", token, { code: touch("execute") }),
      scatter: await call(base, "PUT", `/api/v1/arrays/a_${name.replaceAll("-", "_")}`, token, { data: [1, 2, 3, 4] }),
      scatterRaw: await call(base, "PUT", `/api/v1/arrays/r_${name.replaceAll("-", "_")}?dtype=int64`, token, Buffer.from(new BigInt64Array([1n, 2n]).buffer), "application/octet-stream"),
      gather: await call(base, "GET", `/api/v1/arrays/a_${name.replaceAll("-", "_")}`, token),
    };
    for (const [route, r] of Object.entries(results)) {
      if (want === 200) {
        assert.equal(r.status, 200, `${name} ${route}: ${r.text.slice(0, 300)}`);
      } else {
        assert.equal(r.status, want, `${name} ${route}: ${r.text.slice(0, 300)}`);
        assert.equal(r.json?.error, want === 403 ? "forbidden" : "unauthorized", `${name} ${route}`);
      }
    }
    assert.equal(existsSync(marker("execute")), want === 200, `${name}: code ran only with the credential`);
    const unknown = await call(base, "GET", "/api/v1/no-such-route", token);
    assert.equal(unknown.status, want === 200 ? 404 : want, `${name} unknown route`);
  }
  // what the refused identities tried to scatter is not on the engines
  for (const name of ["bob", "carol", "none", "garbage"]) {
    assert.equal((await call(base, "GET", `/api/v1/arrays/a_${name}`, clusterToken)).json?.error, "array_not_found", name);
  }
}

describe("ipp-operator controller --api-auth=kubernetes (TokenReview + SubjectAccessReview as a reviewer ServiceAccount)", { timeout: 600_000 }, () => {
  let child: ChildProcess | undefined;
  let group: EngineGroup | undefined;
  let output = "";
  let base = "";
  let metricsBase = "";
  let clusterToken = "";

  before(async () => {
    const profile = join(dir, "profile-cli");
    const kubeconfig = join(dir, "reviewer.kubeconfig");
    await serviceAccountKubeconfig(api, NS, "reviewer", kubeconfig);
    const [httpPort, metricsPort] = [await freePort(), await freePort()];
    child = spawn(join(REPO_ROOT, "bin/ipp-operator"), [
      "controller", "--profile-dir", profile, "--ip=127.0.0.1", `--http-port=${httpPort}`, `--metrics-port=${metricsPort}`,
      "--api-auth=kubernetes", `--api-auth-cluster=${NS}/${CLUSTER}`, `--api-auth-kubeconfig=${kubeconfig}`, "--log-level=debug",
    ], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, KUBECONFIG: "" } });
    child.stdout!.on("data", (b: Buffer) => { output += b.toString(); });
    child.stderr!.on("data", (b: Buffer) => { output += b.toString(); });
    const engineFile = join(profile, "security", "ipcontroller-engine.json");
    const tokenFile = join(profile, "security", "ipcontroller-api-token");
    const deadline = Date.now() + 60_000;
    while (!/serving the API over HTTP/.test(output)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`controller did not start:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    clusterToken = readFileSync(tokenFile, "utf8").trim();
    base = `http://127.0.0.1:${httpPort}`;
    metricsBase = `http://127.0.0.1:${metricsPort}`;
    const info = JSON.parse(readFileSync(engineFile, "utf8")) as EngineConnectionInfo;
    group = launchEngines({ engines: ENGINES, mpiexec: "mpiexec", python: python(9), connectionInfo: info, asRoot: process.getuid?.() === 0 }, { logger: silentLogger });
    const engines = async () => {
      const r = await call(base, "GET", "/api/v1/engines", clusterToken);
      return r.status === 200 ? ((r.json as unknown as { engines: unknown[] }).engines.length) : 0;
    };
    const until = Date.now() + 180_000;
    while (await engines() < ENGINES) {
      if (Date.now() > until) throw new Error(`engines did not register; output:\n${group.outputTail()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  after(async () => {
    await group?.stop({ graceMs: 3000 });
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
  });

  test("every route: alice (granted in the namespace) and the cluster token run code; bob, carol (granted elsewhere), no or a bad token run nothing", async () => {
    await checkEveryRoute(base, clusterToken, join(dir, "markers-cli"));
    const metrics = await (await fetch(`${metricsBase}/metrics`)).text();
    assert.match(metrics, /^ipp_controller_api_auth_failures_total\{reason="forbidden"\} [1-9]\d*$/m);
    assert.match(metrics, /^ipp_controller_api_auth_failures_total\{reason="invalid"\} [1-9]\d*$/m);
    assert.match(metrics, /^ipp_controller_api_auth_failures_total\{reason="missing"\} [1-9]\d*$/m);
    for (const [name, t] of [...Object.entries(tokens), ["cluster", clusterToken]] as Array<[string, string]>) {
      assert.ok(!output.includes(t), `${name}'s token is not in the controller's output (debug level)`);
    }
  });
});

describe("the controller's self reviewer (SelfSubjectAccessReview with the caller's token), as the operator's Deployment runs it", { timeout: 600_000 }, () => {
  let controller: ControllerHandle | undefined;
  let group: EngineGroup | undefined;
  let http: HttpServerHandle | undefined;
  const logs: string[] = [];
  const clusterToken = newApiToken();
  let base = "";

  before(async () => {
    const registry = new Registry();
    controller = await startController({ ip: "127.0.0.1", key: randomUUID(), heartbeatPeriodMs: 1000, taskScheme: "leastload" }, { logger: silentLogger, registry });
    const conn = await loadConnectionConfig({ kubeconfig: api.kubeconfigPath, env: {} });
    // only the server and its CA: no credential of the controller's own
    const reviewer = selfReviewer({ server: conn.server, ...(conn.ca ? { ca: conn.ca } : {}) });
    const auth = kubernetesAuth({ token: clusterToken, cluster: { namespace: NS, name: CLUSTER }, reviewer, denyTtlMs: 500 });
    const logger = createLogger({ level: "debug", sink: (l) => { logs.push(l); } });
    http = await startHttpServer({ controller, registry, port: 0, logger, serve: "api", auth });
    base = `http://127.0.0.1:${http.port}`;
    group = launchEngines({ engines: ENGINES, mpiexec: "mpiexec", python: python(9), connectionInfo: controller.engineConnection, asRoot: process.getuid?.() === 0 }, { logger: silentLogger });
    await waitEngines(() => controller!.engines().filter((e) => e.alive).length, group);
  });

  after(async () => {
    await group?.stop({ graceMs: 3000 });
    await http?.close();
    await controller?.stop();
  });

  test("every route: allowed and denied identities as with the delegated reviewer", async () => {
    await checkEveryRoute(base, clusterToken, join(dir, "markers-self"));
    for (const [name, t] of [...Object.entries(tokens), ["cluster", clusterToken]] as Array<[string, string]>) {
      assert.ok(!logs.some((l) => l.includes(t)), `${name}'s token is in no log line`);
    }
  });

  test("a denial is not cached for long: once RBAC grants dave the API verb, his requests run", async () => {
    const marker = join(dir, "dave-after-grant");
    const execute = () => call(base, "POST", "/api/v1/execute", tokens.dave, { code: `open(${JSON.stringify(marker)}, "w").write("x")` });
    assert.equal((await execute()).status, 403);
    assert.equal(existsSync(marker), false);
    await roleBinding(NS, "dave-api", "ipp-ipp-operator-api-access", { namespace: NS, name: "dave" });
    const deadline = Date.now() + 60_000;
    let status = 0;
    while ((status = (await execute()).status) !== 200) {
      assert.equal(status, 403);
      if (Date.now() > deadline) assert.fail("dave still refused a minute after the grant");
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(existsSync(marker), true);
  });
});
