/**
 * The mpi backend end to end on a real single-node Kubernetes (scripts/setup/cluster.sh: kubelet
 * on containerd, kube-proxy, CoreDNS), with the images built here without Docker:
 * - `helm install` the chart: the operator runs as a pod with the chart's RBAC, leader election on,
 *   in a namespace enforcing the restricted Pod Security Standard;
 * - `kubectl apply` examples/04-mpi-psum-small.yaml (2 workers × 2 slots, 4 engines): the launcher's
 *   mpiexec reaches the workers over SSH through the headless Service, the 4 engines register with
 *   the controller pod, `kubectl get ec` shows 4 ready and phase Ready;
 * - a notebook-like pod (the engine image, labelled as a client, the connection Secret mounted) runs
 *   the seed workflow under IPython with %px: psum = 496 on every engine;
 * - `ipp-operator connect --port-forward` on the host (outside the cluster network): the seed workflow
 *   runs through pods/portforward to the controller pod with the host's ipyparallel 9.2; Ctrl-C
 *   exits 0 and removes the file;
 * - a worker pod deleted mid-run: an Event and the status say so, the launcher relaunches the MPI
 *   world and the seed workflow works again;
 * - the controller pod deleted mid-run: an Event and the status say so, a running
 *   `connect --port-forward` reports the drop naming the pod and exits 1; the new controller pod
 *   restores the registrations from the operator's controller-state ConfigMap and the running
 *   world's engines (the same processes, the same launcher Job) re-attach with their ids: a new
 *   client sees the same rc.ids and the seed workflow works again;
 * - the controller process killed inside its container (kubelet restarts it): the engines
 *   re-attach from the run volume's state file, same ids and processes;
 * - spec.controller.stateVolumeClaim and taskRecords sqlite on a statically provisioned volume: the
 *   spec change rolls the controller with the world kept; results finished before the controller pod
 *   is deleted come back to a new client from the SQLite records on the claim;
 * - `kubectl delete ec`: nothing the cluster owned is left;
 * - `helm uninstall`: the CRD and the users' EngineClusters are kept.
 * Timings (apply → all engines registered, first engine → Ready) are printed as diagnostics and
 * recorded in bench/README.md; nothing here asserts on time.
 */
import { after, before, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { startCluster, type Cluster } from "../../support/cluster.ts";
import { REPO_ROOT, python } from "../../support/paths.ts";
import { CONNECTION_KEYS } from "../../../src/backends/mpi/core/names.ts";

const OP_NS = "ipp-system";
const NS = "science";
const EC = "psum-small";
const EXAMPLE = join(REPO_ROOT, "examples/04-mpi-psum-small.yaml");
const ENGINES = 4;
const MINUTE = 60_000;

let cluster: Cluster;
let ipythonDir: string;
before(async () => {
  ipythonDir = mkdtempSync(join(tmpdir(), "ipp-e2e-ipython-"));
  cluster = await startCluster();
});
after(async () => {
  await cluster?.stop();
  if (ipythonDir) rmSync(ipythonDir, { recursive: true, force: true });
});

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function getJson(...args: string[]): Json {
  return JSON.parse(cluster.kubectl("get", ...args, "-o", "json")) as Json;
}

function ec(name = EC): Json {
  return getJson("enginecluster", name, "-n", NS);
}

/** The controller pod's log lines about engine registrations (ids and uuids), for diagnostics. */
function registrationLog(pod: string): string {
  const r = cluster.kubectlResult("logs", "-n", NS, pod, "-c", "controller");
  return r.stdout.split("\n").filter((l) => /engine (registered|restored|unregistered)|registration|heart answered/.test(l)).slice(-40).join("\n");
}

/** What the cluster looks like, for failure messages. */
function diagnostics(): string {
  const r = (...a: string[]) => { const x = cluster.kubectlResult(...a); return `$ kubectl ${a.join(" ")}\n${x.stdout}${x.stderr}`; };
  return [
    r("get", "pods", "-A", "-o", "wide"),
    r("get", "ec", "-A", "-o", "yaml"),
    r("get", "events", "-n", NS, "--sort-by=.lastTimestamp"),
    `kubelet.log:\n${cluster.logTail("kubelet", 30)}`,
  ].join("\n");
}

/** Polls `check` every second until it returns a value, or fails with what the cluster looks like. */
async function until<T>(what: string, timeoutMs: number, check: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = check();
      if (v !== undefined && v !== false) return v;
    } catch (err) { last = err; }
    if (Date.now() > deadline) assert.fail(`${what}: not after ${timeoutMs / 1000}s${last ? ` (last error: ${String(last)})` : ""}\n${diagnostics()}`);
    await sleep(1000);
  }
}

