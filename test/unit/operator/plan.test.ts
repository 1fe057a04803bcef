import { test } from "node:test";
import assert from "node:assert/strict";
import { FINALIZER, plan, referencedSecrets, REQUEUE_READY_MS, REQUEUE_STARTING_MS, REQUEUE_WAITING_MS, type Action, type KubeObject, type Observed, type Plan } from "../../../src/operator/core/plan.ts";
import { b64, MATERIAL, mpiSpec, rawCluster } from "../backends/mpi/fixtures.ts";

type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const NOW = new Date("2026-02-01T10:00:00.123Z");
const LATER = new Date("2026-02-01T10:05:00Z");

/** Fresh material whose every read is recorded, to check it is used only when nothing exists yet. */
function generated(reads: string[] = []): Observed["generated"] {
  return {
    get hmacKey() { reads.push("hmacKey"); return MATERIAL.hmacKey; },
    get apiToken() { reads.push("apiToken"); return MATERIAL.apiToken; },
    get sshPrivateKey() { reads.push("sshPrivateKey"); return MATERIAL.sshPrivateKey; },
    get sshPublicKey() { reads.push("sshPublicKey"); return MATERIAL.sshPublicKey; },
  };
}

const withFinalizer = (c: Record<string, unknown>, extraMeta: Record<string, unknown> = {}) =>
  ({ ...c, metadata: { ...(c.metadata as J), finalizers: [FINALIZER], ...extraMeta } });

const applied = (p: Plan): KubeObject[] => p.actions.filter((a): a is Extract<Action, { type: "apply" | "create" }> => a.type === "apply" || a.type === "create").map((a) => a.object);
const events = (p: Plan) => p.actions.filter((a): a is Extract<Action, { type: "event" }> => a.type === "event").map((a) => `${a.eventType}/${a.reason}: ${a.message}`);
const kinds = (p: Plan) => p.actions.map((a) => a.type === "apply" || a.type === "create" ? `${a.type} ${a.object.kind}/${a.object.metadata.name}` : a.type === "delete" ? `delete ${a.ref.kind}/${a.ref.name}` : a.type === "event" ? `event ${a.reason}` : a.type);
const cond = (p: Plan | { status?: J }, t: string) => (p.status as J | undefined)?.conditions?.find((c: J) => c.type === t);

/** What the API server would hold after applying, with workload status as the kubelet would report. */
function live(objs: KubeObject[], opts: { controller?: boolean; workersReady?: number; jobStatus?: J } = {}): KubeObject[] {
  return objs.map((o) => {
    const x: KubeObject = structuredClone(o);
    if (o.kind === "Deployment") x.status = opts.controller ? { availableReplicas: 1, readyReplicas: 1 } : {};
    if (o.kind === "StatefulSet") x.status = { readyReplicas: opts.workersReady ?? 0 };
    if (o.kind === "Job") x.status = opts.jobStatus ?? { active: 1 };
    return x;
  });
}

function observe(cluster: unknown, owned: KubeObject[] = [], extra: Partial<Observed> = {}): Observed {
  return { cluster, owned, generated: generated(), now: NOW, ...extra };
}

test("new cluster: finalizer, a Creating event, every object applied, Pending", () => {
  const p = plan(observe(rawCluster(mpiSpec())));
  const world = (p.status as J).mpi.worldGeneration;
  assert.deepEqual(kinds(p), [
    "addFinalizer", "event Creating",
    "create Secret/psum-connection", "create Secret/psum-ssh", "apply ConfigMap/psum-hostfile", "apply ConfigMap/psum-controller-state", "apply Service/psum-controller",
    "apply Service/psum-workers", "apply NetworkPolicy/psum-controller", "apply Deployment/psum-controller", "apply StatefulSet/psum-worker",
    `apply Job/psum-launcher-${world}`,
  ]);
  assert.equal(p.requeueAfterMs, REQUEUE_WAITING_MS, "nothing to poll yet: the objects' informer events bring what follows");
  const s = p.status as J;
  assert.equal(s.phase, "Pending");
  assert.equal(s.backend, "mpi");
  assert.equal(s.observedGeneration, 1);
  assert.deepEqual(s.engines, { desired: 8, registered: 0, alive: 0 });
  // the API is not on the Service unless spec.controller.service.exposeApi: no endpoint to show
  assert.deepEqual(s.controller, { service: "psum-controller", connectionSecret: "psum-connection" });
  assert.deepEqual(s.conditions.map((c: J) => `${c.type}=${c.status}/${c.reason}`), [
    "Ready=False/ControllerCreating", "Progressing=True/Launching", "Degraded=False/AsExpected",
    "ControllerReady=False/ControllerCreating", "WorkersReady=False/WorkersNotReady", "EnginesReady=Unknown/ControllerNotQueried",
  ]);
  for (const c of s.conditions) {
    assert.equal(c.lastTransitionTime, "2026-02-01T10:00:00Z");
    assert.equal(c.observedGeneration, 1);
  }
});

