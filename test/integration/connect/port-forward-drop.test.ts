/**
 * `connect --port-forward` against a real kube-apiserver without a kubelet: the controller pod is
 * an API object (status Running and Ready written by the test), so the listeners, the rewritten
 * file and every failure path are real, while no byte can reach a container. A forward that can't
 * be carried and a controller pod that goes away are each reported with the pod named, exit 1 and
 * the file removed — never a silent hang; Ctrl-C exits 0 and removes the file. (Data through a
 * forward needs a node that runs pods; see docs/notebooks.md and the report of this change.)
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CONNECTION_KEYS, selector } from "../../../src/backends/mpi/core/names.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER } from "../../../src/operator/kube/resources.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { REPO_ROOT } from "../../support/paths.ts";
import { waitFor } from "../operator/helpers.ts";

const NS = "fwd";
let api: ApiServer;
const dir = mkdtempSync(join(tmpdir(), "ipp-connect-pf-"));
const POD = objectPath(resourceType("v1", "Pod"), NS, "pf-controller-0");

const client = {
  ssh: "", interface: "tcp://pf-controller.fwd.svc.cluster.local", registration: 10101, control: 10110, mux: 10111, task: 10112,
  task_scheme: "leastload", iopub: 10113, notification: 10114, broadcast: 10115, key: "0123", curve_serverkey: null,
  location: "pf-controller.fwd.svc.cluster.local", pack: "json", unpack: "json", signature_scheme: "hmac-sha256",
};

async function createPod(): Promise<void> {
  await api.client.request("POST", collectionPath(resourceType("v1", "Pod"), NS), { body: {
    apiVersion: "v1", kind: "Pod", metadata: { name: "pf-controller-0", labels: selector("pf", "controller") },
    spec: { nodeName: "node-1", containers: [{ name: "controller", image: "ghcr.io/example/ipp-operator:1.0" }] } } });
  await api.client.request("PATCH", `${POD}/status`, { contentType: "application/merge-patch+json", body: { status: {
    phase: "Running", conditions: [{ type: "Ready", status: "True", lastTransitionTime: new Date().toISOString() }] } } });
}

before(async () => {
  api = await startApiServer();
  await createNamespace(api.client, NS);
  await api.client.request("POST", collectionPath(ENGINECLUSTER, NS), { body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster",
    metadata: { name: "pf", namespace: NS }, spec: { engines: 1, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } } } });
  await api.client.request("PATCH", objectPath(ENGINECLUSTER, NS, "pf", "status"), { contentType: "application/merge-patch+json", body: { status: {
    phase: "Starting", conditions: [{ type: "ControllerReady", status: "True", reason: "ControllerAvailable", message: "ok", lastTransitionTime: new Date().toISOString() }] } } });
  await api.client.request("POST", collectionPath(resourceType("v1", "Secret"), NS), { body: { apiVersion: "v1", kind: "Secret",
    metadata: { name: "pf-connection" }, data: { [CONNECTION_KEYS.client]: Buffer.from(JSON.stringify(client)).toString("base64") } } });
});

after(async () => {
  await api?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The exit status, or "hang" when the process is still running after `ms`. */
async function exitWithin(exited: Promise<number | null>, ms: number): Promise<number | null | "hang"> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([exited, new Promise<"hang">((res) => { timer = setTimeout(() => res("hang"), ms); })]);
  clearTimeout(timer);
  return r;
}

function startConnect(profile: string) {
  const proc = spawn(join(REPO_ROOT, "bin/ipp-operator"), ["connect", "pf", "-n", NS, "--profile", profile, "--port-forward", "--check-seconds", "1", "--kubeconfig", api.kubeconfigPath],
    { env: { ...process.env, IPYTHONDIR: join(dir, "ipython") }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  proc.stdout!.on("data", (d: Buffer) => { stdout += d.toString(); });
  proc.stderr!.on("data", (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  const file = join(dir, "ipython", `profile_${profile}`, "security", CONNECTION_KEYS.client);
  return {
    proc, exited, file,
    out: () => stdout, err: () => stderr,
    started: () => waitFor("connect printed the Python line", () => stdout.includes("ipp.Client(profile=") && existsSync(file), 60_000)
      .catch((e: Error) => { throw new Error(`${e.message}\n${stderr}`); }),
  };
}

test("the file points at 127.0.0.1 with a local port per client port; Ctrl-C exits 0 and removes it", async () => {
  await createPod();
  const c = startConnect("sigint");
  await c.started();
  const f = JSON.parse(readFileSync(c.file, "utf8")) as Record<string, unknown>;
  assert.equal(f.interface, "tcp://127.0.0.1");
  assert.equal(f.key, "0123");
  const ports = ["registration", "control", "mux", "task", "iopub", "notification", "broadcast"].map((k) => f[k] as number);
  assert.equal(new Set(ports).size, 7, "one local port each");
  assert.ok(ports.every((p) => p !== 10101 && p > 0));
  assert.match(c.err(), /forwarding 127\.0\.0\.1 .* to pod fwd\/pf-controller-0/);
  c.proc.kill("SIGINT");
  assert.equal(await c.exited, 0, c.err());
  assert.equal(existsSync(c.file), false, "the file is removed with the forward");
});

test("a forward that can't be carried is reported, naming the pod and port; exit 1, file removed", async () => {
  const c = startConnect("broken");
  await c.started();
  const f = JSON.parse(readFileSync(c.file, "utf8")) as { registration: number };
  // a client connects; there is no kubelet behind the API server to carry it
  const sock = tcpConnect(f.registration, "127.0.0.1");
  sock.on("error", () => undefined);
  const code = await exitWithin(c.exited, 120_000);
  sock.destroy();
  assert.equal(code, 1, `exit status (stderr: ${c.err()})`);
  assert.match(c.err(), /port-forward to pf-controller-0:10101 (could not be opened|failed|dropped)/);
  assert.match(c.err(), /controller pod fwd\/pf-controller-0: Running/);
  assert.match(c.err(), /run connect again/);
  assert.equal(existsSync(c.file), false);
});

test("the controller pod going away is reported while idle; exit 1, file removed", async () => {
  const c = startConnect("gone");
  await c.started();
  await api.client.request("DELETE", POD, { query: { gracePeriodSeconds: 0 } });
  const code = await exitWithin(c.exited, 120_000);
  assert.equal(code, 1, `exit status (stderr: ${c.err()})`);
  assert.match(c.err(), /the controller pod fwd\/pf-controller-0 is no longer running \(controller pod fwd\/pf-controller-0: (gone|being deleted)\)/);
  assert.equal(existsSync(c.file), false);
});

test("no running controller pod: a clear error before anything is written", async () => {
  const c = startConnect("nopod");
  const code = await c.exited;
  assert.equal(code, 1);
  assert.match(c.err(), /EngineCluster fwd\/pf has no running, ready controller pod/);
  assert.equal(existsSync(c.file), false);
});
