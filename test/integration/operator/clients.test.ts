/**
 * spec.controller.clients on a real kube-apiserver: the CRD admits NetworkPolicy peers (and rejects
 * a peer with no selector or a malformed expression, by the CRD's CEL rules), the operator renders
 * them into the controller's NetworkPolicy, which the API server accepts as a valid
 * networking.k8s.io/v1 object; without clients the default admits the per-cluster label key and the
 * older single-valued label. status.reason (the REASON column) says why the cluster isn't Ready.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { CLUSTER_LABEL } from "../../../src/backends/mpi/core/names.ts";
import { KubeApiError } from "../../../src/operator/kube/client.ts";
import { createOperatorMetrics } from "../../../src/metrics/operator.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { startOperator, type OperatorHandle } from "../../../src/operator/operator.ts";
import { corePlanner } from "../../../src/operator/planner.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { waitFor } from "./helpers.ts";

const NS = "clients";
let api: ApiServer;
let op: OperatorHandle;

before(async () => {
  api = await startApiServer();
  await createNamespace(api.client, NS);
  op = await startOperator({
    client: api.client, planner: corePlanner, metrics: createOperatorMetrics(new Registry(), { defaultMetrics: false }), namespace: NS, workers: 2,
    ownedLabelSelector: CLUSTER_LABEL, podLabel: CLUSTER_LABEL,
  });
});
after(async () => {
  await op?.stop();
  await api?.stop();
});

const create = (name: string, controller: Record<string, unknown> = {}) => api.client.request<KubeObject>("POST", collectionPath(ENGINECLUSTER, NS), {
  body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: NS },
    spec: { engines: 2, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } }, controller } },
});
type NP = KubeObject & { spec: { ingress: Array<{ from: unknown[]; ports: Array<{ port: number }> }> } };
const policy = (name: string) => waitFor(`NetworkPolicy of ${name}`, () =>
  api.client.request<NP>("GET", objectPath(resourceType("networking.k8s.io/v1", "NetworkPolicy"), NS, `${name}-controller`)).catch(() => undefined), 60_000);

test("default: the per-cluster label key (any value) and the older single-valued label", async () => {
  await create("alpha");
  const np = await policy("alpha");
  const clientRule = np.spec.ingress.find((r) => r.ports.some((p) => p.port === 10110))!;
  assert.deepEqual(clientRule.from, [
    { podSelector: { matchExpressions: [{ key: "ipp.dev/client-alpha", operator: "Exists" }] } },
    { podSelector: { matchLabels: { "ipp.dev/client": "alpha" } } },
  ]);
});

test("spec.controller.clients: other namespaces' pods, as given, accepted by the API server's NetworkPolicy validation", async () => {
  const clients = [
    { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "jhub" } }, podSelector: { matchLabels: { component: "singleuser-server" } } },
    { namespaceSelector: { matchExpressions: [{ key: "team", operator: "In", values: ["physics", "chem"] }] } },
    { podSelector: { matchExpressions: [{ key: "ipp.dev/client-beta", operator: "Exists" }] } },
  ];
  await create("beta", { clients });
  const np = await policy("beta");
  const clientRule = np.spec.ingress.find((r) => r.ports.some((p) => p.port === 10110))!;
  assert.deepEqual(clientRule.from, clients);
  assert.deepEqual(clientRule.ports.map((p) => p.port), [10101, 10110, 10111, 10112, 10113, 10114, 10115, 8080]);
});

test("bad clients are rejected at admission with the field named", async () => {
  const rejected = async (controller: Record<string, unknown>, pattern: RegExp) => {
    await assert.rejects(create("gamma", controller), (e: unknown) => e instanceof KubeApiError && e.status === 422 && pattern.test(e.message));
  };
  await rejected({ clients: [{}] }, /set namespaceSelector, podSelector or both/);
  await rejected({ clients: [{ podSelector: { matchExpressions: [{ key: "a", operator: "In" }] } }] }, /In and NotIn need values/);
  await rejected({ clients: [{ podSelector: { matchLabels: { team: "not a label value!" } } }] }, /clients\[0\]\.podSelector\.matchLabels\.team/);
});

test("status.reason gives the REASON column why the cluster is not Ready", async () => {
  const ec = await waitFor("alpha's status.reason", async () => {
    const e = await api.client.request<KubeObject & { status?: { reason?: string; conditions?: Array<{ type: string; reason: string }> } }>("GET", objectPath(ENGINECLUSTER, NS, "alpha"));
    return e.status?.reason ? e : undefined;
  }, 60_000);
  assert.equal(ec.status!.reason, ec.status!.conditions!.find((c) => c.type === "Ready")!.reason);
  // the printer column as kubectl reads it
  const table = await fetchTable();
  const col = table.columnDefinitions.findIndex((c) => c.name === "Reason");
  assert.ok(col > 0, JSON.stringify(table.columnDefinitions));
  assert.equal(table.rows[0]!.cells[col], ec.status!.reason);
});

async function fetchTable(): Promise<{ columnDefinitions: Array<{ name: string }>; rows: Array<{ cells: unknown[] }> }> {
  const { default: https } = await import("node:https");
  const { readFileSync } = await import("node:fs");
  const ca = Buffer.from(/certificate-authority-data: (\S+)/.exec(readFileSync(api.kubeconfigPath, "utf8"))![1]!, "base64");
  return new Promise((resolve, reject) => {
    const req = https.request(`${api.server}${objectPath(ENGINECLUSTER, NS, "alpha")}`, {
      ca, headers: { Authorization: `Bearer ${api.token}`, Accept: "application/json;as=Table;v=v1;g=meta.k8s.io" },
    }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => { body += d.toString(); });
      res.on("end", () => { try { resolve(JSON.parse(body)); } catch (e) { reject(e); } });
    });
    req.on("error", reject);
    req.end();
  });
}