test("a starting cluster is polled soon only when its controller can be asked for engines, or something is wrong", () => {
  const c = withFinalizer(rawCluster(mpiSpec()));
  const objs = applied(plan(observe(c)));
  const waiting = plan(observe(c, live(objs)));
  assert.equal((waiting.status as J).phase, "Starting");
  assert.equal(waiting.requeueAfterMs, REQUEUE_WAITING_MS, "controller not available: its Deployment's update requeues the cluster");
  const available = plan(observe(c, live(objs, { controller: true })));
  assert.equal(available.requeueAfterMs, REQUEUE_STARTING_MS, "controller available: the engine list is polled");
  const answered = plan(observe(c, live(objs), { controllerEngines: { registered: 1, alive: 1 } }));
  assert.equal(answered.requeueAfterMs, REQUEUE_STARTING_MS, "the controller answered: keep polling");
  const missing = plan(observe(withFinalizer(rawCluster(mpiSpec({ imagePullSecrets: ["regcred"] }))), live(objs), { secrets: { regcred: false } }));
  assert.equal(missing.requeueAfterMs, REQUEUE_STARTING_MS, "a missing referenced Secret is not watched: polled");
});

test("the planner is deterministic", () => {
  const o = () => observe(rawCluster(mpiSpec()));
  assert.deepEqual(plan(o()), plan(o()));
});

test("walk to Ready, then a reconcile with nothing new writes nothing and emits nothing", () => {
  const c0 = withFinalizer(rawCluster(mpiSpec({ slotsPerWorker: 4 })));
  const p0 = plan(observe(c0));
  const objs = applied(p0);

  const c1 = { ...c0, status: p0.status };
  const p1 = plan(observe(c1, live(objs, { controller: true, workersReady: 1 }), { controllerEngines: { registered: 3, alive: 3 } }));
  assert.equal((p1.status as J).phase, "Starting");
  assert.deepEqual(events(p1), [
    "Normal/ControllerAvailable: controller psum-controller.science.svc.cluster.local is available",
    "Normal/EnginesRegistering: 3/8 engines registered",
  ]);
  assert.deepEqual((p1.status as J).engines, { desired: 8, registered: 3, alive: 3 });

  const c2 = { ...c0, status: p1.status };
  const p2 = plan(observe(c2, live(objs, { controller: true, workersReady: 2 }), { controllerEngines: { registered: 8, alive: 8 }, now: LATER }));
  const s2 = p2.status as J;
  assert.equal(s2.phase, "Ready");
  assert.equal(p2.requeueAfterMs, REQUEUE_READY_MS);
  assert.deepEqual(events(p2), [
    "Normal/AllWorkersReady: 2/2 worker pods ready",
    "Normal/AllEnginesRegistered: 8/8 engines registered, 8 alive",
    "Normal/Ready: all 8 engines registered",
  ]);
  assert.equal(cond(p2, "ControllerReady").lastTransitionTime, "2026-02-01T10:00:00Z", "unchanged condition keeps its time");
  assert.equal(cond(p2, "Ready").lastTransitionTime, "2026-02-01T10:05:00Z");

  const c3 = { ...c0, status: p2.status };
  const p3 = plan(observe(c3, live(objs, { controller: true, workersReady: 2 }), { controllerEngines: { registered: 8, alive: 8 }, now: new Date("2026-02-01T11:00:00Z") }));
  assert.equal(p3.status, undefined, "nothing changed: no status write");
  assert.deepEqual(events(p3), []);
  assert.ok(p3.actions.every((a) => a.type === "apply"), "only idempotent applies");
});

test("key material is reused from the existing Secrets, never regenerated", () => {
  const c = withFinalizer(rawCluster(mpiSpec()));
  const first = applied(plan(observe(c)));
  const owned = live(first).map((o) => o.kind === "Secret" && o.metadata.name === "psum-connection"
    ? { ...o, data: { ...(o.data as J), "hmac-key": b64("existing-key") } } : o);
  const reads: string[] = [];
  const p = plan(observe(c, owned, { generated: generated(reads) }));
  assert.deepEqual(reads, [], "fresh material not read when Secrets exist");
  const secret = applied(p).find((o) => o.metadata.name === "psum-connection") as J;
  assert.equal(Buffer.from(secret.data["hmac-key"], "base64").toString(), "existing-key");
  assert.equal(JSON.parse(Buffer.from(secret.data["ipcontroller-client.json"], "base64").toString()).key, "existing-key");
});

