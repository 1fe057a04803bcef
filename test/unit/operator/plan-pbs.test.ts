/**
 * The planner's pbs branch, pure: controller objects as for mpi, qsub only once the connection
 * Secret is observed, the job adopted from qstat by name, status.pbs.jobs and the Submitted
 * condition mirrored from the scheduler, qdel before the finalizer goes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { FINALIZER, plan, type Action, type KubeObject, type Observed, type Plan } from "../../../src/operator/core/plan.ts";
import type { QstatJob } from "../../../src/backends/pbs/core/dialects.ts";
import { MATERIAL, rawCluster } from "../backends/mpi/fixtures.ts";

type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const NOW = new Date("2026-02-01T10:00:00.123Z");

const spec = (extra: Record<string, unknown> = {}) => ({
  engines: 4,
  backend: { pbs: { host: "login01", user: "alice", credentialsSecret: "hpc-ssh", dialect: "slurm", queue: "batch", walltime: "00:10:00", network: { mode: "direct", address: "10.1.2.3" }, ...extra } },
});
const withFinalizer = (c: Record<string, unknown>, extraMeta: Record<string, unknown> = {}) =>
  ({ ...c, metadata: { ...(c.metadata as J), finalizers: [FINALIZER], ...extraMeta } });
const observe = (cluster: unknown, owned: KubeObject[] = [], extra: Partial<Observed> = {}): Observed =>
  ({ cluster, owned, generated: { ...MATERIAL }, now: NOW, secrets: { "hpc-ssh": true }, ...extra });
const of = <T extends Action["type"]>(p: Plan, t: T) => p.actions.filter((a): a is Extract<Action, { type: T }> => a.type === t);
const cond = (p: Plan, t: string) => (p.status as J | undefined)?.conditions?.find((c: J) => c.type === t);
const job = (j: Partial<QstatJob>): QstatJob => ({ id: "41", name: "x", owner: "alice", state: "R", phase: "running", queue: "batch", ...j });

function firstPlan() {
  const c = withFinalizer(rawCluster(spec()));
  const p = plan(observe(c, [], { pbs: { dialect: "slurm", jobs: [] } }));
  return { c, p, owned: p.actions.flatMap((a) => (a.type === "apply" || a.type === "create" ? [a.object] : [])) };
}

test("first reconcile: the controller's Secret, Service, NetworkPolicy and Deployment; no qsub before the connection Secret is observed", () => {
  const { p, owned } = firstPlan();
  assert.deepEqual(owned.map((o) => `${o.kind}/${o.metadata.name}`), ["Secret/psum-connection", "ConfigMap/psum-controller-state", "Service/psum-controller", "NetworkPolicy/psum-controller", "Deployment/psum-controller"]);
  // direct mode: engines (compute nodes) reach the engine ports from anywhere, and nothing else
  const np = owned.find((o) => o.kind === "NetworkPolicy") as J;
  assert.equal(np.spec.ingress[0].from, undefined);
  assert.ok(!np.spec.ingress[0].ports.some((x: J) => x.port === 8080 || x.port === 8081));
  assert.equal(of(p, "pbsSubmit").length, 0);
  assert.equal(cond(p, "Submitted").reason, "WaitingForConnectionSecret");
  assert.equal((p.status as J).backend, "pbs");
  assert.equal((p.status as J).phase, "Submitting");
});

test("connection Secret observed, no job: one pbsSubmit whose script points the engines at the routable address", () => {
  const { c, owned } = firstPlan();
  const p = plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } }));
  const [s, ...more] = of(p, "pbsSubmit");
  assert.ok(s !== undefined && more.length === 0);
  assert.match(s.name, /^ipp-[0-9a-f]{5}-[0-9a-f]{5}$/);
  assert.match(s.script, /#PBS -N ipp-/);
  assert.match(s.script, /tcp:\/\/10\.1\.2\.3/);
  assert.match(s.script, /mpiexec -n 4 ipengine --mpi/);
  assert.deepEqual(s.record, { role: "engines", state: "Q", submittedAt: "2026-02-01T10:00:00Z", queue: "batch" });
  // the same inputs give the same job name: a replay finds the job by name
  const again = plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } }));
  assert.equal(of(again, "pbsSubmit")[0]!.name, s.name);
});

test("the job in qstat: adopted (no qsub), status.pbs.jobs mirrors it, Submitted JobRunning, phase Starting", () => {
  const { c, owned } = firstPlan();
  const name = of(plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } })), "pbsSubmit")[0]!.name;
  const p = plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [job({ name, startedAt: "2026-02-01T09:59:00Z" })] } }));
  assert.equal(of(p, "pbsSubmit").length, 0);
  assert.deepEqual((p.status as J).pbs.jobs, [{ id: "41", role: "engines", state: "R", queue: "batch", startedAt: "2026-02-01T09:59:00Z" }]);
  assert.equal(cond(p, "Submitted").status, "True");
  assert.equal(cond(p, "Submitted").reason, "JobRunning");
  assert.equal((p.status as J).phase, "Starting");
  assert.ok(p.actions.some((a) => a.type === "event" && a.reason === "JobAdopted"));
});

test("a queued job: phase Queued, and status.reason carries the scheduler's pending reason for kubectl get ec", () => {
  const { c, owned } = firstPlan();
  const name = of(plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } })), "pbsSubmit")[0]!.name;
  const p = plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [job({ name, state: "PD", phase: "queued", reason: "Priority" })] } }));
  assert.equal((p.status as J).phase, "Queued");
  assert.equal(cond(p, "Ready").reason, "JobQueued");
  assert.equal((p.status as J).reason, "JobQueued:Priority");
});

test("login host unreachable: Degraded SchedulerUnreachable, nothing submitted or deleted", () => {
  const { c, owned } = firstPlan();
  const p = plan(observe(c, owned, { pbs: { error: "ssh: not connected" } }));
  assert.equal(of(p, "pbsSubmit").length + of(p, "pbsQdel").length, 0);
  assert.equal(cond(p, "Degraded").reason, "SchedulerUnreachable");
  assert.match(cond(p, "Degraded").message, /not connected/);
  assert.equal((p.status as J).phase, "Degraded");
});

test("deletion: qdel the live job and keep the finalizer; once qstat shows it ended, the owned objects go, then the finalizer", () => {
  const { c, owned } = firstPlan();
  const name = of(plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } })), "pbsSubmit")[0]!.name;
  const deleting = withFinalizer(rawCluster(spec()), { deletionTimestamp: "2026-02-01T10:01:00Z" });
  const p = plan(observe(deleting, owned, { pbs: { dialect: "slurm", jobs: [job({ name })] } }));
  assert.deepEqual(of(p, "pbsQdel"), [{ type: "pbsQdel", ids: ["41"], why: "deleting" }]);
  assert.equal(of(p, "removeFinalizer").length + of(p, "delete").length, 0);
  assert.equal((p.status as J).phase, "Terminating");
  // unreachable: the job may still run, so the finalizer stays
  const blind = plan(observe(deleting, owned, { pbs: { error: "ssh: not connected" } }));
  assert.equal(of(blind, "removeFinalizer").length, 0);
  // ended: the generic deletion takes over
  const ended = plan(observe(deleting, owned, { pbs: { dialect: "slurm", jobs: [job({ name, state: "C", phase: "completed" })] } }));
  assert.equal(of(ended, "pbsQdel").length, 0);
  assert.deepEqual(of(ended, "delete").map((d) => d.ref.kind).sort(), ["ConfigMap", "Deployment", "NetworkPolicy", "Secret", "Service"]);
  const gone = plan(observe(deleting, [], { pbs: { dialect: "slurm", jobs: [] } }));
  assert.deepEqual(gone.actions, [{ type: "removeFinalizer" }]);
});

test("a value that is not shell-safe never reaches a script: InvalidJobScript, no qsub", () => {
  const c = withFinalizer(rawCluster(spec()));
  // bypass the schema as a stale object could: the planner's own check still refuses
  const { owned } = firstPlan();
  const bad = { ...c, spec: { ...spec(), backend: { pbs: { ...spec().backend.pbs, setup: ["echo $(id)"] } } } };
  const p = plan(observe(bad, owned, { pbs: { dialect: "slurm", jobs: [] } }));
  assert.equal(of(p, "pbsSubmit").length, 0);
  assert.ok(["InvalidSpec", "InvalidJobScript"].includes(cond(p, "Degraded").reason));
});

test("sshTunnel: forwards from the cluster's port block to the controller Service; the job names only the login host's ports", () => {
  const c = withFinalizer(rawCluster(spec({ network: { mode: "sshTunnel" }, port: 2222 })));
  const first = plan(observe(c, [], { pbs: { dialect: "slurm", jobs: [] } }));
  const owned = first.actions.flatMap((a) => (a.type === "apply" || a.type === "create" ? [a.object] : []));
  const p = plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } }));
  const [t, ...more] = of(p, "pbsTunnel");
  assert.ok(t !== undefined && more.length === 0);
  assert.deepEqual(t.channels.slice(0, 7).map((ch) => ch.name), ["registration", "control", "mux", "task", "iopub", "hb_ping", "hb_pong"]);
  assert.ok(t.channels.every((ch) => /^psum-controller\.[a-z0-9-]+\.svc\./.test(ch.target.host)), JSON.stringify(t.channels[0]));
  const base = t.channels[0]!.remotePort;
  assert.deepEqual(t.channels.map((ch) => ch.remotePort), t.channels.map((_, i) => base + i));
  // nothing is submitted until the forwards are bound: the job names their ports
  assert.equal(of(p, "pbsSubmit").length, 0);
  assert.equal(cond(p, "Submitted").reason, "WaitingForTunnel");
  const fwd = plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [], tunnel: { state: "forwarding", portBase: base, skippedBlocks: [] } } }));
  const [s] = of(fwd, "pbsSubmit");
  assert.ok(s !== undefined);
  const info = JSON.parse(/^export IPP_CONNECTION_INFO='(.*)'$/m.exec(s.script)![1]!) as J;
  assert.equal(info.interface, "tcp://127.0.0.1");
  assert.equal(info.ssh, "alice@login01:2222");
  assert.deepEqual([info.registration, info.control, info.mux, info.task, info.iopub, info.hb_ping, info.hb_pong, ...info.broadcast], t.channels.map((ch) => ch.remotePort));
  for (const ch of t.channels) assert.ok(!s.script.includes(`:${ch.target.port}`) && !new RegExp(`\\b${ch.target.port}\\b`).test(JSON.stringify(info)), `controller port ${ch.target.port} leaked into the job`);
  assert.match(s.script, /--IPEngine\.paramiko=True/);
  assert.equal(cond(p, "TunnelReady").reason, "TunnelOpening");
  // the same cluster plans the same ports (a restarted operator binds what the job was told)
  assert.deepEqual(of(plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } })), "pbsTunnel")[0]!.channels, t.channels);
});

test("sshTunnel: the TunnelReady condition follows the forwarder; Ready needs it forwarding", () => {
  const c = withFinalizer(rawCluster(spec({ network: { mode: "sshTunnel" } })));
  const owned = plan(observe(c, [], { pbs: { dialect: "slurm", jobs: [] } })).actions.flatMap((a) => (a.type === "apply" || a.type === "create" ? [a.object] : []));
  const base = of(plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } })), "pbsTunnel")[0]!.channels[0]!.remotePort;
  const name = of(plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [], tunnel: { state: "forwarding", portBase: base } } })), "pbsSubmit")[0]!.name;
  const ready = (tunnel: { state: string; error?: string; portBase?: number }) => {
    const deploy = owned.map((o) => o.kind === "Deployment" ? { ...o, status: { availableReplicas: 1 } } : o);
    return plan(observe(c, deploy, { pbs: { dialect: "slurm", jobs: [job({ name })], tunnel }, controllerEngines: { registered: 4, alive: 4 } }));
  };
  const up = ready({ state: "forwarding", portBase: base });
  assert.equal(cond(up, "TunnelReady").status, "True");
  assert.equal((up.status as J).phase, "Ready");
  const down = ready({ state: "down", error: "ssh link alice@login01:22 lost" });
  assert.deepEqual([cond(down, "TunnelReady").status, cond(down, "TunnelReady").reason, cond(down, "TunnelReady").message], ["False", "TunnelDown", "ssh link alice@login01:22 lost"]);
  assert.notEqual((down.status as J).phase, "Ready");
  assert.deepEqual([cond(down, "Ready").status, cond(down, "Ready").reason], ["False", "TunnelDown"]);
});

test("sshTunnel: a taken block moves the job to the block the forwarder got; status and TunnelReady say which", () => {
  const c = withFinalizer(rawCluster(spec({ network: { mode: "sshTunnel" } })));
  const owned = plan(observe(c, [], { pbs: { dialect: "slurm", jobs: [] } })).actions.flatMap((a) => (a.type === "apply" || a.type === "create" ? [a.object] : []));
  const hashed = of(plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } })), "pbsTunnel")[0]!.channels[0]!.remotePort;
  const fallback = hashed + 16 <= 31584 ? hashed + 16 : 22000;
  const p = plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [], tunnel: { state: "forwarding", portBase: fallback, skippedBlocks: [hashed] } } }));
  const [s] = of(p, "pbsSubmit");
  assert.ok(s !== undefined);
  const info = JSON.parse(/^export IPP_CONNECTION_INFO='(.*)'$/m.exec(s.script)![1]!) as J;
  assert.equal(info.registration, fallback, "the job names the fallback block's ports");
  assert.deepEqual((p.status as J).pbs.tunnel, { portBase: fallback, skippedBlocks: [hashed] });
  assert.equal(cond(p, "TunnelReady").reason, "ForwardingOnFallbackBlock");
  assert.match(cond(p, "TunnelReady").message, new RegExp(`block ${fallback} was used because ${hashed} was taken`));
  // with the block in status, the forwarder is asked for it first (a restarted operator binds what the job was told)
  const withStatus = { ...c, status: p.status };
  const again = plan(observe(withStatus as typeof c, owned, { pbs: { dialect: "slurm", jobs: [job({ name: s.name })] } }));
  assert.equal(of(again, "pbsTunnel")[0]!.channels[0]!.remotePort, fallback);
  assert.equal(of(again, "pbsSubmit").length + of(again, "pbsQdel").length, 0, "the running job is kept while the tunnel reopens");
});

const info = (p: Plan): J => JSON.parse(/^export IPP_CONNECTION_INFO='(.*)'$/m.exec(of(p, "pbsSubmit")[0]!.script)![1]!) as J;
const withService = (owned: KubeObject[], f: (svc: J) => J) => owned.map((o) => (o.kind === "Service" ? (f(o as J) as KubeObject) : o));

test("direct with a LoadBalancer Service: the job waits (Pending, WaitingForControllerAddress) until the Service has an address, then dials it", () => {
  const c = withFinalizer(rawCluster({ ...spec({ network: { mode: "direct" } }), controller: { service: { type: "LoadBalancer" } } }));
  const owned = plan(observe(c, [], { pbs: { dialect: "slurm", jobs: [] } })).actions.flatMap((a) => (a.type === "apply" || a.type === "create" ? [a.object] : []));
  const waiting = plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } }));
  assert.equal(of(waiting, "pbsSubmit").length, 0);
  assert.equal((waiting.status as J).phase, "Pending");
  assert.equal(cond(waiting, "Submitted").reason, "WaitingForControllerAddress");
  assert.match(cond(waiting, "Submitted").message, /waiting for Service psum-controller to get a load-balancer address/);
  assert.equal(cond(waiting, "Ready").reason, "WaitingForControllerAddress");
  const lb = withService(owned, (s) => ({ ...s, status: { loadBalancer: { ingress: [{ ip: "203.0.113.7" }] } } }));
  const p = plan(observe(c, lb, { pbs: { dialect: "slurm", jobs: [] } }));
  assert.equal(info(p).interface, "tcp://203.0.113.7");
  const reg = ((owned.find((o) => o.kind === "Service") as J).spec.ports as J[]).find((x) => x.name === "registration")!.port as number;
  assert.equal(info(p).registration, reg, "the Service's own ports behind a load balancer");
  // the load balancer's address changes while the job runs: no resubmit
  const name = of(p, "pbsSubmit")[0]!.name;
  const moved = withService(owned, (s) => ({ ...s, status: { loadBalancer: { ingress: [{ hostname: "lb.example.org" }] } } }));
  const later = plan(observe(c, moved, { pbs: { dialect: "slurm", jobs: [job({ name })] } }));
  assert.equal(of(later, "pbsSubmit").length + of(later, "pbsQdel").length, 0, "the running job stays");
  // a junk address from the Service never reaches a script
  const junk = withService(owned, (s) => ({ ...s, status: { loadBalancer: { ingress: [{ hostname: "a b;c" }] } } }));
  assert.equal(cond(plan(observe(c, junk, { pbs: { dialect: "slurm", jobs: [] } })), "Submitted").reason, "WaitingForControllerAddress");
});

test("direct with a NodePort Service: network.address is the node, the engines get the Service's node ports", () => {
  const c = withFinalizer(rawCluster({ ...spec({ network: { mode: "direct", address: "192.0.2.10" } }), controller: { service: { type: "NodePort" } } }));
  const owned = plan(observe(c, [], { pbs: { dialect: "slurm", jobs: [] } })).actions.flatMap((a) => (a.type === "apply" || a.type === "create" ? [a.object] : []));
  // as applied (no node ports yet): wait
  const waiting = plan(observe(c, owned, { pbs: { dialect: "slurm", jobs: [] } }));
  assert.equal(of(waiting, "pbsSubmit").length, 0);
  assert.match(cond(waiting, "Submitted").message, /waiting for the node ports of Service psum-controller/);
  // the API server assigned node ports
  const assigned = withService(owned, (s) => ({ ...s, spec: { ...s.spec, ports: (s.spec.ports as J[]).map((p, i) => ({ ...p, nodePort: 30100 + i })) } }));
  const svcPorts = ((assigned.find((o) => o.kind === "Service") as J).spec.ports as J[]);
  const nodePort = (port: number) => svcPorts.find((p) => p.port === port)!.nodePort as number;
  const p = plan(observe(c, assigned, { pbs: { dialect: "slurm", jobs: [] } }));
  const i = info(p);
  assert.equal(i.interface, "tcp://192.0.2.10");
  for (const k of ["registration", "control", "mux", "task", "iopub", "hb_ping", "hb_pong"]) assert.ok(i[k] >= 30100 && i[k] < 30200, `${k} → a node port`);
  for (const b of i.broadcast as number[]) assert.ok(b >= 30100 && b < 30200, "broadcast → a node port");
  assert.equal(i.registration, nodePort(svcPorts.find((x) => x.name === "registration")!.port as number));
});
