/**
 * The chart's RBAC is enough for the real operator and no more: the operator runs against a real
 * kube-apiserver as the chart's ServiceAccount, with the chart's (Cluster)Roles and its rendered
 * arguments, reconciles an EngineCluster through its whole life (finalizer, owned objects,
 * status, events, deletion) with no request forbidden; SubjectAccessReviews show what it may not do.
 * And every object the chart renders passes the same API server's validation (dry run).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { isNotFound } from "../../../src/operator/kube/client.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { allowed, startOperatorUnderChart, type ChartOperator } from "./operator-under-chart.ts";
import { LEASE_RULES, OPERATOR_RULES } from "./operator-rbac.ts";
import { NAMESPACE, renderChart, type KubeDoc } from "./render.ts";

let api: ApiServer;
before(async () => { api = await startApiServer(); });
after(async () => { await api?.stop(); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Ec = { metadata: { finalizers?: string[]; generation: number }; status?: { observedGeneration?: number; phase?: string } };

async function until<T>(what: string, fn: () => Promise<T | undefined>, op: ChartOperator, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; operator log tail:\n${op.logs().slice(-3000)}`);
    await sleep(250);
  }
}

const ecPath = (ns: string, name = "") => `/apis/ipp.dev/v1alpha1/namespaces/${ns}/engineclusters${name ? `/${name}` : ""}`;
async function get<T>(path: string): Promise<T | undefined> {
  try { return await api.client.request<T>("GET", path); } catch (err) { if (isNotFound(err)) return undefined; throw err; }
}

/** An EngineCluster's whole life under the operator: created, reconciled, deleted, cleaned up. */
async function lifeCycle(op: ChartOperator, ns: string, name: string, scrapersFrom: unknown[] = [{ namespaceSelector: {} }]): Promise<void> {
  await createNamespace(api.client, ns);
  await api.client.request("POST", ecPath(ns), {
    body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: ns }, spec: { engines: 2, backend: { mpi: { image: "registry.example.org/ipp-engine:1" } } } },
  });
  const ec = await until("status with the current observedGeneration and the finalizer", async () => {
    const e = await get<Ec>(ecPath(ns, name));
    return e && e.status?.observedGeneration === e.metadata.generation && (e.metadata.finalizers ?? []).length > 0 ? e : undefined;
  }, op);
  assert.ok(ec.status?.phase, "a phase is reported");
  const deployment = await until("the controller Deployment and Service", async () => {
    const d = await get<{ spec: { template: { spec: { containers: Array<{ image: string }> } } } }>(`/apis/apps/v1/namespaces/${ns}/deployments/${name}-controller`);
    const s = await get(`/api/v1/namespaces/${ns}/services/${name}-controller`);
    return d && s ? d : undefined;
  }, op);
  assert.equal(deployment.spec.template.spec.containers[0]!.image, "ipp-operator:0.1.0", "the controller runs the chart's operator image");
  // the metrics port is open to the scrapers the chart configured, and only it
  const np = await until("the controller NetworkPolicy", () => get<{ spec: { ingress: Array<{ from: unknown[]; ports: Array<{ port: number }> }> } }>(
    `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies/${name}-controller`), op);
  assert.deepEqual(np.spec.ingress.filter((r) => r.ports.some((p) => p.port === 8081)).map((r) => [r.from, r.ports.map((p) => p.port)]), [[scrapersFrom, [8081]]]);
  await until("an Event about the EngineCluster", async () => {
    const evs = await api.client.request<{ items: Array<{ involvedObject: { name: string } }> }>("GET", `/api/v1/namespaces/${ns}/events`);
    return evs.items.some((e) => e.involvedObject.name === name) ? true : undefined;
  }, op);

  await api.client.request("DELETE", ecPath(ns, name));
  await until("the EngineCluster gone after its finalizer ran", async () => ((await get(ecPath(ns, name))) === undefined ? true : undefined), op);
  assert.equal(await get(`/apis/apps/v1/namespaces/${ns}/deployments/${name}-controller`), undefined, "owned Deployment deleted");

  const metrics = await op.metrics();
  const forbidden = metrics.split("\n").filter((l) => /^ipp_operator_api_requests_total\{.*code="403".*\} [1-9]/.test(l));
  assert.deepEqual(forbidden, [], "no API request was forbidden");
  assert.doesNotMatch(op.logs(), /forbidden/i, "no forbidden error in the operator's log");
  assert.match(metrics, /^ipp_operator_reconcile_total\{result="success"\} [1-9]/m, "reconciles succeeded");
}