test("changing spec.engines relaunches the world: new launcher Job, old one deleted, status and Event say so", () => {
  const c8 = withFinalizer(rawCluster(mpiSpec({}, 8)));
  const p8 = plan(observe(c8));
  const objs8 = live(applied(p8), { controller: true, workersReady: 8 });
  const ready8 = plan(observe({ ...c8, status: p8.status }, objs8, { controllerEngines: { registered: 8, alive: 8 } }));
  const old = (ready8.status as J).mpi.launcherJob;

  const c16 = { ...withFinalizer(rawCluster(mpiSpec({}, 16)), { generation: 2 }), status: ready8.status };
  const p = plan(observe(c16, objs8, { controllerEngines: { registered: 8, alive: 8 }, now: LATER }));
  const s = p.status as J;
  assert.notEqual(s.mpi.launcherJob, old);
  assert.equal(s.mpi.relaunches, 1);
  assert.equal(s.observedGeneration, 2);
  assert.deepEqual(s.engines, { desired: 16, registered: 8, alive: 8 });
  assert.equal(s.phase, "Starting");
  assert.equal(cond(p, "Progressing").reason, "Relaunching");
  assert.ok(p.actions.some((a) => a.type === "apply" && a.object.kind === "Job" && a.object.metadata.name === s.mpi.launcherJob));
  assert.deepEqual(p.actions.filter((a) => a.type === "delete"), [
    { type: "delete", ref: { apiVersion: "batch/v1", kind: "Job", namespace: "science", name: old }, propagationPolicy: "Background" },
  ]);
  const ev = events(p);
  assert.ok(ev.includes(`Normal/Relaunching: spec.engines changed 8 → 16: relaunching the MPI world (launcher Job ${s.mpi.launcherJob} replaces ${old})`), ev.join("\n"));
  const sts = applied(p).find((o) => o.kind === "StatefulSet") as J;
  assert.equal(sts.spec.replicas, 16);

  // next reconcile: the old Job is gone or going; no second relaunch event, no second delete
  const after = objs8.filter((o) => o.metadata.name !== old).concat(live(applied(p)).filter((o) => o.kind === "Job"));
  const p2 = plan(observe({ ...c16, status: p.status }, after, { controllerEngines: { registered: 8, alive: 8 }, now: LATER }));
  assert.ok(!events(p2).some((e) => e.includes("Relaunching")));
  assert.ok(!p2.actions.some((a) => a.type === "delete"));
  assert.equal((p2.status as J | undefined)?.mpi.relaunches ?? 1, 1);
});

test("an invalid spec admission missed: Degraded with the field named, a Warning Event, owned objects untouched", () => {
  const bad = withFinalizer(rawCluster({ engines: 4, backend: { mpi: { image: "x", workers: 1, slotsPerWorker: 2 } } }));
  const owned = live(applied(plan(observe(withFinalizer(rawCluster(mpiSpec()))))));
  const p = plan(observe(bad, owned));
  assert.deepEqual(p.actions.filter((a) => a.type !== "event"), [], "no apply, no delete");
  const msg = "spec.backend.mpi.workers: spec.backend.mpi.workers × spec.backend.mpi.slotsPerWorker must be at least spec.engines";
  assert.deepEqual(events(p), [`Warning/InvalidSpec: ${msg}`]);
  assert.equal((p.status as J).phase, "Degraded");
  assert.deepEqual(cond(p, "Degraded"), { type: "Degraded", status: "True", observedGeneration: 1, lastTransitionTime: "2026-02-01T10:00:00Z", reason: "InvalidSpec", message: msg });
  assert.equal(p.requeueAfterMs, undefined, "no polling: a spec change triggers the next reconcile");
  // the same again: nothing to write, no repeated Event
  const again = plan(observe({ ...bad, status: p.status }, owned, { now: LATER }));
  assert.equal(again.status, undefined);
  assert.deepEqual(again.actions, []);
});

test("a spec that is not even an object is Degraded, not a crash", () => {
  const p = plan(observe(withFinalizer(rawCluster("nonsense" as unknown as Record<string, unknown>))));
  assert.equal((p.status as J).phase, "Degraded");
  assert.equal(cond(p, "Degraded").reason, "InvalidSpec");
  assert.match(cond(p, "Degraded").message, /^spec: /);
});