function events(name = EC): Json[] {
  return (getJson("events", "-n", NS, "--field-selector", `involvedObject.kind=EngineCluster,involvedObject.name=${name}`).items as Json[]);
}

function restrictedNamespace(name: string): void {
  cluster.kubectl("create", "namespace", name);
  cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest");
}

let notebooks = 0;
/** What the last seed workflow saw: the client's rc.ids and each engine's pid (in rc.ids order). */
let lastSeen: { ids: number[]; pids: number[] } | undefined;
/** Runs `command` in a notebook-like pod with the connection Secret mounted; returns its log once it succeeded. */
async function notebook(command: string[]): Promise<{ name: string; logs: string }> {
  const name = `notebook-${++notebooks}`;
  const secret = String(ec().status.controller.connectionSecret);
  const pod = {
    apiVersion: "v1", kind: "Pod",
    metadata: { name, namespace: NS, labels: { [`ipp.dev/client-${EC}`]: "true" } },
    spec: {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: "RuntimeDefault" } },
      containers: [{
        name: "notebook",
        image: cluster.images.engine,
        imagePullPolicy: "IfNotPresent",
        command,
        env: [
          { name: "IPP_CLIENT_FILE", value: `/var/run/ipp/${EC}/ipcontroller-client.json` },
          { name: "IPP_ENGINES", value: String(ENGINES) },
        ],
        resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { memory: "512Mi" } },
        securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" } },
        volumeMounts: [
          { name: "connection", mountPath: `/var/run/ipp/${EC}`, readOnly: true },
          { name: "seed", mountPath: "/opt/seed", readOnly: true },
        ],
      }],
      volumes: [
        { name: "connection", secret: { secretName: secret } },
        { name: "seed", configMap: { name: "seed" } },
      ],
    },
  };
  cluster.apply(pod);
  const phase = await until(`notebook pod ${name} finishes`, 8 * MINUTE, () => {
    const p = String(getJson("pod", name, "-n", NS).status?.phase ?? "");
    return p === "Succeeded" || p === "Failed" ? p : undefined;
  });
  const logs = cluster.kubectl("logs", "-n", NS, name);
  assert.equal(phase, "Succeeded", `notebook pod ${name} failed:\n${logs}`);
  cluster.kubectl("delete", "pod", name, "-n", NS, "--wait=false");
  return { name, logs };
}

/** Runs the seed workflow in a notebook-like pod and returns the psum every engine computed. */
async function seedFlow(t: TestContext): Promise<number[]> {
  const { name, logs } = await notebook(["ipython", "--no-banner", "/opt/seed/seed.ipy"]);
  const line = logs.split("\n").find((l) => l.startsWith("PSUM "));
  assert.ok(line, `the seed workflow printed its result:\n${logs}`);
  t.diagnostic(`${name}: ${line}`);
  const seen = logs.split("\n").find((l) => l.startsWith("ENGINES "));
  assert.ok(seen, `the seed workflow printed the engines it used:\n${logs}`);
  lastSeen = JSON.parse(seen.slice(8)) as { ids: number[]; pids: number[] };
  t.diagnostic(`${name}: ${seen}`);
  return JSON.parse(line.slice(5)) as number[];
}

/** `ipp-operator connect EC --port-forward` on the host, as a notebook user outside the cluster runs it. */
function startConnect(profile: string, extra: string[] = []) {
  const proc = spawn(join(REPO_ROOT, "bin/ipp-operator"), ["connect", EC, "-n", NS, "--profile", profile, "--port-forward", ...extra],
    { env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, IPYTHONDIR: ipythonDir }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  proc.stdout!.on("data", (d: Buffer) => { stdout += d.toString(); });
  proc.stderr!.on("data", (d: Buffer) => { stderr += d.toString(); });
  let code: number | null | undefined;
  const exited = new Promise<number | null>((r) => proc.once("exit", (c) => { code = c; r(c); }));
  const file = join(ipythonDir, `profile_${profile}`, "security", CONNECTION_KEYS.client);
  return {
    proc, exited, file,
    err: () => stderr,
    started: () => until(`connect --port-forward printed the Python line (stderr: ${stderr})`, 2 * MINUTE, () => {
      if (code !== undefined) assert.fail(`connect exited ${code} before forwarding:\n${stderr}`);
      return stdout.includes(`ipp.Client(profile="${profile}")`) && existsSync(file);
    }),
    /** Stops it if a failed assertion left it running. */
    kill: () => { if (code === undefined) proc.kill("SIGKILL"); },
  };
}

/** The exit status, or "hang" when the process is still running after `ms`. */
async function exitWithin(exited: Promise<number | null>, ms: number): Promise<number | null | "hang"> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([exited, new Promise<"hang">((res) => { timer = setTimeout(() => res("hang"), ms); })]);
  clearTimeout(timer);
  return r;
}

