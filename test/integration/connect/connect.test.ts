/**
 * `ipp-operator connect` as a notebook user runs it: a subprocess with only a kubeconfig, against a
 * real kube-apiserver with RBAC. The connection Secret has the operator's layout, filled with a
 * locally running controller's connection info (our controller and 2 ipengines under mpiexec), so
 * the file connect writes is used by a real ipyparallel 9.2 `Client(profile=...)` running the seed
 * workflow. Service-account tokens with and without `get` on the Secret show RBAC deciding who may
 * connect; a missing cluster, a missing Secret, a cluster whose controller isn't ready and a
 * profile directory that can't be written each fail with a message naming it and leave no file.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CONNECTION_KEYS } from "../../../src/backends/mpi/core/names.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER } from "../../../src/operator/kube/resources.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { REPO_ROOT, python } from "../../support/paths.ts";
import { startRig, type Rig } from "../controller/harness.ts";

const NS = "notebooks";
const ENGINES = 2;
let api: ApiServer;
let rig: Rig;
let readerKubeconfig: string;
let noSecretKubeconfig: string;

const b64 = (s: string) => Buffer.from(s).toString("base64");

interface Run { code: number | null; stdout: string; stderr: string }
function connect(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(join(REPO_ROOT, "bin/ipp-operator"), ["connect", ...args], { env: { ...process.env, ...env }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr }));
  });
}

function cluster(name: string) {
  return { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: NS },
    spec: { engines: ENGINES, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } } };
}

async function setStatus(name: string, controllerReady: boolean): Promise<void> {
  const t = new Date().toISOString();
  const cond = (type: string, status: string, reason: string, message: string) => ({ type, status, reason, message, lastTransitionTime: t });
  await api.client.request("PATCH", objectPath(ENGINECLUSTER, NS, name, "status"), {
    contentType: "application/merge-patch+json",
    body: { status: {
      phase: controllerReady ? "Ready" : "Starting", reason: controllerReady ? undefined : "ControllerNotAvailable",
      conditions: controllerReady
        ? [cond("Ready", "True", "Ready", "all engines registered"), cond("ControllerReady", "True", "ControllerAvailable", "controller is available")]
        : [cond("Ready", "False", "ControllerNotAvailable", `controller Deployment ${name}-controller has no available replica`),
          cond("ControllerReady", "False", "ControllerNotAvailable", `controller Deployment ${name}-controller has no available replica`)],
      controller: { connectionSecret: `${name}-connection` },
    } },
  });
}

/** A kubeconfig for a service account's token (TokenRequest), with the test server's CA. */
async function serviceAccountKubeconfig(sa: string): Promise<string> {
  await api.client.request("POST", collectionPath(resourceType("v1", "ServiceAccount"), NS), { body: { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: sa } } });
  const tr = await api.client.request<{ status: { token: string } }>("POST", `${objectPath(resourceType("v1", "ServiceAccount"), NS, sa)}/token`, {
    body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
  });
  const admin = readFileSync(api.kubeconfigPath, "utf8");
  const ca = /certificate-authority-data: (\S+)/.exec(admin)![1]!;
  const path = join(rig.dir, `kubeconfig-${sa}`);
  writeFileSync(path, [
    "apiVersion: v1", "kind: Config", "current-context: nb",
    "clusters:", "- name: test", "  cluster:", `    server: ${api.server}`, `    certificate-authority-data: ${ca}`,
    "users:", `- name: ${sa}`, "  user:", `    token: ${tr.status.token}`,
    "contexts:", "- name: nb", "  context:", "    cluster: test", `    user: ${sa}`, `    namespace: ${NS}`, "",
  ].join("\n"));
  return path;
}

async function grant(sa: string, rules: unknown[]): Promise<void> {
  await api.client.request("POST", collectionPath(resourceType("rbac.authorization.k8s.io/v1", "Role"), NS), {
    body: { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: sa }, rules } });
  await api.client.request("POST", collectionPath(resourceType("rbac.authorization.k8s.io/v1", "RoleBinding"), NS), {
    body: { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: sa },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: sa },
      subjects: [{ kind: "ServiceAccount", name: sa, namespace: NS }] } });
}

