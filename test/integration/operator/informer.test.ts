/**
 * The informer on a real kube-apiserver: list + watch of ConfigMaps, a watch from a
 * resourceVersion the server no longer has (410 Gone, answered by the server itself) relists and
 * catches up, including deletions that happened meanwhile.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Informer, apiListWatch, type ListWatchSource } from "../../../src/operator/informer.ts";
import { collectionPath, objectPath, resourceType } from "../../../src/operator/kube/resources.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { waitFor } from "./helpers.ts";

const NS = "inf";
const CM = resourceType("v1", "ConfigMap");
let api: ApiServer;
before(async () => {
  // compact etcd every 2 s, and serve watches from etcd (no watch cache), so a watch from an old
  // resourceVersion meets etcd's compaction and the API server answers 410 Gone
  api = await startApiServer({ extraArgs: ["--etcd-compaction-interval=2s", "--watch-cache=false"] });
  await createNamespace(api.client, NS);
});
after(async () => { await api?.stop(); });

const cm = (name: string, v: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: NS, labels: { app: "inf" } }, data: { v } });

test("watch events follow creates, updates and deletes; a 410 from the server makes the informer relist", async () => {
  await api.client.request("POST", collectionPath(CM, NS), { body: cm("a", "1") });
  await api.client.request("POST", collectionPath(CM, NS), { body: cm("b", "1") });
  await api.client.request("PATCH", objectPath(CM, NS, "a"), { body: { data: { v: "0" } }, contentType: "application/merge-patch+json" });
  await new Promise((r) => setTimeout(r, 5_000)); // a compaction past these writes
  const real = apiListWatch(api.client, CM, { namespace: NS, labelSelector: "app=inf" });
  // The first list claims a resourceVersion far older than anything the server keeps, so the first
  // watch is answered with 410 Gone by the API server.
  let lists = 0;
  const watchedFrom: string[] = [];
  const source: ListWatchSource = {
    async list(signal) {
      const r = await real.list(signal);
      return ++lists === 1 ? { ...r, resourceVersion: "1" } : r;
    },
    watch(rv, signal) { watchedFrom.push(rv); return real.watch(rv, signal); },
  };
  const seen: string[] = [];
  const inf = new Informer(source, { name: "configmaps", backoff: { initialMs: 50 } });
  inf.addHandlers({
    onAdd: (o) => seen.push(`add ${o.metadata!.name}`),
    onUpdate: (_a, b) => seen.push(`update ${b.metadata!.name}=${(b.data as { v: string }).v}`),
    onDelete: (o) => seen.push(`delete ${o.metadata!.name}`),
  });
  inf.start();
  await inf.waitForSync();
  // meanwhile b goes away and c appears: the relist must notice both
  await api.client.request("DELETE", objectPath(CM, NS, "b"));
  await api.client.request("POST", collectionPath(CM, NS), { body: cm("c", "1") });
  await waitFor("relisted after 410", () => lists >= 2 && inf.get(`${NS}/c`) !== undefined && inf.get(`${NS}/b`) === undefined).catch((e: Error) => { throw new Error(`${e.message}; lists=${lists} watchedFrom=${watchedFrom.join(",")} seen=${seen.join(",")}`); });
  assert.equal(watchedFrom[0], "1");
  assert.ok(seen.includes("delete b") && seen.includes("add c"), seen.join(", "));
  // now watching normally: an update arrives as an event, without another list
  const listsBefore = lists;
  await api.client.request("PATCH", objectPath(CM, NS, "a"), { body: { data: { v: "2" } }, contentType: "application/merge-patch+json" });
  await waitFor("update event", () => seen.includes("update a=2"));
  assert.equal(lists, listsBefore);
  assert.deepEqual(inf.list().map((o) => o.metadata!.name).sort(), ["a", "c"]);
  assert.equal(inf.get(`${NS}/a`)!.metadata!.managedFields, undefined, "managedFields are not cached");
  await inf.stop();
});
