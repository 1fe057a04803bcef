/**
 * A Service range that is full, on a real kube-apiserver with a tiny one (--service-cluster-ip-range
 * a /28: 13 ClusterIPs after the `kubernetes` Service's): the EngineClusters whose controller Service
 * gets no IP say so (Degraded/ServiceIPRangeFull and a Warning Event), the others converge all the
 * same, and once IPs are free again (two clusters deleted) the blocked ones recover by their retries.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { CLUSTER_LABEL } from "../../../src/backends/mpi/core/names.ts";
import { createOperatorMetrics } from "../../../src/metrics/operator.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { startOperator, type OperatorHandle } from "../../../src/operator/operator.ts";
import { corePlanner } from "../../../src/operator/planner.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { getOrUndefined, listItems, waitFor } from "./helpers.ts";

const NS = "crowded";
const CLUSTERS = 16;
let api: ApiServer;
let op: OperatorHandle;

before(async () => {
  api = await startApiServer({ serviceClusterIpRange: "10.0.0.0/28" });
  await createNamespace(api.client, NS);
  op = await startOperator({
    client: api.client, planner: corePlanner, metrics: createOperatorMetrics(new Registry(), { defaultMetrics: false }),
    namespace: NS, workers: 4, ownedLabelSelector: CLUSTER_LABEL, probe: false,
  });
});
after(async () => {
  await op?.stop();
  await api?.stop();
});

type Condition = { type: string; status: string; reason: string; message: string };
type EC = KubeObject & { status?: { observedGeneration?: number; phase?: string; conditions?: Condition[] } };
const degraded = (ec: EC) => ec.status?.conditions?.find((c) => c.type === "Degraded");
const name = (i: number) => `ec-${String(i).padStart(2, "0")}`;
const clusters = async () => (await api.client.request<{ items: EC[] }>("GET", collectionPath(ENGINECLUSTER, NS))).items;
/** Converged: its status is current, not degraded, and its workers' StatefulSet exists (applied after the Services). */
async function converged(ec: EC): Promise<boolean> {
  if (ec.status?.observedGeneration !== ec.metadata?.generation || degraded(ec)?.status !== "False") return false;
  return (await getOrUndefined(api.client, objectPath(resourceType("apps/v1", "StatefulSet"), NS, `${ec.metadata!.name}-worker`))) !== undefined;
}

test("clusters whose Service gets no ClusterIP report ServiceIPRangeFull; the others converge; freed IPs let them recover", async () => {
  for (let i = 0; i < CLUSTERS; i++) {
    await api.client.request("POST", collectionPath(ENGINECLUSTER, NS), {
      body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: name(i), namespace: NS }, spec: { engines: 1, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } } },
    });
  }
  const split = await waitFor("every cluster either converged or blocked by the full range", async () => {
    const all = await clusters();
    const full = all.filter((ec) => degraded(ec)?.reason === "ServiceIPRangeFull");
    const ok: EC[] = [];
    for (const ec of all) if (await converged(ec)) ok.push(ec);
    return ok.length + full.length === CLUSTERS && full.length > 0 ? { ok, full } : undefined;
  }, 120_000, 500);
  assert.ok(split.ok.length >= 10, `${split.ok.length} clusters converged while ${split.full.length} waited for an IP`);
  const blocked = split.full[0]!;
  assert.equal(blocked.status?.phase, "Degraded");
  assert.match(degraded(blocked)!.message, /range is full/);
  assert.match(degraded(blocked)!.message, /retrying with backoff/);
  const events = await listItems(api.client, collectionPath(resourceType("v1", "Event"), NS));
  assert.ok(events.some((e) => (e.involvedObject as { name?: string }).name === blocked.metadata!.name && e.reason === "ServiceIPRangeFull" && e.type === "Warning"),
    "a Warning Event ServiceIPRangeFull on the blocked cluster");

  // free IPs: delete enough converged clusters (their finalizer deletes their Services)
  for (const ec of split.ok.slice(0, split.full.length)) await api.client.request("DELETE", objectPath(ENGINECLUSTER, NS, ec.metadata!.name!));
  await waitFor("the blocked clusters to converge by their retries", async () => {
    const all = await clusters();
    if (all.length !== CLUSTERS - split.full.length) return false;
    for (const ec of all) if (!(await converged(ec))) return false;
    return true;
  }, 180_000, 1000);
});