/** RBAC is evaluated from an informer cache: wait until the grant is visible to the token. */
async function waitAllowed(kubeconfig: string, args: string[], env: Record<string, string>): Promise<Run> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await connect(["--kubeconfig", kubeconfig, ...args], env);
    if (r.code === 0 || Date.now() > deadline || !/permission denied/.test(r.stderr)) return r;
    await new Promise((res) => setTimeout(res, 250));
  }
}

before(async () => {
  api = await startApiServer();
  await createNamespace(api.client, NS);
  rig = await startRig(9);
  await rig.startEngines(ENGINES);
  await rig.waitForEngines(ENGINES);
  // the operator's Secret layout, filled with the local controller's connection info
  const client = readFileSync(rig.clientFile, "utf8");
  const engine = readFileSync(rig.engineFile, "utf8");
  const key = (JSON.parse(client) as { key: string }).key;
  for (const name of ["psum", "starting"]) {
    await api.client.request("POST", collectionPath(ENGINECLUSTER, NS), { body: cluster(name) });
    await api.client.request("POST", collectionPath(resourceType("v1", "Secret"), NS), {
      body: { apiVersion: "v1", kind: "Secret", metadata: { name: `${name}-connection` }, type: "Opaque",
        data: { [CONNECTION_KEYS.client]: b64(client), [CONNECTION_KEYS.engine]: b64(engine), [CONNECTION_KEYS.hmacKey]: b64(key) } } });
  }
  await api.client.request("POST", collectionPath(ENGINECLUSTER, NS), { body: cluster("nosecret") });
  await setStatus("psum", true);
  await setStatus("starting", false);
  await setStatus("nosecret", true);
  const readEc = { apiGroups: ["ipp.dev"], resources: ["engineclusters"], verbs: ["get"] };
  await grant("reader", [readEc, { apiGroups: [""], resources: ["secrets"], resourceNames: ["psum-connection", "starting-connection", "nosecret-connection"], verbs: ["get"] }]);
  await grant("nosecret", [readEc]);
  readerKubeconfig = await serviceAccountKubeconfig("reader");
  noSecretKubeconfig = await serviceAccountKubeconfig("nosecret");
});

after(async () => {
  await rig?.stop();
  await api?.stop();
});