test("deletion: delete every owned object, then remove the finalizer", () => {
  const c = withFinalizer(rawCluster(mpiSpec()), { deletionTimestamp: "2026-02-01T09:59:00Z" });
  const owned = live(applied(plan(observe(withFinalizer(rawCluster(mpiSpec()))))));
  const pod: KubeObject = { apiVersion: "v1", kind: "Pod", metadata: { name: "psum-worker-0", namespace: "science" } };
  const p = plan(observe(c, [...owned, pod]));
  const deletes = p.actions.filter((a) => a.type === "delete");
  assert.equal(deletes.length, 10, "every managed object (the controller-state ConfigMap too), never the pod");
  assert.ok(deletes.every((d) => d.type === "delete" && d.propagationPolicy === "Background"));
  assert.deepEqual(events(p), ["Normal/Deleting: deleting 10 owned object(s) before removing the finalizer"]);
  assert.equal((p.status as J).phase, "Terminating");
  assert.ok(!p.actions.some((a) => a.type === "removeFinalizer"));

  const going = owned.map((o) => ({ ...o, metadata: { ...o.metadata, deletionTimestamp: "2026-02-01T10:00:01Z" } }));
  const p2 = plan(observe({ ...c, status: p.status }, going));
  assert.deepEqual(p2.actions, [], "no repeated deletes or events while objects go away");

  const p3 = plan(observe({ ...c, status: p.status }, [pod]));
  assert.deepEqual(p3.actions, [{ type: "removeFinalizer" }]);
  assert.equal(p3.status, undefined);
});

test("deletion without our finalizer does nothing", () => {
  const c = rawCluster(mpiSpec());
  (c.metadata as J).deletionTimestamp = "2026-02-01T09:59:00Z";
  assert.deepEqual(plan(observe(c)), { actions: [], status: undefined });
});

test("an image that can't be pulled is reported in status with a Warning Event", () => {
  const c = withFinalizer(rawCluster(mpiSpec({ image: "ghcr.io/ipp/does-not-exist:1" })));
  const owned = live(applied(plan(observe(c))), { controller: true });
  const pod: KubeObject = {
    apiVersion: "v1", kind: "Pod", metadata: { name: "psum-worker-0", namespace: "science" },
    status: { containerStatuses: [{ name: "worker", image: "ghcr.io/ipp/does-not-exist:1", state: { waiting: { reason: "ImagePullBackOff", message: "Back-off pulling image" } } }] },
  };
  const p = plan(observe(c, [...owned, pod], { controllerEngines: { registered: 0, alive: 0 } }));
  assert.equal((p.status as J).phase, "Degraded");
  assert.equal(cond(p, "Degraded").reason, "ImagePullFailed");
  assert.match(cond(p, "Degraded").message, /ghcr\.io\/ipp\/does-not-exist:1.*ImagePullBackOff/);
  assert.ok(events(p).some((e) => e.startsWith("Warning/ImagePullFailed: pod psum-worker-0")));
  assert.equal((p.status as J).reason, "ImagePullFailed", "the REASON column of kubectl get ec");
  assert.equal(p.requeueAfterMs, REQUEUE_STARTING_MS, "keeps polling: the image may appear");
});

test("a missing Secret referenced by the spec is reported in status", () => {
  const spec = mpiSpec({ env: [{ name: "TOKEN", valueFrom: { secretKeyRef: { name: "api-token", key: "t" } } }] });
  const c = withFinalizer(rawCluster(spec));
  assert.deepEqual(referencedSecrets(c), ["api-token"]);
  const p = plan(observe(c, [], { secrets: { "api-token": false } }));
  assert.equal(cond(p, "Degraded").reason, "SecretNotFound");
  assert.match(cond(p, "Degraded").message, /api-token/);
  assert.ok(applied(p).length > 0, "objects are still applied; pods wait for the Secret");
  const ok = plan(observe(c, [], { secrets: { "api-token": true } }));
  assert.equal(cond(ok, "Degraded").status, "False");
});

