/**
 * The operator's smaller faults, each against a real kube-apiserver:
 * - a pbs cluster's missing credentials Secret is looked for again with backoff: SecretNotFound
 *   clears by itself once the Secret exists;
 * - a 403 (a ResourceQuota exceeded, a ValidatingAdmissionPolicy denial) is reported (Degraded +
 *   Warning Event) and retried with backoff until it clears;
 * - a planner exception is reported the same way, and retried;
 * - a reconcile whose cache doesn't show the connection Secret yet never overwrites its keys;
 * - after a restart the gauges come back from the cache before any reconcile, and time_to_ready
 *   is not observed again.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { Registry } from "prom-client";
import { CLUSTER_LABEL } from "../../../src/backends/mpi/core/names.ts";
import { createOperatorMetrics, type OperatorMetrics } from "../../../src/metrics/operator.ts";
import { createEventRecorder } from "../../../src/operator/events.ts";
import { apiListWatch, Informer } from "../../../src/operator/informer.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { startOperator, OWNED_KINDS, type OperatorHandle } from "../../../src/operator/operator.ts";
import { corePlanner } from "../../../src/operator/planner.ts";
import { Reconciler, type Planner } from "../../../src/operator/reconciler.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { getOrUndefined, listItems, waitFor } from "./helpers.ts";

const NS = "faults";
let api: ApiServer;
let op: OperatorHandle;
let metrics: OperatorMetrics;
let engines: Server;
let enginesUrl = "";

type Condition = { type: string; status: string; reason: string; message: string };
type EC = KubeObject & { status?: { phase?: string; conditions?: Condition[] } };
const getEc = (name: string) => api.client.request<EC>("GET", objectPath(ENGINECLUSTER, NS, name));
const cond = (ec: EC | undefined, t: string) => ec?.status?.conditions?.find((c) => c.type === t);

/** The core planner, except that it throws for clusters labelled explode=yes (a planner bug, on demand). */
const explodingPlanner: Planner = {
  ...corePlanner,
  plan(observed) {
    const labels = (observed.cluster as KubeObject).metadata?.labels ?? {};
    if (labels.explode === "yes") throw new TypeError("cannot read properties of undefined (reading 'replicas')");
    return corePlanner.plan(observed);
  },
};

const operatorOptions = (m: OperatorMetrics, workers = 2) => ({
  client: api.client, planner: explodingPlanner, metrics: m, namespace: NS, workers, ownedLabelSelector: CLUSTER_LABEL,
  // the controller's engine list, as a real controller with every engine registered answers it
  probe: { controllerUrl: () => enginesUrl },
});

before(async () => {
  engines = createServer((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ engines: [{ id: 0, alive: true }] }));
  });
  await new Promise<void>((r) => engines.listen(0, "127.0.0.1", r));
  enginesUrl = `http://127.0.0.1:${(engines.address() as { port: number }).port}`;
  api = await startApiServer();
  await createNamespace(api.client, NS);
  metrics = createOperatorMetrics(new Registry(), { defaultMetrics: false });
  op = await startOperator(operatorOptions(metrics));
});
after(async () => {
  await op?.stop();
  await api?.stop();
  await new Promise((r) => engines?.close(r));
});

async function warnings(name: string): Promise<Array<{ reason: string; message: string; count?: number }>> {
  const items = await listItems(api.client, collectionPath(resourceType("v1", "Event"), NS));
  return items.filter((e) => (e.involvedObject as { name?: string }).name === name && e.type === "Warning") as never;
}
const createEc = (name: string, spec: Record<string, unknown>, labels: Record<string, string> = {}) =>
  api.client.request("POST", collectionPath(ENGINECLUSTER, NS), { body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: NS, labels }, spec } });
const mpiSpec = { engines: 1, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } };
const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

test("pbs: a missing credentials Secret is looked for again with backoff; SecretNotFound clears by itself once it exists", async () => {
  await createEc("nosecret", { engines: 1, backend: { pbs: {
    host: "127.0.0.1", port: 1, user: "alice", credentialsSecret: "late-ssh", network: { mode: "direct", address: "127.0.0.1" },
  } } });
  await waitFor("SecretNotFound", async () => cond(await getEc("nosecret"), "Degraded")?.reason === "SecretNotFound", 60_000);
  // the Secret is not an owned object: no watch event for it reaches the operator, only its retries
  await api.client.request("POST", collectionPath(resourceType("v1", "Secret"), NS), {
    body: { apiVersion: "v1", kind: "Secret", metadata: { name: "late-ssh", namespace: NS }, data: { "ssh-privatekey": b64("not a key"), known_hosts: b64("x") } },
  });
  const ec = await waitFor("SecretNotFound cleared", async () => {
    const e = await getEc("nosecret");
    return cond(e, "Degraded")?.reason !== "SecretNotFound" && e;
  }, 120_000, 250);
  // the host behind it doesn't answer (port 1): that is what the cluster says now
  assert.equal(cond(ec, "Degraded")?.reason, "SchedulerUnreachable");
});

