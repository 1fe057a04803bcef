/**
 * The operator against a real kube-apiserver (no controllers, no kubelet: the tests write the
 * Deployment/Job status the operator waits on): apply, update, delete with the finalizer, status
 * written only when it changes, 409 conflicts retried, rejected writes surfaced as Degraded.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { CLUSTER_LABEL, HOSTFILE_KEY, CONNECTION_KEYS } from "../../../src/backends/mpi/core/names.ts";
import { createOperatorMetrics, type OperatorMetrics } from "../../../src/metrics/operator.ts";
import { Informer } from "../../../src/operator/informer.ts";
import { createEventRecorder } from "../../../src/operator/events.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { startOperator, OWNED_KINDS, type OperatorHandle } from "../../../src/operator/operator.ts";
import { corePlanner } from "../../../src/operator/planner.ts";
import { Reconciler } from "../../../src/operator/reconciler.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { getOrUndefined, listItems, waitFor } from "./helpers.ts";

const NS = "ops";
let api: ApiServer;
let op: OperatorHandle;
let metrics: OperatorMetrics;

before(async () => {
  api = await startApiServer();
  await createNamespace(api.client, NS);
  metrics = createOperatorMetrics(new Registry(), { defaultMetrics: false });
  op = await startOperator({
    client: api.client, planner: corePlanner, metrics, namespace: NS, workers: 4,
    ownedLabelSelector: CLUSTER_LABEL, podLabel: CLUSTER_LABEL,
  });
});
after(async () => {
  await op?.stop();
  await api?.stop();
});

type EC = KubeObject & { spec: { engines: number }; status?: {
  observedGeneration?: number; phase?: string; engines?: { desired: number };
  conditions?: Array<{ type: string; status: string; reason: string; message: string; lastTransitionTime: string }>;
  mpi?: { worldGeneration?: string; launcherJob?: string; relaunches?: number; workers?: number };
} };

const ecPath = (name: string) => objectPath(ENGINECLUSTER, NS, name);
const getEc = (name: string) => api.client.request<EC>("GET", ecPath(name));
const cond = (ec: EC, type: string) => ec.status?.conditions?.find((c) => c.type === type);

async function createEc(name: string, spec: Record<string, unknown>): Promise<EC> {
  return api.client.request<EC>("POST", collectionPath(ENGINECLUSTER, NS), {
    body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: NS }, spec },
  });
}

async function ownedObjects(name: string): Promise<KubeObject[]> {
  const out: KubeObject[] = [];
  for (const [v, k] of OWNED_KINDS) {
    for (const o of await listItems(api.client, collectionPath(resourceType(v, k), NS), `${CLUSTER_LABEL}=${name}`)) out.push({ ...o, kind: k });
  }
  return out;
}

async function eventsFor(name: string): Promise<Array<{ reason: string; type: string; message: string; count: number }>> {
  const items = await listItems(api.client, collectionPath(resourceType("v1", "Event"), NS));
  return items.filter((e) => (e.involvedObject as { name?: string }).name === name) as never;
}

const current = (ec: EC) => ec.status?.observedGeneration === ec.metadata?.generation && (ec.status?.conditions?.length ?? 0) > 0;

async function setStatus(apiVersion: string, kind: string, name: string, status: Record<string, unknown>): Promise<void> {
  await api.client.request("PATCH", objectPath(resourceType(apiVersion, kind), NS, name, "status"), {
    body: { status }, contentType: "application/merge-patch+json",
  });
}

test("apply: every owned object exists with its content and owner reference; finalizer, status and events are set", async () => {
  const created = await createEc("psum", { engines: 4, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0", slotsPerWorker: 2 } } });
  // the first status may say Pending (objects being created); then Starting once they exist
  const ec = await waitFor("psum status", async () => { const e = await getEc("psum"); return current(e) && e.status?.phase === "Starting" && e; });
  assert.deepEqual(ec.metadata?.finalizers, ["ipp.dev/finalizer"]);
  assert.equal(ec.status?.phase, "Starting");
  assert.deepEqual(ec.status?.engines, { desired: 4, registered: 0, alive: 0 });
  for (const t of ["Ready", "Progressing", "Degraded", "ControllerReady", "EnginesReady"]) assert.ok(cond(ec, t), `condition ${t}`);
  assert.equal(cond(ec, "Ready")!.status, "False");
  assert.equal(cond(ec, "Degraded")!.status, "False");

  const owned = await waitFor("owned objects", async () => { const o = await ownedObjects("psum"); return o.length >= 10 && o; });
  const byKind = (k: string) => owned.filter((o) => o.kind === k).map((o) => o.metadata!.name).sort();
  assert.deepEqual(byKind("Secret"), ["psum-connection", "psum-ssh"]);
  assert.deepEqual(byKind("Service"), ["psum-controller", "psum-workers"]);
  assert.deepEqual(byKind("ConfigMap"), ["psum-controller-state", "psum-hostfile"]);
  assert.deepEqual(byKind("Deployment"), ["psum-controller"]);
  assert.deepEqual(byKind("StatefulSet"), ["psum-worker"]);
  assert.deepEqual(byKind("Job"), [ec.status!.mpi!.launcherJob!]);
  for (const o of owned) {
    assert.deepEqual(o.metadata!.ownerReferences, [{
      apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", name: "psum", uid: created.metadata!.uid, controller: true, blockOwnerDeletion: true,
    }], `${o.kind} ${o.metadata!.name} owner reference`);
    const managers = (o.metadata!.managedFields as Array<{ manager: string; operation: string }>).map((m) => `${m.manager}/${m.operation}`);
    assert.ok(managers.includes("ipp-operator/Apply"), `${o.kind} ${o.metadata!.name} applied by ipp-operator: ${managers}`);
  }
  const sts = owned.find((o) => o.kind === "StatefulSet") as { spec: { replicas: number } } & KubeObject;
  assert.equal(sts.spec.replicas, 2);
  const hostfile = (owned.find((o) => o.kind === "ConfigMap" && o.metadata?.name === "psum-hostfile") as { data: Record<string, string> } & KubeObject).data[HOSTFILE_KEY]!;
  assert.deepEqual(hostfile.trim().split("\n"), [
    "psum-worker-0.psum-workers.ops.svc.cluster.local slots=2",
    "psum-worker-1.psum-workers.ops.svc.cluster.local slots=2",
  ]);
  const conn = owned.find((o) => o.metadata!.name === "psum-connection") as { data: Record<string, string> } & KubeObject;
  const client = JSON.parse(Buffer.from(conn.data[CONNECTION_KEYS.client]!, "base64").toString()) as { key: string; location: string };
  assert.equal(client.key, Buffer.from(conn.data[CONNECTION_KEYS.hmacKey]!, "base64").toString());
  assert.equal(client.location, "psum-controller.ops.svc.cluster.local");

  const byPhase = (await metrics.registry.getSingleMetric("ipp_operator_engineclusters")!.get()).values;
  assert.equal(byPhase.find((v) => v.labels.phase === "Starting")?.value, 1);
  assert.equal(byPhase.find((v) => v.labels.phase === "Ready")?.value, 0);
  const engines = (await metrics.registry.getSingleMetric("ipp_operator_enginecluster_engines")!.get()).values;
  assert.deepEqual(engines.filter((v) => v.labels.cluster === "psum").map((v) => [v.labels.cluster_namespace, v.labels.state, v.value]),
    [[NS, "desired", 4], [NS, "registered", 0], [NS, "alive", 0]]);
  const events = await waitFor("events", async () => { const e = await eventsFor("psum"); return e.some((x) => x.reason === "Creating") && e; });
  assert.ok(events.every((e) => e.type === "Normal"), JSON.stringify(events));
});

test("status is written once per change: a converged cluster's status is not rewritten by later reconciles", async () => {
  const before = await getEc("psum");
  const ownedBefore = await ownedObjects("psum");
  const reconcilesBefore = await reconcileCount();
  // each update of an owned object requeues the cluster: two updates that change nothing the
  // operator wrote (an annotation someone else adds) make at least two more reconciles
  const deployment = objectPath(resourceType("apps/v1", "Deployment"), NS, "psum-controller");
  for (const touch of ["1", "2"]) {
    await api.client.request("PATCH", deployment, { body: { metadata: { annotations: { "example.com/touched": touch } } }, contentType: "application/merge-patch+json" });
    await waitFor("a reconcile after the update", async () => (await reconcileCount()) >= reconcilesBefore + Number(touch), 20_000, 100);
  }
  const after = await getEc("psum");
  assert.equal(after.metadata!.resourceVersion, before.metadata!.resourceVersion, "no write to the EngineCluster");
  const ownedAfter = await ownedObjects("psum");
  assert.deepEqual(ownedAfter.map((o) => `${o.kind}/${o.metadata!.name}`).sort(), ownedBefore.map((o) => `${o.kind}/${o.metadata!.name}`).sort());
  const unchanged = (o: KubeObject) => o.kind === "Deployment" || ownedBefore.some((b) => b.metadata!.uid === o.metadata!.uid && b.metadata!.resourceVersion === o.metadata!.resourceVersion);
  assert.ok(ownedAfter.every(unchanged), "no owned object re-applied");
});

async function reconcileCount(): Promise<number> {
  const m = await metrics.registry.getSingleMetric("ipp_operator_reconcile_total")!.get();
  return m.values.reduce((a, v) => a + v.value, 0);
}

test("the controller becoming available flips ControllerReady and records an event", async () => {
  await setStatus("apps/v1", "Deployment", "psum-controller", { replicas: 1, readyReplicas: 1, availableReplicas: 1, observedGeneration: 1 });
  const ec = await waitFor("ControllerReady", async () => { const e = await getEc("psum"); return cond(e, "ControllerReady")?.status === "True" && e; });
  // no kubelet and no cluster DNS: the controller's HTTP API is unreachable, which is not-ready, not an error
  assert.equal(cond(ec, "EnginesReady")!.status, "Unknown");
  assert.equal(cond(ec, "EnginesReady")!.reason, "ControllerUnreachable");
  await waitFor("ControllerAvailable event", async () => (await eventsFor("psum")).some((e) => e.reason === "ControllerAvailable"));
});

test("changing engines updates the owned objects and relaunches the MPI world", async () => {
  const before = await getEc("psum");
  const oldJob = before.status!.mpi!.launcherJob!;
  await api.client.request("PATCH", ecPath("psum"), { body: { spec: { engines: 6 } }, contentType: "application/merge-patch+json" });
  const ec = await waitFor("new generation observed", async () => { const e = await getEc("psum"); return current(e) && e.spec.engines === 6 && e; });
  assert.equal(ec.status!.engines!.desired, 6);
  assert.equal(ec.status!.mpi!.relaunches, 1);
  assert.notEqual(ec.status!.mpi!.launcherJob, oldJob);
  await waitFor("objects updated", async () => {
    const owned = await ownedObjects("psum");
    const sts = owned.find((o) => o.kind === "StatefulSet") as { spec: { replicas: number } } | undefined;
    const jobs = owned.filter((o) => o.kind === "Job").map((o) => o.metadata!.name);
    const hostfile = (owned.find((o) => o.kind === "ConfigMap" && o.metadata?.name === "psum-hostfile") as { data: Record<string, string> } | undefined)?.data[HOSTFILE_KEY] ?? "";
    return sts?.spec.replicas === 3 && jobs.length === 1 && jobs[0] === ec.status!.mpi!.launcherJob && hostfile.trim().split("\n").length === 3;
  });
  await waitFor("Relaunching event", async () => (await eventsFor("psum")).some((e) => e.reason === "Relaunching" && /4 → 6/.test(e.message)));
});

test("a write the API server rejects becomes a Degraded condition and a Warning event, not a retry loop", async () => {
  // requests above limits: valid for the CRD schema, rejected by the StatefulSet's validation
  await createEc("badres", { engines: 2, backend: { mpi: {
    image: "ghcr.io/example/ipp-engine:1.0", resources: { requests: { cpu: "4" }, limits: { cpu: "1" } },
  } } });
  const ec = await waitFor("Degraded", async () => { const e = await getEc("badres"); return cond(e, "Degraded")?.status === "True" && e; });
  assert.equal(ec.status!.phase, "Degraded");
  assert.match(cond(ec, "Degraded")!.message, /less than or equal to cpu limit/);
  const ev = await waitFor("Warning event", async () => (await eventsFor("badres")).find((e) => e.type === "Warning"));
  assert.match(ev.message, /cpu limit/);
  const terminal = (await metrics.registry.getSingleMetric("ipp_operator_reconcile_total")!.get()).values.find((v) => v.labels.result === "terminal_error");
  assert.ok((terminal?.value ?? 0) >= 1);
  // fixing the spec recovers
  await api.client.request("PATCH", ecPath("badres"), {
    body: { spec: { backend: { mpi: { resources: { requests: { cpu: "1" } } } } } }, contentType: "application/merge-patch+json",
  });
  await waitFor("recovered", async () => { const e = await getEc("badres"); return current(e) && cond(e, "Degraded")?.status === "False"; });
  await waitFor("StatefulSet created", async () => (await ownedObjects("badres")).some((o) => o.kind === "StatefulSet"));
});

test("a 409 on the status write (stale cache) is retried on a fresh read", async () => {
  await createEc("stale", { engines: 1, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } });
  await waitFor("stale converged", async () => current(await getEc("stale")));
  const staleCopy = await getEc("stale");
  // bump the object's resourceVersion behind the cache's back
  await api.client.request("PATCH", ecPath("stale"), { body: { metadata: { labels: { touched: "yes" } } }, contentType: "application/merge-patch+json" });
  // a status the planner will want to change: clear it in the stale copy's eyes
  const cached = { ...staleCopy, status: { ...staleCopy.status, phase: "Pending" } };
  const clusters = new Informer({
    list: async () => ({ items: [cached], resourceVersion: "1" }),
    watch: (_rv, signal) => (async function* () { await new Promise((r) => signal.addEventListener("abort", r)); })(),
  });
  clusters.start();
  await clusters.waitForSync();
  const owned = OWNED_KINDS.map(([v, k]) => {
    const inf = new Informer({
      list: async () => ({ items: (await listItems(api.client, collectionPath(resourceType(v, k), NS), `${CLUSTER_LABEL}=stale`)).map((o) => ({ ...o, apiVersion: v, kind: k })), resourceVersion: "1" }),
      watch: (_rv, signal) => (async function* () { await new Promise((r) => signal.addEventListener("abort", r)); })(),
    });
    inf.start();
    return inf;
  });
  await Promise.all(owned.map((i) => i.waitForSync()));
  const m = createOperatorMetrics(new Registry(), { defaultMetrics: false });
  const r = new Reconciler({ client: api.client, clusters, owned, planner: corePlanner, metrics: m, recorder: createEventRecorder({ client: api.client, component: "test" }) });
  const out = await r.reconcile(`${NS}/stale`);
  assert.equal(out.result, "requeue_after", String(out.error));
  const writes = (await m.registry.getSingleMetric("ipp_operator_api_requests_total")!.get()).values
    .filter((v) => v.labels.verb === "update_status").map((v) => `${v.labels.code}:${v.value}`).sort();
  assert.deepEqual(writes, ["200:1", "409:1"]);
  const fresh = await getEc("stale");
  assert.equal(fresh.status!.phase, "Starting");
  assert.equal(fresh.metadata!.labels!.touched, "yes");
  await Promise.all([clusters, ...owned].map((i) => i.stop()));
});

test("delete: the finalizer's cleanup deletes every owned object, then the EngineCluster goes", async () => {
  const ec = await getEc("psum");
  assert.ok((await ownedObjects("psum")).length > 0);
  await api.client.request("DELETE", ecPath("psum"));
  await waitFor("EngineCluster gone", async () => (await getOrUndefined(api.client, ecPath("psum"))) === undefined, 30_000);
  assert.deepEqual((await ownedObjects("psum")).map((o) => `${o.kind}/${o.metadata!.name}`), []);
  const anyOwnedByUid = [];
  for (const [v, k] of OWNED_KINDS) {
    for (const o of await listItems(api.client, collectionPath(resourceType(v, k), NS))) {
      if (o.metadata?.ownerReferences?.some((r) => r.uid === ec.metadata!.uid)) anyOwnedByUid.push(`${k}/${o.metadata!.name}`);
    }
  }
  assert.deepEqual(anyOwnedByUid, [], "nothing orphaned");
  assert.ok((await eventsFor("psum")).some((e) => e.reason === "Deleting"));
  // per-cluster metric series are dropped
  const series = (await metrics.registry.getSingleMetric("ipp_operator_enginecluster_engines")!.get()).values;
  assert.ok(!series.some((v) => v.labels.cluster === "psum"), "psum's series removed");
});

test("repeated events are aggregated into one Event object with a count", async () => {
  const target = await createEc("events", { engines: 1, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } });
  const rec = createEventRecorder({ client: api.client, component: "ipp-operator" });
  const obj = { ...target, apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster" };
  await rec.record(obj, "Warning", "TestRepeated", "the same thing again");
  await rec.record(obj, "Warning", "TestRepeated", "the same thing again");
  await rec.record(obj, "Warning", "TestRepeated", "the same thing again");
  await rec.record(obj, "Normal", "TestOther", "something else");
  const mine = (await eventsFor("events")).filter((e) => e.reason.startsWith("Test"));
  assert.deepEqual(mine.map((e) => `${e.reason}:${e.count}`).sort(), ["TestOther:1", "TestRepeated:3"]);
  const ev = (await listItems(api.client, collectionPath(resourceType("v1", "Event"), NS)))
    .find((e) => (e as { reason?: string }).reason === "TestRepeated") as { involvedObject: { uid: string; kind: string }; source: { component: string } } & KubeObject;
  assert.equal(ev.involvedObject.uid, target.metadata!.uid);
  assert.equal(ev.involvedObject.kind, "EngineCluster");
  assert.equal(ev.source.component, "ipp-operator");
});
