/**
 * What admission can't catch is reported in status, against a real kube-apiserver: every example
 * manifest is admitted; a Secret the spec refers to that does not exist, and an image a pod can't
 * pull (the test writes the Pod status a kubelet would), become a Degraded condition with a reason
 * and a Warning Event — and clear again once fixed.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import { parse } from "yaml";
import { CLUSTER_LABEL } from "../../../src/backends/mpi/core/names.ts";
import { createOperatorMetrics } from "../../../src/metrics/operator.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { startOperator, type OperatorHandle } from "../../../src/operator/operator.ts";
import { corePlanner } from "../../../src/operator/planner.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { REPO_ROOT } from "../../support/paths.ts";
import { listItems, waitFor } from "./helpers.ts";

const NS = "failures";
let api: ApiServer;
let op: OperatorHandle;

before(async () => {
  api = await startApiServer();
  await createNamespace(api.client, NS);
  op = await startOperator({
    client: api.client, planner: corePlanner, metrics: createOperatorMetrics(new Registry(), { defaultMetrics: false }),
    namespace: NS, workers: 2, ownedLabelSelector: CLUSTER_LABEL, podLabel: CLUSTER_LABEL,
  });
});
after(async () => {
  await op?.stop();
  await api?.stop();
});

type Condition = { type: string; status: string; reason: string; message: string };
type EC = KubeObject & { status?: { phase?: string; conditions?: Condition[] } };
const getEc = (name: string) => api.client.request<EC>("GET", objectPath(ENGINECLUSTER, NS, name));
const degraded = (ec: EC) => ec.status?.conditions?.find((c) => c.type === "Degraded");

async function warnings(name: string): Promise<Array<{ reason: string; message: string }>> {
  const items = await listItems(api.client, collectionPath(resourceType("v1", "Event"), NS));
  return items.filter((e) => (e.involvedObject as { name?: string }).name === name && e.type === "Warning") as never;
}

const create = (kind: string, apiVersion: string, body: Record<string, unknown>) =>
  api.client.request<KubeObject>("POST", collectionPath(resourceType(apiVersion, kind), NS), { body: { apiVersion, kind, ...body } });

test("every manifest in examples/ is admitted by the real API server (schema and CEL)", async () => {
  const dir = join(REPO_ROOT, "examples");
  const files = readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort();
  assert.ok(files.length >= 3);
  for (const f of files) {
    const manifest = parse(readFileSync(join(dir, f), "utf8")) as KubeObject;
    const name = `example-${f.slice(0, 2)}`;
    const created = await api.client.request<KubeObject>("POST", `${collectionPath(ENGINECLUSTER, NS)}?fieldValidation=Strict`, {
      body: { ...manifest, metadata: { ...manifest.metadata, name, namespace: NS } },
    });
    assert.equal(created.metadata?.name, name, f);
  }
});

test("a Secret the spec refers to that does not exist: Degraded/SecretNotFound and a Warning Event, cleared once it exists", async () => {
  await create("EngineCluster", "ipp.dev/v1alpha1", {
    metadata: { name: "needs-secret" },
    spec: {
      engines: 2,
      backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0", imagePullSecrets: ["registry-creds"] } },
    },
  });
  const ec = await waitFor("SecretNotFound", async () => {
    const e = await getEc("needs-secret");
    return degraded(e)?.status === "True" && degraded(e)?.reason === "SecretNotFound" && e;
  });
  assert.match(degraded(ec)!.message, /registry-creds/);
  await waitFor("Warning event naming the Secret", async () =>
    (await warnings("needs-secret")).some((w) => w.reason === "SecretNotFound" && /registry-creds/.test(w.message)));

  await create("Secret", "v1", { metadata: { name: "registry-creds" }, type: "Opaque", data: { token: Buffer.from("x").toString("base64") } });
  // The operator does not watch Secrets; the next periodic or event-driven reconcile notices it.
  // Touch the cluster (a label) to trigger one now.
  await api.client.request("PATCH", objectPath(ENGINECLUSTER, NS, "needs-secret"), {
    body: { metadata: { labels: { touched: "1" } } }, contentType: "application/merge-patch+json",
  });
  await waitFor("Degraded cleared", async () => degraded(await getEc("needs-secret"))?.status === "False", 60_000);
});

test("an image a pod can't pull: Degraded/ImagePullFailed naming the image and a Warning Event", async () => {
  await create("EngineCluster", "ipp.dev/v1alpha1", {
    metadata: { name: "bad-image" },
    spec: { engines: 2, backend: { mpi: { image: "ghcr.io/example/does-not-exist:0.0", slotsPerWorker: 2 } } },
  });
  await waitFor("cluster reconciled", async () => (await getEc("bad-image")).status?.phase !== undefined);
  // What a kubelet would write: the worker pod of the StatefulSet, its container waiting on the pull.
  await create("Pod", "v1", {
    metadata: { name: "bad-image-worker-0", labels: { [CLUSTER_LABEL]: "bad-image" } },
    spec: { containers: [{ name: "worker", image: "ghcr.io/example/does-not-exist:0.0" }] },
  });
  await api.client.request("PATCH", objectPath(resourceType("v1", "Pod"), NS, "bad-image-worker-0", "status"), {
    contentType: "application/merge-patch+json",
    body: { status: { phase: "Pending", containerStatuses: [{
      name: "worker", image: "ghcr.io/example/does-not-exist:0.0", imageID: "", ready: false, restartCount: 0,
      state: { waiting: { reason: "ImagePullBackOff", message: "Back-off pulling image \"ghcr.io/example/does-not-exist:0.0\"" } },
    }] } },
  });
  const ec = await waitFor("ImagePullFailed", async () => {
    const e = await getEc("bad-image");
    return degraded(e)?.status === "True" && degraded(e)?.reason === "ImagePullFailed" && e;
  });
  assert.match(degraded(ec)!.message, /does-not-exist:0\.0/);
  assert.match(degraded(ec)!.message, /ImagePullBackOff/);
  await waitFor("Warning event", async () => (await warnings("bad-image")).some((w) => w.reason === "ImagePullFailed"));
});
