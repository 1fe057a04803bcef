import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../../../src/operator/clock.ts";
import { Informer, type ListResult, type ListWatchSource } from "../../../src/operator/informer.ts";
import { KubeApiError, type WatchEvent } from "../../../src/operator/kube/client.ts";
import type { KubeObject } from "../../../src/operator/kube/resources.ts";

const obj = (name: string, rv: string): KubeObject => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { namespace: "ns", name, resourceVersion: rv } });

type WatchScript = Array<WatchEvent | Error | "hang">;

/** A scripted list/watch source that records every call. */
class FakeSource implements ListWatchSource {
  lists: Array<ListResult | Error> = [];
  watches: WatchScript[] = [];
  calls: string[] = [];
  async list(): Promise<ListResult> {
    const next = this.lists.shift();
    this.calls.push("list");
    if (!next) throw new Error("unexpected list");
    if (next instanceof Error) throw next;
    return next;
  }
  watch(rv: string, signal: AbortSignal): AsyncIterable<WatchEvent> {
    this.calls.push(`watch@${rv}`);
    const script = this.watches.shift() ?? ["hang"];
    return (async function* () {
      for (const step of script) {
        if (step === "hang") {
          await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
          return;
        }
        if (step instanceof Error) throw step;
        yield step;
      }
    })();
  }
}

async function until(cond: () => boolean, clock?: FakeClock, stepMs = 100): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
    clock?.advance(stepMs);
  }
  assert.fail("condition not reached");
}

test("lists, watches from the list's resourceVersion, resumes from the last seen one after an error, relists on 410", async () => {
  const clock = new FakeClock();
  const src = new FakeSource();
  src.lists.push({ items: [obj("a", "1"), obj("b", "2")], resourceVersion: "10" });
  src.watches.push([{ type: "MODIFIED", object: obj("a", "11") }, { type: "BOOKMARK", object: { metadata: { resourceVersion: "15" } } }, new Error("ECONNRESET")]);
  src.watches.push([{ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired", message: "too old resource version" } as KubeObject }]);
  src.lists.push({ items: [obj("a", "12"), obj("c", "13")], resourceVersion: "20" });
  src.watches.push(["hang"]);

  const seen: string[] = [];
  const inf = new Informer(src, { clock, backoff: { initialMs: 1000, jitter: 0 } });
  inf.addHandlers({
    onAdd: (o) => seen.push(`add ${o.metadata!.name}@${o.metadata!.resourceVersion}`),
    onUpdate: (_a, b) => seen.push(`update ${b.metadata!.name}@${b.metadata!.resourceVersion}`),
    onDelete: (o) => seen.push(`delete ${o.metadata!.name}`),
  });
  inf.start();
  await inf.waitForSync();
  await until(() => src.calls.length >= 2);
  await until(() => src.calls.includes("watch@20"), clock);
  assert.deepEqual(src.calls, ["list", "watch@10", "watch@15", "list", "watch@20"]);
  assert.deepEqual(seen, ["add a@1", "add b@2", "update a@11", "update a@12", "add c@13", "delete b"]);
  assert.equal(inf.lists, 2);
  assert.deepEqual(inf.list().map((o) => o.metadata!.name).sort(), ["a", "c"]);
  await inf.stop();
});

test("a 410 on the watch request itself relists at once; other failures back off exponentially", async () => {
  const clock = new FakeClock();
  const src = new FakeSource();
  src.lists.push({ items: [], resourceVersion: "5" });
  src.watches.push([new KubeApiError(500, "InternalError", "boom")]);
  src.watches.push([new KubeApiError(503, "ServiceUnavailable", "down")]);
  src.watches.push([new KubeApiError(410, "Gone", "expired")]);
  src.lists.push(new Error("list failed"));
  src.lists.push({ items: [obj("x", "9")], resourceVersion: "9" });
  const inf = new Informer(src, { clock, backoff: { initialMs: 1000, jitter: 0, maxMs: 60_000 } });
  inf.start();
  await until(() => src.calls.length === 2);
  // first failure: 1 s backoff
  clock.advance(999);
  await until(() => true);
  assert.equal(src.calls.length, 2);
  clock.advance(1);
  await until(() => src.calls.length === 3);
  // second failure: 2 s
  clock.advance(1999);
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
  assert.equal(src.calls.length, 3);
  clock.advance(1);
  await until(() => src.calls.length >= 5);
  assert.deepEqual(src.calls.slice(0, 5), ["list", "watch@5", "watch@5", "watch@5", "list"]);
  // the failed relist backs off, then succeeds and watches from its resourceVersion
  await until(() => src.calls.includes("watch@9"), clock, 500);
  assert.deepEqual(src.calls, ["list", "watch@5", "watch@5", "watch@5", "list", "list", "watch@9"]);
  assert.ok(inf.get("ns/x"));
  await inf.stop();
});

test("a watch the server ends normally is resumed from the last resourceVersion without a relist", async () => {
  const clock = new FakeClock();
  const src = new FakeSource();
  src.lists.push({ items: [], resourceVersion: "1" });
  src.watches.push([{ type: "ADDED", object: obj("a", "2") }]);
  src.watches.push([{ type: "DELETED", object: obj("a", "3") }]);
  src.watches.push(["hang"]);
  const deleted: string[] = [];
  const inf = new Informer(src, { clock });
  inf.addHandlers({ onDelete: (o) => deleted.push(o.metadata!.name!) });
  inf.start();
  await until(() => src.calls.length === 4);
  assert.deepEqual(src.calls, ["list", "watch@1", "watch@2", "watch@3"]);
  assert.deepEqual(deleted, ["a"]);
  assert.equal(inf.list().length, 0);
  await inf.stop();
});

test("indexes: objects by owner uid and by the value of a label follow adds, label changes and deletes", async () => {
  const pod = (name: string, rv: string, cluster: string | undefined, owner?: string): KubeObject => ({
    apiVersion: "v1", kind: "Pod",
    metadata: {
      namespace: "ns", name, resourceVersion: rv, ...(cluster === undefined ? {} : { labels: { "ipp.dev/cluster": cluster } }),
      ...(owner === undefined ? {} : { ownerReferences: [{ apiVersion: "v1", kind: "X", name: "x", uid: owner }] }),
    },
  });
  const src = new FakeSource();
  src.lists.push({ items: [pod("a", "1", "one", "u1"), pod("b", "2", "one"), pod("c", "3", "two", "u1"), pod("d", "4", undefined)], resourceVersion: "10" });
  src.watches.push([
    { type: "MODIFIED", object: pod("b", "11", "two") },
    { type: "DELETED", object: pod("a", "12", "one", "u1") },
    { type: "ADDED", object: pod("e", "13", "one", "u2") },
    "hang",
  ]);
  const inf = new Informer(src, { indexLabel: "ipp.dev/cluster" });
  const names = (objs: KubeObject[]) => objs.map((o) => o.metadata!.name).sort();
  inf.start();
  await inf.waitForSync();
  await until(() => inf.get("ns/e") !== undefined);
  assert.deepEqual(names(inf.withLabel("one")), ["e"]);
  assert.deepEqual(names(inf.withLabel("two")), ["b", "c"]);
  assert.deepEqual(names(inf.withLabel("three")), []);
  assert.deepEqual(names(inf.ownedBy("u1")), ["c"]);
  assert.deepEqual(names(inf.ownedBy("u2")), ["e"]);
  await inf.stop();
  // without the option there is no label index
  assert.deepEqual(new Informer(new FakeSource()).withLabel("one"), []);
});