function condition(status: Json | undefined, type: string): Json | undefined {
  return ((status?.conditions ?? []) as Json[]).find((c) => c.type === type);
}

test("helm install: the operator runs as a pod with the chart's RBAC and holds the leader Lease", async () => {
  restrictedNamespace(OP_NS);
  const image = cluster.images.controller;
  const colon = image.lastIndexOf(":");
  cluster.helm("install", "ipp", join(REPO_ROOT, "charts/ipp-operator"), "--namespace", OP_NS,
    "--set", `image.repository=${image.slice(0, colon)}`, "--set", `image.tag=${image.slice(colon + 1)}`,
    "--set", "leaderElection.enabled=true", "--wait", "--timeout", "10m");
  const pod = await until("the operator pod is Ready", 10 * MINUTE, () => {
    const pods = getJson("pods", "-n", OP_NS, "-l", "app.kubernetes.io/name=ipp-operator").items as Json[];
    return pods.find((p) => ((p.status?.conditions ?? []) as Json[]).some((c) => c.type === "Ready" && c.status === "True"));
  });
  assert.equal(pod.spec.serviceAccountName, "ipp-ipp-operator", "the chart's ServiceAccount");
  assert.ok((pod.spec.containers[0].args as string[]).includes("--leader-elect"), "leader election on");
  const holder = await until("the operator holds its Lease", 5 * MINUTE, () => {
    const lease = getJson("lease", "ipp-ipp-operator", "-n", OP_NS);
    return lease.spec?.holderIdentity as string | undefined;
  });
  assert.equal(holder, pod.metadata.name);
});

const timings: Record<string, number> = {};

test("kubectl apply examples/04-mpi-psum-small.yaml: 4 engines over 2 workers register with the controller pod; kubectl get ec shows 4 ready, phase Ready", async (t) => {
  restrictedNamespace(NS);
  cluster.apply({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "seed", namespace: NS }, data: {
    "seed.ipy": readFileSync(join(import.meta.dirname, "seed.ipy"), "utf8"),
    "records.py": readFileSync(join(import.meta.dirname, "records.py"), "utf8"),
  } });
  const example = parse(readFileSync(EXAMPLE, "utf8")) as Json;
  assert.equal(example.metadata.name, EC);
  assert.equal(example.spec.backend.mpi.image, cluster.images.engine, "the example names the image cluster.sh imports");

  const applied = Date.now();
  cluster.kubectl("apply", "-n", NS, "-f", EXAMPLE);
  let firstEngine: number | undefined;
  const allRegistered = await until("4 engines registered", 20 * MINUTE, () => {
    const registered = Number(ec().status?.engines?.registered ?? 0);
    if (registered > 0 && firstEngine === undefined) firstEngine = Date.now();
    return registered >= ENGINES ? Date.now() : undefined;
  });
  const ready = await until("phase Ready", 5 * MINUTE, () => (ec().status?.phase === "Ready" ? Date.now() : undefined));
  timings.applyToAllRegistered = (allRegistered - applied) / 1000;
  timings.firstEngineToReady = (ready - (firstEngine ?? allRegistered)) / 1000;
  t.diagnostic(`kubectl apply → all ${ENGINES} engines registered: ${timings.applyToAllRegistered.toFixed(1)} s; first engine → Ready: ${timings.firstEngineToReady.toFixed(1)} s`);

  const row = cluster.kubectl("get", "ec", EC, "-n", NS, "--no-headers");
  assert.match(row, new RegExp(`^${EC}\\s+mpi\\s+${ENGINES}\\s+${ENGINES}\\s+Ready\\s`), row);
  const status = ec().status;
  assert.equal(condition(status, "Ready")?.status, "True");
  assert.equal(condition(status, "WorkersReady")?.status, "True");
  // The launcher reached both workers by their names under the headless Service.
  const launcher = String(status.mpi.launcherJob);
  const logs = cluster.kubectl("logs", "-n", NS, `job/${launcher}`);
  for (const i of [0, 1]) assert.match(logs, new RegExp(`${EC}-worker-${i}\\.${EC}-workers\\.${NS}\\.svc\\.cluster\\.local:2222 is up`), logs);
});