test("connect writes the client file (0600) into the profile; ipp.Client(profile=...) runs the seed workflow through it", async () => {
  const ipythonDir = join(rig.dir, "ipython");
  const r = await waitAllowed(readerKubeconfig, ["psum", "--profile", "pbs"], { IPYTHONDIR: ipythonDir });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), `import ipyparallel as ipp; rc = ipp.Client(profile="pbs")`);
  const file = join(ipythonDir, "profile_pbs", "security", CONNECTION_KEYS.client);
  assert.equal(statSync(file).mode & 0o777, 0o600, "the file holds the HMAC key: owner only");
  assert.equal(statSync(join(ipythonDir, "profile_pbs", "security")).mode & 0o777, 0o700);
  assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), JSON.parse(readFileSync(rig.clientFile, "utf8")), "the Secret's client file, as is");
  assert.deepEqual(readdirSync(join(ipythonDir, "profile_pbs", "security")), [CONNECTION_KEYS.client], "no temporary file left behind");

  // the seed workflow through the profile connect wrote: ipp.Client(profile="pbs")
  const viaProfile = await new Promise<Record<string, unknown>>((resolve, reject) => {
    execFile(python(9), [join(REPO_ROOT, "test/python/workflow.py"), "profile=pbs", String(ENGINES)],
      { env: { ...process.env, IPYTHONDIR: ipythonDir }, timeout: 180_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr.slice(-3000)}`)) : resolve(JSON.parse(stdout.trim().split("\n").pop()!) as Record<string, unknown>)));
  });
  assert.deepEqual(viaProfile.errors, {}, JSON.stringify(viaProfile.errors));
  assert.deepEqual(viaProfile.px_totalsum, Array(ENGINES).fill("array(496.)"));
});

test("the profile defaults to the cluster's name; a second connect replaces the file atomically", async () => {
  const ipythonDir = join(rig.dir, "ipython-default");
  const env = { IPYTHONDIR: ipythonDir };
  const first = await waitAllowed(readerKubeconfig, ["psum"], env);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout.trim(), `import ipyparallel as ipp; rc = ipp.Client(profile="psum")`);
  const file = join(ipythonDir, "profile_psum", "security", CONNECTION_KEYS.client);
  writeFileSync(file, "stale");
  const again = await connect(["--kubeconfig", readerKubeconfig, "psum", "-n", NS], env);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(readFileSync(file, "utf8")).key, JSON.parse(readFileSync(rig.clientFile, "utf8")).key);
});

test("RBAC decides: a token without 'get' on the Secret is refused, with the Secret named, and no file is written", async () => {
  const ipythonDir = join(rig.dir, "ipython-denied");
  // wait until the role that lets it read EngineClusters is in effect, so the refusal is about the Secret
  const deadline = Date.now() + 30_000;
  let r: Run;
  do {
    r = await connect(["--kubeconfig", noSecretKubeconfig, "psum"], { IPYTHONDIR: ipythonDir });
    if (/connection Secret/.test(r.stderr)) break;
    await new Promise((res) => setTimeout(res, 250));
  } while (Date.now() < deadline);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /connection Secret notebooks\/psum-connection of EngineCluster notebooks\/psum: permission denied/);
  assert.match(r.stderr, /system:serviceaccount:notebooks:nosecret/, "the API server's message names the user");
  assert.match(r.stderr, /needs 'get' on the Secret psum-connection/);
  assert.equal(r.stdout, "");
  assert.equal(existsSync(join(ipythonDir, "profile_psum", "security", CONNECTION_KEYS.client)), false);
});

test("bad input: missing cluster, missing Secret, controller not ready, unwritable profile, bad arguments", async () => {
  const ipythonDir = join(rig.dir, "ipython-bad");
  const env = { IPYTHONDIR: ipythonDir };
  const missing = await waitAllowed(readerKubeconfig, ["nope"], env);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /EngineCluster notebooks\/nope not found/);

  const noSecret = await connect(["--kubeconfig", readerKubeconfig, "nosecret"], env);
  assert.equal(noSecret.code, 1);
  assert.match(noSecret.stderr, /connection Secret notebooks\/nosecret-connection of EngineCluster notebooks\/nosecret not found/);

  const starting = await connect(["--kubeconfig", readerKubeconfig, "starting"], env);
  assert.equal(starting.code, 1);
  assert.match(starting.stderr, /EngineCluster notebooks\/starting is not ready yet \(phase Starting; ControllerNotAvailable: controller Deployment starting-controller has no available replica\)/);

  // a profile directory that can't be written (root ignores modes, so a file stands in the way)
  mkdirSync(join(ipythonDir, "profile_ro"), { recursive: true });
  writeFileSync(join(ipythonDir, "profile_ro", "security"), "not a directory");
  const ro = await connect(["--kubeconfig", readerKubeconfig, "psum", "--profile", "ro"], env);
  assert.equal(ro.code, 1);
  assert.match(ro.stderr, /profile_ro\/security/);
  chmodSync(join(ipythonDir, "profile_ro", "security"), 0o644);

  for (const dir of ["profile_nope", "profile_nosecret", "profile_starting"]) {
    assert.equal(existsSync(join(ipythonDir, dir, "security", CONNECTION_KEYS.client)), false, `${dir}: no file`);
  }
  const usage = await connect([], env);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /NAME is required/);
  const badName = await connect(["Not_A_Name"], env);
  assert.equal(badName.code, 2);
  const noKube = await connect(["psum", "--kubeconfig", join(rig.dir, "no-such-kubeconfig")], env);
  assert.equal(noKube.code, 1);
  assert.match(noKube.stderr, /cannot load the Kubernetes configuration/);
});