test("a failed launcher Job makes the cluster Failed", () => {
  const c = withFinalizer(rawCluster(mpiSpec()));
  const owned = live(applied(plan(observe(c))), { controller: true, jobStatus: { failed: 7, conditions: [{ type: "Failed", status: "True", reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" }] } });
  const p = plan(observe(c, owned));
  assert.equal((p.status as J).phase, "Failed");
  assert.equal(cond(p, "Degraded").reason, "LauncherFailed");
  assert.equal(p.requeueAfterMs, undefined);
});

test("controller unreachable: EnginesReady Unknown, last counts kept", () => {
  const c = withFinalizer(rawCluster(mpiSpec()));
  const objs = live(applied(plan(observe(c))), { controller: true, workersReady: 8 });
  const r = plan(observe(c, objs, { controllerEngines: { registered: 8, alive: 7 } }));
  const p = plan(observe({ ...c, status: r.status }, objs, { controllerEngines: { error: "connect ECONNREFUSED" } }));
  assert.deepEqual((p.status as J).engines, { desired: 8, registered: 8, alive: 7 });
  assert.equal(cond(p, "EnginesReady").status, "Unknown");
  assert.equal(cond(p, "EnginesReady").reason, "ControllerUnreachable");
  assert.equal((p.status as J).phase, "Starting");
});

test("pbs backend: sshTunnel (the default) is planned with forwards on the login host; a missing credentials Secret is named", () => {
  const spec = { engines: 8, backend: { pbs: { host: "login", user: "alice", credentialsSecret: "carc" } } };
  const p = plan(observe(withFinalizer(rawCluster(spec))));
  assert.notEqual(cond(p, "Degraded")?.reason, "NetworkModeNotImplemented");
  assert.equal(p.actions.filter((a) => a.type === "pbsTunnel").length, 1);
  assert.equal((p.status as J).backend, "pbs");
  const m = plan(observe(withFinalizer(rawCluster(spec)), [], { secrets: { carc: false } }));
  assert.equal(cond(m, "Degraded").reason, "SecretNotFound");
  assert.match(cond(m, "Degraded").message, /spec\.backend\.pbs\.credentialsSecret: Secret carc not found/);
});

test("stale owned objects of other names are deleted; foreign objects are left alone", () => {
  const c = withFinalizer(rawCluster(mpiSpec()));
  const objs = live(applied(plan(observe(c))));
  const stray: KubeObject = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "psum-old", namespace: "science", ownerReferences: [{ apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", name: "psum", uid: (c.metadata as J).uid }] } };
  const foreign: KubeObject = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "other", namespace: "science", ownerReferences: [{ apiVersion: "v1", kind: "X", name: "x", uid: "someone-else" }] } };
  const p = plan(observe(c, [...objs, stray, foreign]));
  assert.deepEqual(p.actions.filter((a) => a.type === "delete").map((a) => a.type === "delete" && a.ref.name), ["psum-old"]);
});

test("operator configuration reaches the owned objects: controller image, DNS domain, metrics scrapers; absent keys keep defaults", () => {
  const objects = (config: Observed["config"]) => applied(plan(observe(withFinalizer(rawCluster(mpiSpec())), [], { config })));
  const scrapeRule = (objs: KubeObject[]) => (objs.find((o) => o.kind === "NetworkPolicy") as J).spec.ingress.find((r: J) => r.ports.some((p: J) => p.port === 8081));
  const defaults = objects(undefined);
  assert.deepEqual(scrapeRule(defaults), { from: [{ namespaceSelector: {} }], ports: [{ protocol: "TCP", port: 8081 }] });
  assert.deepEqual(objects({ controllerImage: undefined, clusterDomain: undefined, metricsScrapers: undefined }), defaults);
  const custom = objects({
    controllerImage: "registry.example/ipp:1", clusterDomain: "corp.local",
    metricsScrapers: { namespaceSelector: { "kubernetes.io/metadata.name": "monitoring" }, podSelector: { "app.kubernetes.io/name": "prometheus" } },
  });
  assert.deepEqual(scrapeRule(custom).from, [{
    namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } },
    podSelector: { matchLabels: { "app.kubernetes.io/name": "prometheus" } },
  }]);
  const deployment = custom.find((o) => o.kind === "Deployment") as J;
  assert.equal(deployment.spec.template.spec.containers[0].image, "registry.example/ipp:1");
  assert.ok(deployment.spec.template.spec.containers[0].args.includes("--location=psum-controller.science.svc.corp.local"));
});

// ---------------------------------------------------------------------------------------------
// what the real cluster showed: a lost worker, a replaced controller, workers not ready in time

function pod(name: string, component: string, extraLabels: Record<string, string>, status: J, created = "2026-02-01T09:00:00Z"): KubeObject {
  return {
    apiVersion: "v1", kind: "Pod",
    metadata: { name, namespace: "science", creationTimestamp: created, labels: { "ipp.dev/cluster": "psum", "app.kubernetes.io/component": component, ...extraLabels } },
    status,
  };
}

/** A cluster walked to Ready with its controller pod `controllerPod`; returns the inputs of the next reconcile. */
/** The engine list a controller reports for `n` engines: ids 0..n-1 with their uuids. */
const engineList = (n: number, alive = n) => ({
  registered: n, alive, engines: Array.from({ length: n }, (_, i) => ({ id: i, uuid: `uuid-${i}` })), nextId: n,
});

function readyCluster(controllerPod: KubeObject) {
  const c0 = withFinalizer(rawCluster(mpiSpec({ slotsPerWorker: 4 })));
  const p0 = plan(observe(c0));
  const world = (p0.status as J).mpi.worldGeneration as string;
  const ready = plan(observe({ ...c0, status: p0.status }, [...live(applied(p0), { controller: true, workersReady: 2 }), controllerPod], { controllerEngines: engineList(8) }));
  assert.equal((ready.status as J).phase, "Ready");
  // what the API server holds now: the controller-state ConfigMap with the 8 registrations
  const objs = live(applied(ready), { controller: true, workersReady: 2 });
  return { c0, objs, world, status: ready.status as J };
}

const controllerPod = (name: string, restarts = 0, created?: string) =>
  pod(name, "controller", {}, { containerStatuses: [{ name: "controller", restartCount: restarts, state: { running: {} } }] }, created);
const savedState = (objs: KubeObject[]) => JSON.parse(String((objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === "psum-controller-state")!.data as J)["engines.json"]));
const at = (seconds: number) => new Date(NOW.getTime() + seconds * 1000);

test("the controller-state ConfigMap holds the controller's registrations (upstream's engine state file), kept when the controller can't be read", () => {
  const { c0, objs, status } = readyCluster(controllerPod("psum-controller-aaa"));
  const uuids = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [String(i), `uuid-${i}`]));
  assert.deepEqual(savedState(objs), { engines: uuids, next_id: 8 });
  // unreachable: the saved registrations are applied unchanged, never emptied
  const p = plan(observe({ ...c0, status }, [...objs, controllerPod("psum-controller-aaa")], { controllerEngines: { error: "timeout" } }));
  assert.deepEqual(savedState(applied(p)), { engines: uuids, next_id: 8 });
  // an engine gone: dropped from the copy, next id kept
  const fewer = { ...engineList(8), registered: 7, alive: 7, engines: engineList(8).engines.filter((e) => e.id !== 3) };
  const q = plan(observe({ ...c0, status }, [...objs, controllerPod("psum-controller-aaa")], { controllerEngines: fewer }));
  const left = savedState(applied(q));
  assert.equal(left.next_id, 8);
  assert.deepEqual(Object.keys(left.engines), ["0", "1", "2", "4", "5", "6", "7"]);
});

