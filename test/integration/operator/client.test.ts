/**
 * The REST client on a real kube-apiserver: a write whose response is discarded asks for the
 * written object's metadata only (the server then encodes about half the bytes), still writes the
 * object, and still reports a rejected write as a KubeApiError built from the Status.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { KubeApiError, METADATA_ONLY_ACCEPT } from "../../../src/operator/kube/client.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER } from "../../../src/operator/kube/resources.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";

const NS = "client";
const CM = resourceType("v1", "ConfigMap");
let api: ApiServer;
before(async () => {
  api = await startApiServer();
  await createNamespace(api.client, NS);
});
after(async () => { await api?.stop(); });

const configMap = (name: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: NS }, data: { hostfile: "w-0 slots=2\n".repeat(40) } });
const apply = { query: { fieldManager: "test", force: true }, contentType: "application/apply-patch+yaml" };

/** A request with our own Accept header, answered with the body as sent. */
function raw(method: string, path: string, body: unknown, accept: string, contentType: string): Promise<{ status: number; body: { kind?: string; metadata?: { name?: string } } }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${api.server}${path}`, {
      method, rejectUnauthorized: false,
      headers: { Authorization: `Bearer ${api.token}`, Accept: accept, "Content-Type": contentType },
    }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => { text += c; });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { kind?: string } }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

test("the API server answers a discarded-response write with the object's metadata only, for built-in and custom resources", async () => {
  const cm = await raw("PATCH", `${objectPath(CM, NS, "meta")}?fieldManager=test&force=true`, configMap("meta"), METADATA_ONLY_ACCEPT, "application/apply-patch+yaml");
  assert.equal(cm.status, 201);
  assert.equal(cm.body.kind, "PartialObjectMetadata");
  assert.equal(cm.body.metadata?.name, "meta");
  assert.ok(!("data" in cm.body), "no data in the answer");
  const ec = await raw("POST", collectionPath(ENGINECLUSTER, NS), {
    apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: "meta" }, spec: { engines: 1, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } },
  }, METADATA_ONLY_ACCEPT, "application/json");
  assert.equal(ec.status, 201);
  assert.equal(ec.body.kind, "PartialObjectMetadata");
});

test("a discarded-response apply writes the object; a rejected one throws the server's Status", async () => {
  assert.equal(await api.client.request("PATCH", objectPath(CM, NS, "hostfile"), { ...apply, body: configMap("hostfile"), discardResponse: true }), undefined);
  const stored = await api.client.request<{ data: Record<string, string> }>("GET", objectPath(CM, NS, "hostfile"));
  assert.deepEqual(stored.data, configMap("hostfile").data);
  await assert.rejects(
    api.client.request("PATCH", objectPath(CM, NS, "Not_A_Name"), { ...apply, body: configMap("Not_A_Name"), discardResponse: true }),
    (err: unknown) => err instanceof KubeApiError && err.status === 422 && err.reason === "Invalid" && /metadata\.name: Invalid value/.test(err.message),
  );
});