test("a ResourceQuota exceeded (403): Degraded/QuotaExceeded and a Warning Event, retried with backoff until the quota allows it", async () => {
  // the quota controller (not run here) would fill in status; write what it would
  const quotas = `/api/v1/namespaces/${NS}/resourcequotas`;
  const quota = await api.client.request<KubeObject>("POST", quotas, {
    body: { apiVersion: "v1", kind: "ResourceQuota", metadata: { name: "no-services", namespace: NS }, spec: { hard: { services: "0" } } },
  });
  await api.client.request("PUT", `${quotas}/no-services/status`, {
    body: { ...quota, status: { hard: { services: "0" }, used: { services: "0" } } },
  });
  await createEc("quota", mpiSpec);
  const ec = await waitFor("QuotaExceeded", async () => { const e = await getEc("quota"); return cond(e, "Degraded")?.reason === "QuotaExceeded" && e; }, 60_000);
  assert.match(cond(ec, "Degraded")!.message, /exceeded quota: no-services/);
  assert.match(cond(ec, "Degraded")!.message, /retrying with backoff/);
  const ev = await waitFor("QuotaExceeded Event", async () => (await warnings("quota")).find((e) => e.reason === "QuotaExceeded"));
  assert.match(ev.message, /exceeded quota/);
  // retried, not dropped: the same Event's count grows
  await waitFor("a retry", async () => ((await warnings("quota")).find((e) => e.reason === "QuotaExceeded")?.count ?? 0) >= 2, 60_000, 250);
  await api.client.request("DELETE", `${quotas}/no-services`);
  await waitFor("recovered after the quota went", async () => {
    const e = await getEc("quota");
    return cond(e, "Degraded")?.status === "False" && (await getOrUndefined(api.client, objectPath(resourceType("apps/v1", "StatefulSet"), NS, "quota-worker"))) !== undefined;
  }, 90_000, 250);
});