test("a replaced controller pod keeps the world: same launcher Job, the engines re-attach, ControllerReplaced then EnginesReattached", () => {
  const { c0, objs, world, status } = readyCluster(controllerPod("psum-controller-aaa"));
  assert.equal(status.mpi.controllerPod, "psum-controller-aaa:0");
  const fresh = controllerPod("psum-controller-bbb", 0, "2026-02-01T10:00:00Z");
  // the new controller restored the 8 engines from the ConfigMap; their hearts have not answered yet
  const p = plan(observe({ ...c0, status }, [...objs, fresh], { controllerEngines: engineList(8, 0) }));
  const s = p.status as J;
  assert.equal(s.mpi.worldEpoch, undefined);
  assert.equal(s.mpi.worldGeneration, world);
  assert.equal(s.mpi.launcherJob, `psum-launcher-${world}`);
  assert.equal(s.mpi.relaunches, 0);
  assert.equal(s.mpi.controllerPod, "psum-controller-bbb:0");
  assert.deepEqual(s.mpi.reattach, { since: "2026-02-01T10:00:00Z", from: "psum-controller-aaa:0", engines: 8 });
  assert.ok(!kinds(p).some((k) => k.startsWith("delete")), kinds(p).join("\n"));
  assert.equal(s.phase, "Starting");
  assert.equal(cond(p, "EnginesReady").reason, "EnginesReattaching");
  assert.equal(cond(p, "Progressing").reason, "Reattaching");
  assert.match(cond(p, "Progressing").message, /re-attach to controller psum-controller-bbb:0 \(was psum-controller-aaa:0\) \(0\/8 back so far\); the world is relaunched if they are not all back by 2026-02-01T10:02:00Z/);
  const ev = events(p);
  assert.ok(ev.includes("Warning/ControllerReplaced: controller pod psum-controller-aaa was replaced by psum-controller-bbb: the 8 engine(s) of the running MPI world re-attach to it with their ids; the world is relaunched if they are not all back within spec.controller.reattachTimeoutSeconds=120s"), ev.join("\n"));
  assert.ok(!ev.some((e) => e.includes("Relaunching")), ev.join("\n"));
  // the terminating old pod alongside the new one changes nothing; 5 of 8 back: still waiting
  const old = { ...controllerPod("psum-controller-aaa"), metadata: { ...controllerPod("psum-controller-aaa").metadata, deletionTimestamp: "2026-02-01T10:00:01Z" } };
  const owned = [...live(applied(p), { controller: true, workersReady: 2 }), old, fresh];
  const waiting = plan({ ...observe({ ...c0, status: s }, owned, { controllerEngines: engineList(8, 5) }), now: at(30) });
  const w = waiting.status as J;
  assert.deepEqual(w.mpi.reattach, s.mpi.reattach);
  assert.ok(!events(waiting).some((e) => e.includes("ControllerReplaced")));
  // every heart answered: re-attached, Ready, same world
  const back = plan({ ...observe({ ...c0, status: w }, owned, { controllerEngines: engineList(8) }), now: at(40) });
  const b = back.status as J;
  assert.equal(b.phase, "Ready");
  assert.equal(b.mpi.reattach, undefined);
  assert.equal(b.mpi.worldGeneration, world);
  assert.ok(events(back).includes("Normal/EnginesReattached: 8/8 engines re-attached to the new controller with their ids; the MPI world was kept"), events(back).join("\n"));
});

