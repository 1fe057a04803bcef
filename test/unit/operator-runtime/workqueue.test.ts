import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../../../src/operator/clock.ts";
import { WorkQueue, runWorkers } from "../../../src/operator/workqueue.ts";

test("a key added many times while waiting is queued once", async () => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add("a"); q.add("b"); q.add("a"); q.add("a");
  assert.equal(q.length, 2);
  assert.equal(await q.get(), "a");
  assert.equal(await q.get(), "b");
  assert.equal(q.length, 0);
});

test("a key added while in flight is handed out again only after done()", async () => {
  const q = new WorkQueue({ clock: new FakeClock() });
  q.add("a");
  const k = await q.get();
  assert.equal(k, "a");
  q.add("a");
  q.add("a");
  assert.equal(q.length, 0, "not queued while in flight");
  q.add("b");
  assert.equal(await q.get(), "b", "other keys are not blocked");
  q.done("a");
  assert.equal(q.length, 1);
  assert.equal(await q.get(), "a");
  q.done("a"); q.done("b");
  assert.equal(q.length, 0);
});

test("rate-limited retries back off exponentially up to the cap and forget() resets", () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock, baseDelayMs: 10, maxDelayMs: 100 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => q.addRateLimited("a")), [10, 20, 40, 80, 100, 100]);
  assert.equal(q.numRequeues("a"), 6);
  q.forget("a");
  assert.equal(q.numRequeues("a"), 0);
  assert.equal(q.addRateLimited("a"), 10);
});

test("addAfter adds when due and keeps only the earliest pending delay per key", async () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock });
  q.addAfter("a", 1000);
  q.addAfter("a", 5000);
  q.addAfter("a", 300);
  assert.equal(clock.pending, 1);
  clock.advance(299);
  assert.equal(q.length, 0);
  clock.advance(1);
  assert.equal(q.length, 1);
  clock.advance(10_000);
  assert.equal(q.length, 1, "the replaced delays never fire");
  assert.equal(await q.get(), "a");
});

test("cancelDelayed drops a key's pending delay, so a later, longer one takes its place", async () => {
  const clock = new FakeClock();
  const q = new WorkQueue({ clock });
  q.addAfter("a", 5000);
  q.addAfter("b", 5000);
  q.cancelDelayed("a");
  q.addAfter("a", 30_000);
  clock.advance(5000);
  assert.equal(await q.get(), "b", "b's delay still fires");
  assert.equal(q.length, 0, "a's cancelled 5 s delay does not");
  clock.advance(25_000);
  assert.equal(await q.get(), "a");
  q.cancelDelayed("nothing-pending");
  assert.equal(clock.pending, 0);
});

test("depth is reported as keys are added and taken", async () => {
  const depths: number[] = [];
  const q = new WorkQueue({ clock: new FakeClock(), onDepth: (d) => depths.push(d) });
  q.add("a"); q.add("b");
  await q.get();
  assert.deepEqual(depths, [1, 2, 1]);
});

test("workers never process one key concurrently, and shutDown drains the keys in flight", async () => {
  const q = new WorkQueue({ clock: new FakeClock() });
  const active = new Set<string>();
  let overlaps = 0;
  let processed = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const workers = runWorkers(q, 4, async (key) => {
    if (active.has(key)) overlaps++;
    active.add(key);
    await gate;
    await new Promise((r) => setImmediate(r));
    active.delete(key);
    processed++;
  });
  for (let i = 0; i < 20; i++) { q.add("same"); q.add(`k${i % 3}`); }
  await new Promise((r) => setImmediate(r));
  assert.equal(q.inFlight, 4);
  release();
  for (let i = 0; i < 50 && (q.length > 0 || q.inFlight > 0); i++) await new Promise((r) => setImmediate(r));
  assert.equal(overlaps, 0);
  assert.ok(processed >= 4);
  q.add("late");
  await q.shutDown(true);
  await workers;
  q.add("after-shutdown");
  assert.equal(q.length, 0);
});