test("a notebook pod runs the seed workflow under IPython with %px: psum = 496 on every engine", async (t) => {
  assert.deepEqual(await seedFlow(t), Array(ENGINES).fill(496));
});

test("connect --port-forward on the host: the seed workflow runs through pods/portforward to the controller pod; Ctrl-C exits 0 and removes the file", async (t) => {
  const c = startConnect("forwarded");
  try {
    await c.started();
    const f = JSON.parse(readFileSync(c.file, "utf8")) as Record<string, unknown>;
    assert.equal(f.interface, "tcp://127.0.0.1", "the file points at the local forward");
    const controllerPod = (getJson("pods", "-n", NS, "-l", `ipp.dev/cluster=${EC},app.kubernetes.io/component=controller`).items as Json[])[0]!.metadata.name as string;
    assert.match(c.err(), new RegExp(`forwarding 127\\.0\\.0\\.1 .* to pod ${NS}/${controllerPod} `), c.err());
    const result = await new Promise<Json>((resolve, reject) => {
      execFile(python(9), [join(REPO_ROOT, "test/python/workflow.py"), "profile=forwarded", String(ENGINES)],
        { env: { ...process.env, IPYTHONDIR: ipythonDir }, timeout: 10 * MINUTE, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr.slice(-3000)}\nconnect: ${c.err()}`)) : resolve(JSON.parse(stdout.trim().split("\n").pop()!) as Json)));
    });
    assert.deepEqual(result.errors, {}, JSON.stringify(result.errors));
    assert.deepEqual(result.px_totalsum, Array(ENGINES).fill("array(496.)"));
    t.diagnostic(`through the forward: px_totalsum ${JSON.stringify(result.px_totalsum)}`);
    c.proc.kill("SIGINT");
    assert.equal(await exitWithin(c.exited, 2 * MINUTE), 0, c.err());
    assert.equal(existsSync(c.file), false, "the file is removed with the forward");
  } finally { c.kill(); }
});

test("a worker pod deleted mid-run: an Event and the status say so, the launcher relaunches the world, the seed workflow works again", async (t) => {
  const before = ec().status;
  const restartsBefore = Number(before.mpi.launcherRestarts ?? 0);
  cluster.kubectl("delete", "pod", `${EC}-worker-1`, "-n", NS, "--wait=false");
  const event = await until("a LauncherRestarted Event", 10 * MINUTE, () => events().find((e) => e.reason === "LauncherRestarted"));
  t.diagnostic(`Event ${event.reason}: ${event.message}`);
  await until("the launcher's restart in the status", 5 * MINUTE, () => Number(ec().status?.mpi?.launcherRestarts ?? 0) > restartsBefore);
  await until("4 engines registered again, phase Ready", 15 * MINUTE, () => {
    const s = ec().status;
    return s?.phase === "Ready" && Number(s.engines?.registered) === ENGINES;
  });
  assert.deepEqual(await seedFlow(t), Array(ENGINES).fill(496));
});

test("the controller pod deleted mid-run: the running world's engines re-attach to the new controller pod with their ids (same processes, same launcher Job); a new client sees the same rc.ids and the seed workflow works again", async (t) => {
  const before = ec().status;
  const seenBefore = lastSeen;
  const reattached = reattachedEvents();
  assert.ok(seenBefore, "the previous test's seed workflow recorded the engines");
  // the operator's copy of the registrations, which the new pod restores from
  const saved = JSON.parse(String(getJson("configmap", `${EC}-controller-state`, "-n", NS).data["engines.json"])) as { engines: Record<string, string> };
  assert.deepEqual(Object.keys(saved.engines).map(Number).sort((a, b) => a - b), [...seenBefore.ids].sort((a, b) => a - b), "the controller-state ConfigMap lists the registered engines");
  const selector = `ipp.dev/cluster=${EC},app.kubernetes.io/component=controller`;
  const oldPod = (getJson("pods", "-n", NS, "-l", selector).items as Json[])[0]!.metadata.name as string;
  t.diagnostic(`controller-state ConfigMap: ${JSON.stringify(saved.engines)}`);
  t.diagnostic(`${oldPod} registrations:\n${registrationLog(oldPod)}`);
  // a notebook outside the cluster forwarding to the controller pod, with a client connection open
  const fwd = startConnect("dropped", ["--check-seconds", "2"]);
  let code: number | null | "hang";
  try {
    await fwd.started();
    const port = (JSON.parse(readFileSync(fwd.file, "utf8")) as { registration: number }).registration;
    const sock = tcpConnect(port, "127.0.0.1");
    sock.on("error", () => undefined);
    cluster.kubectl("delete", "pod", "-n", NS, oldPod, "--wait=false");
    code = await exitWithin(fwd.exited, 5 * MINUTE);
    sock.destroy();
  } finally { fwd.kill(); }
  assert.equal(code, 1, `connect --port-forward exits 1 when its controller pod goes away (stderr: ${fwd.err()})`);
  assert.match(fwd.err(), new RegExp(`(dropped|no longer running|could not be opened).*controller pod ${NS}/${oldPod}`), fwd.err());
  assert.match(fwd.err(), /run connect again/);
  assert.equal(existsSync(fwd.file), false, "the file is removed with the forward");
  t.diagnostic(`connect: ${fwd.err().trim().split("\n").pop()}`);
  const event = await until("a ControllerReplaced Event", 10 * MINUTE, () => events().find((e) => e.reason === "ControllerReplaced"));
  t.diagnostic(`Event ${event.reason}: ${event.message}`);
  assert.match(String(event.message), new RegExp(`controller pod ${oldPod} was replaced by .*: the ${ENGINES} engine\\(s\\) of the running MPI world re-attach`));
  try {
    await assertReattached(t, before, reattached, seenBefore, (s) => !String(s.mpi?.controllerPod ?? "").startsWith(`${oldPod}:`));
  } finally {
    const pods = (getJson("pods", "-n", NS, "-l", selector).items as Json[]).filter((p) => p.metadata.name !== oldPod);
    for (const p of pods) t.diagnostic(`${p.metadata.name as string} registrations:\n${registrationLog(p.metadata.name as string)}`);
  }
});

/**
 * The engines came back to the controller without a relaunch: Ready with the same launcher Job,
 * an EnginesReattached Event, and a new client sees the same ids served by the same processes.
 */
/** EnginesReattached Events so far (an Event repeated with the same message counts up). */
const reattachedEvents = () => events().filter((e) => e.reason === "EnginesReattached").reduce((n, e) => n + Number(e.count ?? 1), 0);

async function assertReattached(t: TestContext, before: Json, reattachedBefore: number, seenBefore: { ids: number[]; pids: number[] }, newController: (s: Json) => boolean): Promise<void> {
  const oldJob = String(before.mpi.launcherJob);
  const s = await until("the engines re-attached: 4 registered and alive, phase Ready, no re-attach pending", 10 * MINUTE, () => {
    const st = ec().status;
    return st?.phase === "Ready" && newController(st) && Number(st.engines?.alive) === ENGINES && st.mpi?.reattach === undefined ? st : undefined;
  });
  assert.equal(s.mpi.launcherJob, oldJob, "the same launcher Job: the world was not relaunched");
  assert.equal(Number(s.mpi.relaunches ?? 0), Number(before.mpi.relaunches ?? 0));
  assert.equal(s.mpi.worldEpoch, before.mpi.worldEpoch, "the same world epoch");
  const ev = await until("an EnginesReattached Event", 2 * MINUTE, () => {
    const list = events().filter((e) => e.reason === "EnginesReattached");
    return list.reduce((n, e) => n + Number(e.count ?? 1), 0) > reattachedBefore ? list[0] : undefined;
  });
  t.diagnostic(`Event ${ev.reason}: ${ev.message}`);
  assert.ok(!events().some((e) => e.reason === "ReattachTimedOut"), "no relaunch fallback");
  assert.equal(cluster.kubectlResult("get", "job", oldJob, "-n", NS).status, 0, "the launcher Job is still there");
  assert.deepEqual(await seedFlow(t), Array(ENGINES).fill(496));
  assert.deepEqual(lastSeen!.ids, seenBefore.ids, "rc.ids unchanged for a new client");
  assert.deepEqual(lastSeen!.pids, seenBefore.pids, "the same engine processes answer under the same ids");
}

test("the controller process killed in its container (kubelet restarts it): the engines re-attach from the run volume's state file, same ids and processes", async (t) => {
  const before = ec().status;
  const seenBefore = lastSeen!;
  const reattached = reattachedEvents();
  const selector = `ipp.dev/cluster=${EC},app.kubernetes.io/component=controller`;
  const pod = (getJson("pods", "-n", NS, "-l", selector).items as Json[]).find((p) => !p.metadata.deletionTimestamp)!;
  const restarts = Number(pod.status.containerStatuses[0].restartCount ?? 0);
  // node is PID 1 (bin/ipp-operator execs it); its SIGTERM handler stops the controller, which exits
  cluster.kubectl("exec", "-n", NS, pod.metadata.name, "-c", "controller", "--", "node", "-e", "process.kill(1, 'SIGTERM')");
  const event = await until("a ControllerReplaced Event for the restarted container", 5 * MINUTE,
    () => events().find((e) => e.reason === "ControllerReplaced" && String(e.message).includes(`controller container in pod ${pod.metadata.name} restarted`)));
  t.diagnostic(`Event ${event.reason}: ${event.message}`);
  await assertReattached(t, before, reattached, seenBefore,
    (s) => s.mpi?.controllerPod === `${pod.metadata.name}:${restarts + 1}`);
});

/** records.py in a notebook pod: the JSON after `tag` on its output line. */
async function records(t: TestContext, tag: string, args: string[]): Promise<Json> {
  const { name, logs } = await notebook(["python3", "/opt/seed/records.py", `/var/run/ipp/${EC}/ipcontroller-client.json`, ...args]);
  const line = logs.split("\n").find((l) => l.startsWith(`${tag} `));
  assert.ok(line, `records.py printed ${tag}:\n${logs}`);
  t.diagnostic(`${name}: ${line}`);
  return JSON.parse(line.slice(tag.length + 1)) as Json;
}

test("spec.controller.stateVolumeClaim with taskRecords sqlite: results finished before the controller pod is deleted are still there for a new client; the world is kept throughout", async (t) => {
  // a statically provisioned hostPath volume, writable by the controller's uid, and a claim bound to it
  const dir = mkdtempSync(join(tmpdir(), "ipp-e2e-state-"));
  chownSync(dir, 65532, 65532);
  const claim = "ipp-controller-state";
  cluster.apply({
    apiVersion: "v1", kind: "PersistentVolume", metadata: { name: "ipp-e2e-state" },
    spec: { capacity: { storage: "1Gi" }, accessModes: ["ReadWriteOnce"], persistentVolumeReclaimPolicy: "Retain", storageClassName: "manual", hostPath: { path: dir, type: "Directory" } },
  });
  cluster.apply({
    apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: { name: claim, namespace: NS },
    spec: { storageClassName: "manual", volumeName: "ipp-e2e-state", accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
  });
  await until("the claim is bound", 2 * MINUTE, () => getJson("pvc", claim, "-n", NS).status?.phase === "Bound");
  const selector = `ipp.dev/cluster=${EC},app.kubernetes.io/component=controller`;
  const podName = () => (getJson("pods", "-n", NS, "-l", selector).items as Json[]).find((p) => !p.metadata.deletionTimestamp)?.metadata.name as string | undefined;

  // the spec change rolls the controller Deployment: a replaced controller, the world kept
  let before = ec().status;
  let pod = podName();
  let reattached = reattachedEvents();
  cluster.kubectl("patch", "ec", EC, "-n", NS, "--type", "merge", "-p", JSON.stringify({ spec: { controller: { taskRecords: "sqlite", stateVolumeClaim: claim } } }));
  await assertReattached(t, before, reattached, lastSeen!, (s) => !String(s.mpi?.controllerPod ?? "").startsWith(`${pod}:`));
  const db = join(dir, EC, "profile", "tasks.db");
  assert.ok(existsSync(db), `the task database is on the claim (${db})`);

  const ran = await records(t, "RECORD", ["run"]);
  assert.deepEqual(ran.results, Array(ENGINES).fill(42));

  before = ec().status;
  pod = podName();
  reattached = reattachedEvents();
  cluster.kubectl("delete", "pod", "-n", NS, pod!, "--wait=false");
  await assertReattached(t, before, reattached, lastSeen!, (s) => !String(s.mpi?.controllerPod ?? "").startsWith(`${pod}:`));
  const fetched = await records(t, "FETCHED", ["fetch", ...(ran.msg_ids as string[])]);
  assert.deepEqual(fetched.results, ran.results, "the results, from the SQLite records on the claim");
  assert.equal(fetched.queried, ENGINES, "db_query finds the completed records");
});

test("kubectl delete ec: nothing the cluster owned is left", async () => {
  cluster.kubectl("delete", "ec", EC, "-n", NS, "--timeout=10m");
  const kinds = "pods,jobs,statefulsets,deployments,services,configmaps,secrets,networkpolicies,replicasets,endpointslices";
  await until("no object labelled with the cluster", 10 * MINUTE, () => {
    const left = getJson(kinds, "-n", NS, "-l", `ipp.dev/cluster=${EC}`).items as Json[];
    return left.length === 0 ? true : undefined;
  });
  const pods = (getJson("pods", "-n", NS).items as Json[]).map((p) => String(p.metadata.name)).filter((n) => !n.startsWith("notebook-"));
  assert.deepEqual(pods, [], "no pod left but the notebooks");
});

test("bad input: an image that can't be pulled, workers that never become ready, a failing mpiexec — each a condition and an Event with the reason", async (t) => {
  const base = parse(readFileSync(EXAMPLE, "utf8")) as Json;
  const variant = (name: string, mpi: Json, engines = 1) => {
    const o = structuredClone(base);
    o.metadata = { name, namespace: NS };
    o.spec.engines = engines;
    Object.assign(o.spec.backend.mpi, { workers: 1, slotsPerWorker: engines }, mpi);
    return o;
  };
  cluster.apply(
    variant("bad-image", { image: "ipp.local/no-such-engine:1" }),
    // workers ask for more CPU than the node has: they stay Pending; the launcher gives up after 15 s
    variant("never-ready", { resources: { requests: { cpu: "64" } }, workersReadyTimeoutSeconds: 15 }),
    variant("bad-mpiexec", { engineArgs: ["--no-such-ipengine-option"] }),
  );
  const expect = async (name: string, reason: string) => {
    const st = await until(`${name}: Degraded with reason ${reason}`, 10 * MINUTE, () => {
      const c = condition(ec(name).status, "Degraded");
      return c?.status === "True" && c.reason === reason ? c : undefined;
    });
    const ev = await until(`${name}: a Warning Event ${reason}`, 5 * MINUTE, () => events(name).find((e) => e.type === "Warning" && e.reason === reason));
    t.diagnostic(`${name}: ${reason}: ${st.message} | Event: ${ev.message}`);
    return st.message as string;
  };
  assert.match(await expect("bad-image", "ImagePullFailed"), /ipp\.local\/no-such-engine:1/);
  assert.match(await expect("never-ready", "WorkersNotReadyTimeout"), /workersReadyTimeoutSeconds=15s.*not reachable on port 2222 \(never-ready-worker-0\./);
  assert.match(await expect("bad-mpiexec", "MpiexecFailed"), /mpiexec exited \d+/);
  // the Job starts the launcher again after its backoff: that restart is an Event too
  const restarted = await until("never-ready: a LauncherRestarted Event", 5 * MINUTE, () => events("never-ready").find((e) => e.reason === "LauncherRestarted"));
  t.diagnostic(`never-ready: Event ${restarted.reason}: ${restarted.message}`);
  cluster.kubectl("delete", "ec", "bad-image", "never-ready", "bad-mpiexec", "-n", NS, "--timeout=10m");
});

test("helm uninstall keeps the CRD and the users' EngineClusters", async () => {
  const kept = parse(readFileSync(EXAMPLE, "utf8")) as Json;
  kept.metadata = { name: "kept", namespace: NS };
  cluster.apply(kept);
  await until("the operator takes the kept cluster in hand (finalizer)", 5 * MINUTE, () => ((ec("kept").metadata.finalizers ?? []) as string[]).length > 0);
  cluster.helm("uninstall", "ipp", "--namespace", OP_NS, "--wait", "--timeout", "5m");
  assert.notEqual(cluster.kubectlResult("get", "deployment", "ipp-ipp-operator", "-n", OP_NS).status, 0, "the operator Deployment is gone");
  assert.equal(cluster.kubectlResult("get", "crd", "engineclusters.ipp.dev").status, 0, "the CRD is kept");
  assert.equal(ec("kept").metadata.name, "kept", "the user's EngineCluster is kept");
});