test("engines not back within reattachTimeoutSeconds: the world is relaunched (new epoch, new launcher Job) with ReattachTimedOut and Relaunching Events", () => {
  const { c0, objs, world, status } = readyCluster(controllerPod("psum-controller-aaa"));
  const fresh = controllerPod("psum-controller-bbb");
  const p = plan(observe({ ...c0, status }, [...objs, fresh], { controllerEngines: { error: "controller Deployment has no available replica" } }));
  const s = p.status as J;
  assert.equal(s.mpi.reattach.since, "2026-02-01T10:00:00Z");
  const owned = [...live(applied(p), { controller: true, workersReady: 2 }), fresh];
  // one engine registered after the last saved state is unknown to the new controller: 7 come back
  const late = plan({ ...observe({ ...c0, status: s }, owned, { controllerEngines: engineList(7) }), now: at(119) });
  assert.equal((late.status as J).mpi.worldEpoch, undefined);
  assert.ok(!kinds(late).some((k) => k.startsWith("delete Job")));
  const t = plan({ ...observe({ ...c0, status: late.status }, owned, { controllerEngines: engineList(7) }), now: at(120) });
  const ts = t.status as J;
  assert.equal(ts.mpi.worldEpoch, 1);
  assert.notEqual(ts.mpi.worldGeneration, world);
  assert.equal(ts.mpi.relaunches, 1);
  assert.equal(ts.mpi.reattach, undefined);
  assert.ok(kinds(t).includes(`delete Job/psum-launcher-${world}`), kinds(t).join("\n"));
  assert.ok(kinds(t).includes(`apply Job/psum-launcher-${ts.mpi.worldGeneration}`));
  const ev = events(t);
  assert.ok(ev.includes("Warning/ReattachTimedOut: 7/8 engines re-attached within spec.controller.reattachTimeoutSeconds=120s of the controller's replacement: relaunching the MPI world"), ev.join("\n"));
  assert.ok(ev.some((e) => e.startsWith("Normal/Relaunching: the engines did not re-attach to the replaced controller (psum-controller-aaa:0 → psum-controller-bbb:0) within spec.controller.reattachTimeoutSeconds=120s")), ev.join("\n"));
  // a shorter window from the spec
  const c5 = { ...c0, spec: { ...((c0 as J).spec as J), controller: { reattachTimeoutSeconds: 10 } } };
  const p5 = plan(observe({ ...c5, status }, [...objs, fresh], { controllerEngines: engineList(8, 0) }));
  const t5 = plan({ ...observe({ ...c5, status: p5.status }, owned, { controllerEngines: engineList(8, 0) }), now: at(10) });
  assert.equal((t5.status as J).mpi.worldEpoch, 1);
});