test("a ValidatingAdmissionPolicy denial (403): Degraded/AdmissionDenied and a Warning Event, retried until the policy goes", async () => {
  const VAP = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies";
  const VAPB = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings";
  await api.client.request("POST", VAP, { body: {
    apiVersion: "admissionregistration.k8s.io/v1", kind: "ValidatingAdmissionPolicy", metadata: { name: "no-statefulsets" },
    spec: {
      failurePolicy: "Fail",
      matchConstraints: { resourceRules: [{ apiGroups: ["apps"], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["statefulsets"] }] },
      validations: [{ expression: "false", message: "StatefulSets are not allowed here", reason: "Forbidden" }],
    },
  } });
  await api.client.request("POST", VAPB, { body: {
    apiVersion: "admissionregistration.k8s.io/v1", kind: "ValidatingAdmissionPolicyBinding", metadata: { name: "no-statefulsets" },
    spec: { policyName: "no-statefulsets", validationActions: ["Deny"], matchResources: { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": NS } } } },
  } });
  try {
    // the policy takes a moment to be enforced: wait until a probe StatefulSet is refused
    await waitFor("the policy enforced", async () => {
      try {
        await api.client.request("POST", collectionPath(resourceType("apps/v1", "StatefulSet"), NS), { query: { dryRun: "All" }, body: {
          apiVersion: "apps/v1", kind: "StatefulSet", metadata: { name: "probe" },
          spec: { selector: { matchLabels: { a: "b" } }, serviceName: "x", template: { metadata: { labels: { a: "b" } }, spec: { containers: [{ name: "c", image: "x" }] } } },
        } });
        return false;
      } catch { return true; }
    }, 30_000, 250);
    await createEc("denied", mpiSpec);
    const ec = await waitFor("AdmissionDenied", async () => { const e = await getEc("denied"); return cond(e, "Degraded")?.reason === "AdmissionDenied" && e; }, 60_000).catch(async (err) => { throw new Error(`${err}: ${JSON.stringify(cond(await getEc("denied"), "Degraded"))}`); });
    assert.match(cond(ec, "Degraded")!.message, /StatefulSets are not allowed here/);
    await waitFor("AdmissionDenied Event", async () => (await warnings("denied")).some((e) => e.reason === "AdmissionDenied"));
  } finally {
    await api.client.request("DELETE", `${VAPB}/no-statefulsets`);
    await api.client.request("DELETE", `${VAP}/no-statefulsets`);
  }
  await waitFor("recovered", async () => cond(await getEc("denied"), "Degraded")?.status === "False", 120_000, 250);
});

test("a planner exception: Degraded/PlanningFailed and a Warning Event, retried (not a silent terminal error)", async () => {
  await createEc("boom", mpiSpec, { explode: "yes" });
  const ec = await waitFor("PlanningFailed", async () => { const e = await getEc("boom"); return cond(e, "Degraded")?.reason === "PlanningFailed" && e; }, 60_000);
  assert.match(cond(ec, "Degraded")!.message, /planning failed: cannot read properties/);
  await waitFor("PlanningFailed Event", async () => (await warnings("boom")).some((e) => e.reason === "PlanningFailed"));
  await api.client.request("PATCH", objectPath(ENGINECLUSTER, NS, "boom"), { body: { metadata: { labels: { explode: "no" } } }, contentType: "application/merge-patch+json" });
  await waitFor("planned again", async () => cond(await getEc("boom"), "Degraded")?.status === "False", 60_000, 250);
});

test("mpi: a reconcile whose cache doesn't show the connection Secret never overwrites the keys on the server", async () => {
  await createEc("keys", mpiSpec);
  const secretPath = objectPath(resourceType("v1", "Secret"), NS, "keys-connection");
  const original = await waitFor("the connection Secret", async () => getOrUndefined<{ data: Record<string, string> }>(api.client, secretPath));
  // a reconciler whose owned caches are empty (an informer that hasn't caught up) with fresh keys
  const clusters = new Informer(apiListWatch(api.client, ENGINECLUSTER, { namespace: NS }), { name: "ec" });
  const stale = OWNED_KINDS.map(([, k]) => new Informer({
    list: async () => ({ items: [], resourceVersion: "1" }),
    watch: (_rv, signal) => (async function* () { await new Promise((r) => signal.addEventListener("abort", r)); })(),
  }, { name: k }));
  for (const i of [clusters, ...stale]) i.start();
  await Promise.all([clusters, ...stale].map((i) => i.waitForSync()));
  try {
    const reconciler = new Reconciler({
      client: api.client, clusters, owned: stale, planner: corePlanner,
      recorder: createEventRecorder({ client: api.client, component: "test" }),
      generate: () => ({ hmacKey: "a-key-nobody-runs-with", apiToken: "a-token-nobody-uses", sshPrivateKey: "x", sshPublicKey: "ssh-ed25519 AAAA x" }),
    });
    for (let i = 0; i < 2; i++) {
      const out = await reconciler.reconcile(`${NS}/keys`);
      assert.ok(out.result === "success" || out.result === "requeue_after", String(out.error));
    }
  } finally {
    await Promise.all([clusters, ...stale].map((i) => i.stop()));
  }
  const after = await api.client.request<{ data: Record<string, string> }>("GET", secretPath);
  assert.deepEqual(after.data, original.data, "the keys the engines use are unchanged");
});

test("after a restart the gauges come back from the cache before any reconcile, and time_to_ready is not observed again", async () => {
  await createEc("ready", mpiSpec);
  // the kubelet's part: the controller Deployment has an available replica
  const deploy = await waitFor("the controller Deployment", async () => getOrUndefined<KubeObject>(api.client, objectPath(resourceType("apps/v1", "Deployment"), NS, "ready-controller")));
  await api.client.request("PUT", objectPath(resourceType("apps/v1", "Deployment"), NS, "ready-controller", "status"), {
    body: { ...deploy, status: { replicas: 1, readyReplicas: 1, availableReplicas: 1, observedGeneration: deploy.metadata?.generation } },
  });
  await waitFor("Ready", async () => (await getEc("ready")).status?.phase === "Ready", 60_000, 250);
  const timeToReady = async (m: OperatorMetrics) => (await m.registry.getSingleMetric("ipp_operator_time_to_ready_seconds")!.get()).values.find((v) => (v as { metricName?: string }).metricName === "ipp_operator_time_to_ready_seconds_count")?.value ?? 0;
  const readyGauge = async (m: OperatorMetrics) => (await m.registry.getSingleMetric("ipp_operator_engineclusters")!.get()).values.find((v) => v.labels.phase === "Ready")?.value ?? 0;
  assert.equal(await timeToReady(metrics), 1);
  await op.stop();

  // a new operator process: no worker runs, so only the start-up seeding can fill the gauges
  const idle = createOperatorMetrics(new Registry(), { defaultMetrics: false });
  const seeded = await startOperator(operatorOptions(idle, 0));
  try {
    await waitFor("seeded", () => seeded.isReady() || undefined);
    await waitFor("the Ready cluster in the gauge", async () => (await readyGauge(idle)) >= 1, 30_000);
    const desired = (await idle.registry.getSingleMetric("ipp_operator_enginecluster_engines")!.get()).values.find((v) => v.labels.cluster === "ready" && v.labels.state === "desired");
    assert.equal(desired?.value, 1);
  } finally {
    await seeded.stop();
  }

  // and with workers: reconciles of the already Ready cluster never observe time_to_ready again
  metrics = createOperatorMetrics(new Registry(), { defaultMetrics: false });
  op = await startOperator(operatorOptions(metrics));
  await api.client.request("PATCH", objectPath(ENGINECLUSTER, NS, "ready"), { body: { metadata: { labels: { touched: "1" } } }, contentType: "application/merge-patch+json" });
  await waitFor("reconciled after the restart", async () => {
    const r = (await metrics.registry.getSingleMetric("ipp_operator_reconcile_total")!.get()).values;
    return r.reduce((a, v) => a + v.value, 0) >= 2;
  }, 30_000, 250);
  assert.equal((await getEc("ready")).status?.phase, "Ready");
  assert.equal(await readyGauge(metrics), 1);
  assert.equal(await timeToReady(metrics), 0, "time_to_ready not observed again with the cluster's full age");
});