test("cluster-wide install with leader election: the operator reconciles an EngineCluster's whole life, nothing forbidden", async () => {
  const op = await startOperatorUnderChart(api, { replicaCount: 2 });
  try {
    await until("leadership", async () => (/^ipp_operator_leader 1$/m.test(await op.metrics()) ? true : undefined), op);
    const lease = await get<{ spec: { holderIdentity: string } }>(`/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases/ipp-ipp-operator`);
    assert.match(lease?.spec.holderIdentity ?? "", /^ipp-ipp-operator-/, "the Lease named in the chart, held by the pod name");
    await lifeCycle(op, "science", "psum");

    for (const [gr, verbs] of Object.entries(OPERATOR_RULES)) {
      const [group, resource, subresource] = gr.split("/") as [string, string, string | undefined];
      for (const verb of verbs) {
        assert.ok(await allowed(api, op.serviceAccount, { verb, group, resource, subresource, namespace: "anywhere" }), `${verb} ${gr} in any namespace`);
      }
    }
    assert.ok(await allowed(api, op.serviceAccount, { verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: NAMESPACE }));
    const denied: Array<[string, string, string, string | undefined]> = [
      ["delete", "ipp.dev", "engineclusters", "science"], ["create", "ipp.dev", "engineclusters", "science"],
      ["update", "ipp.dev", "engineclusters", "science"], ["patch", "ipp.dev", "engineclusters/status", "science"],
      ["update", "", "secrets", "science"], ["create", "", "pods", "science"], ["delete", "", "pods", "science"],
      ["create", "rbac.authorization.k8s.io", "roles", "science"], ["create", "rbac.authorization.k8s.io", "clusterroles", undefined],
      ["update", "coordination.k8s.io", "leases", "science"], ["delete", "", "namespaces", undefined],
      ["create", "apiextensions.k8s.io", "customresourcedefinitions", undefined],
    ];
    for (const [verb, group, gr, namespace] of denied) {
      const [resource, subresource] = gr.split("/") as [string, string | undefined];
      assert.equal(await allowed(api, op.serviceAccount, { verb, group, resource, subresource, namespace }), false, `${verb} ${group}/${gr} is not granted`);
    }
    assert.deepEqual(Object.keys(LEASE_RULES), ["coordination.k8s.io/leases"]);
  } finally {
    await op.stop();
  }
});

test("watchNamespace install: a Role in one namespace is enough, and nothing outside it is reachable", async () => {
  const op = await startOperatorUnderChart(api, {
    watchNamespace: "lab", fullnameOverride: "ipp-lab",
    controller: { metricsScrapers: { namespaceSelector: { "kubernetes.io/metadata.name": "monitoring" }, podSelector: { "app.kubernetes.io/name": "prometheus" } } },
  });
  try {
    await lifeCycle(op, "lab", "mc", [{
      namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } },
      podSelector: { matchLabels: { "app.kubernetes.io/name": "prometheus" } },
    }]);
    assert.ok(await allowed(api, op.serviceAccount, { verb: "watch", group: "ipp.dev", resource: "engineclusters", namespace: "lab" }));
    assert.equal(await allowed(api, op.serviceAccount, { verb: "list", group: "ipp.dev", resource: "engineclusters", namespace: "science" }), false);
    assert.equal(await allowed(api, op.serviceAccount, { verb: "list", group: "", resource: "secrets", namespace: "default" }), false);
    assert.equal(await allowed(api, op.serviceAccount, { verb: "list", group: "ipp.dev", resource: "engineclusters" }), false, "no cluster-wide list");
  } finally {
    await op.stop();
  }
});

/** REST path of a rendered object, for the kinds the chart renders (ServiceMonitor aside). */
function objectUrl(d: KubeDoc): string {
  const [group, version] = d.apiVersion.includes("/") ? d.apiVersion.split("/") : ["", d.apiVersion];
  const plural: Record<string, string> = {
    ServiceAccount: "serviceaccounts", Service: "services", ConfigMap: "configmaps", Pod: "pods", Deployment: "deployments",
    ClusterRole: "clusterroles", ClusterRoleBinding: "clusterrolebindings", Role: "roles", RoleBinding: "rolebindings",
    CustomResourceDefinition: "customresourcedefinitions",
  };
  const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
  const ns = d.metadata.namespace ? `/namespaces/${d.metadata.namespace}` : "";
  return `${base}${ns}/${plural[d.kind] ?? assert.fail(`no plural for ${d.kind}`)}/${d.metadata.name}`;
}

test("every object the chart renders is accepted by the real API server (server-side dry run, strict fields)", async () => {
  const variants: Array<Record<string, unknown>> = [
    { replicaCount: 2, grafana: { dashboards: { enabled: true, annotations: { grafana_folder: "ipp" } } } },
    {
      watchNamespace: "lab", fullnameOverride: "ipp-lab", tolerations: [{ key: "hpc", operator: "Exists", effect: "NoSchedule" }], nodeSelector: { pool: "system" },
      nameOverride: "hpc-ops", controller: { metricsScrapers: { namespaceSelector: { team: "obs" }, podSelector: { app: "prometheus" } } },
    },
  ];
  for (const values of variants) {
    const docs = renderChart(values).filter((d) => d.kind !== "ServiceMonitor");
    for (const ns of new Set(docs.map((d) => d.metadata.namespace).filter((n): n is string => !!n))) await createNamespace(api.client, ns);
    for (const d of docs) {
      try {
        await api.client.request("PATCH", objectUrl(d), {
          query: { fieldManager: "helm", force: true, dryRun: "All", fieldValidation: "Strict" }, body: d, contentType: "application/apply-patch+yaml",
        });
      } catch (err) {
        assert.fail(`${d.kind} ${d.metadata.name} (${JSON.stringify(values)}): ${(err as Error).message}`);
      }
    }
  }
});