test("a restarted controller container re-attaches the same way; a controller change before any engine registered opens no window", () => {
  const { c0, objs, world, status } = readyCluster(controllerPod("psum-controller-aaa"));
  const p = plan(observe({ ...c0, status }, [...objs, controllerPod("psum-controller-aaa", 1)], { controllerEngines: engineList(8, 0) }));
  const s = p.status as J;
  assert.equal(s.mpi.worldEpoch, undefined);
  assert.equal(s.mpi.worldGeneration, world);
  assert.equal(s.mpi.reattach.from, "psum-controller-aaa:0");
  assert.ok(events(p).some((e) => e.startsWith("Warning/ControllerReplaced: the controller container in pod psum-controller-aaa restarted (restart 1): the 8 engine(s)")), events(p).join("\n"));

  const fresh = withFinalizer(rawCluster(mpiSpec()));
  const p0 = plan(observe(fresh, [controllerPod("psum-controller-aaa")]));
  const p1 = plan(observe({ ...fresh, status: p0.status }, [...live(applied(p0)), controllerPod("psum-controller-bbb")]));
  assert.equal((p1.status as J).mpi.worldEpoch, undefined);
  assert.equal((p1.status as J).mpi.reattach, undefined);
  assert.equal((p1.status as J).mpi.controllerPod, "psum-controller-bbb:0");
});

test("the launcher restarted after mpiexec failed (a worker lost): LauncherRestarted Event, MpiexecFailed in status until the engines are back; the HMAC key never shows", () => {
  const { c0, objs, world, status } = readyCluster(controllerPod("psum-controller-aaa"));
  const message = `ORTE has lost communication with a remote daemon psum-worker-1 key=${MATERIAL.hmacKey}`;
  const launcher = pod(`psum-launcher-${world}-x1`, "launcher", { "ipp.dev/world": world }, {
    containerStatuses: [{ name: "launcher", restartCount: 1, state: { running: {} }, lastState: { terminated: { exitCode: 1, reason: "Error", message } } }],
  });
  const p = plan(observe({ ...c0, status }, [...objs, controllerPod("psum-controller-aaa"), launcher], { controllerEngines: { registered: 4, alive: 4 } }));
  const s = p.status as J;
  assert.equal(s.mpi.launcherRestarts, 1);
  assert.equal(s.phase, "Degraded");
  assert.equal(cond(p, "Degraded").reason, "MpiexecFailed");
  assert.match(cond(p, "Degraded").message, /mpiexec exited 1 \(restart 1;.*lost communication with a remote daemon psum-worker-1 key=\[redacted\]/);
  const ev = events(p);
  assert.ok(ev.some((e) => /^Warning\/LauncherRestarted: launcher restarted \(restart 1\) after mpiexec exited 1 \(.*key=\[redacted\]\)/.test(e)), ev.join("\n"));
  assert.ok(!JSON.stringify(p).includes(MATERIAL.hmacKey), "the key is in neither status nor Events");
  // the engines are back: Ready again, no second event
  const back = plan(observe({ ...c0, status: s }, [...objs, controllerPod("psum-controller-aaa"), launcher], { controllerEngines: { registered: 8, alive: 8 } }));
  assert.equal((back.status as J).phase, "Ready");
  assert.ok(!events(back).some((e) => e.includes("LauncherRestarted")));
});

test("workers not ready before the deadline: the launcher's exit 3 becomes WorkersNotReadyTimeout with the deadline and the missing workers", () => {
  const c = withFinalizer(rawCluster(mpiSpec({ workersReadyTimeoutSeconds: 30 })));
  const p0 = plan(observe(c));
  const world = (p0.status as J).mpi.worldGeneration as string;
  const launcher = pod(`psum-launcher-${world}-x1`, "launcher", { "ipp.dev/world": world }, {
    containerStatuses: [{ name: "launcher", restartCount: 1, state: { waiting: { reason: "CrashLoopBackOff", message: "back-off 10s" } },
      lastState: { terminated: { exitCode: 3, message: "workers not ready after 30s: 1 of 2 not reachable on port 2222 (psum-worker-1.psum-workers.science.svc.cluster.local)" } } }],
  });
  const p = plan(observe({ ...c, status: p0.status }, [...live(applied(p0), { controller: true, workersReady: 1 }), launcher], { controllerEngines: { registered: 0, alive: 0 } }));
  assert.equal(cond(p, "Degraded").reason, "WorkersNotReadyTimeout");
  assert.match(cond(p, "Degraded").message, /workersReadyTimeoutSeconds=30s.*1 of 2 not reachable on port 2222 \(psum-worker-1/);
  assert.ok(!cond(p, "Degraded").message.includes("CrashLoopBackOff"), "the back-off is not reported on top of why");
  assert.ok(events(p).some((e) => e.startsWith("Warning/LauncherRestarted: launcher restarted (restart 1) after waiting 30s for the workers")), events(p).join("\n"));
  assert.equal((applied(p).find((o) => o.kind === "Job")!.spec as J).template.spec.containers[0].env.find((e: J) => e.name === "IPP_WAIT_TIMEOUT").value, "30");
});
