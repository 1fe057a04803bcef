// The controller's bounded per-task state: the recent-id structures, the replay cache, the task
// scheduler's finished-task history, the hub's completed ids and record sizes with stream text.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Registry } from "prom-client";
import { RecentMap, RecentSet } from "../../../src/controller/core/recent.ts";
import { SignatureHistory } from "../../../src/controller/core/signature-history.ts";
import { TaskQueue, type TaskAction } from "../../../src/controller/core/task-queue.ts";
import { HubDb, emptyRecord } from "../../../src/controller/core/hub-db.ts";
import { HubRecords } from "../../../src/controller/records.ts";
import { BadMessages } from "../../../src/controller/bad-messages.ts";
import { createControllerMetrics } from "../../../src/metrics/controller.ts";
import { createLogger } from "../../../src/util/log.ts";
import { Session } from "../../../src/protocol/index.ts";

const fails = (a: TaskAction<string>[]) => a.filter((x) => x.kind === "fail").map((x) => (x.kind === "fail" ? `${x.job.msgId}:${x.ename}` : ""));
const sends = (a: TaskAction<string>[]) => a.filter((x) => x.kind === "send").map((x) => (x.kind === "send" ? `${x.job.msgId}@${x.engine}` : ""));

test("RecentMap keeps exactly the last `capacity` distinct keys, in insertion order (model check)", () => {
  // short keys, keys longer than a slot, non-ASCII and lone-surrogate keys, drawn from a small pool so they repeat
  const pool = ["a", "b", "é", "\uD800", "\uDC00", "x".repeat(64), "x".repeat(65), "é".repeat(32), "é".repeat(33), "😀".repeat(16), "😀".repeat(17)];
  const keyArb = fc.oneof(fc.integer({ min: 0, max: 60 }).map((n) => `id-${n}`), fc.constantFrom(...pool));
  fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), fc.array(keyArb, { maxLength: 400 }), (cap, keys) => {
    const m = new RecentMap<string, number>(cap);
    const model: string[] = []; // distinct keys, oldest first
    const values = new Map<string, number>();
    let evicted = 0;
    keys.forEach((k, i) => {
      m.set(k, i);
      values.set(k, i);
      if (!model.includes(k)) {
        model.push(k);
        if (model.length > cap) {
          values.delete(model.shift()!);
          evicted++;
        }
      }
      assert.equal(m.size, model.length);
    });
    assert.deepEqual([...m.keys()], model);
    assert.deepEqual([...m.entries()], model.map((k) => [k, values.get(k)]));
    assert.equal(m.evicted, evicted);
    for (const k of model) assert.equal(m.get(k), values.get(k));
    for (const k of [...pool, "id-61"]) if (!model.includes(k)) assert.ok(!m.has(k) && m.get(k) === undefined, k);
  }));
  assert.throws(() => new RecentMap(0), RangeError);
});

test("RecentMap: keys whose hashes share buckets are found after any of them is forgotten (probe runs are repaired)", () => {
  // capacity 3 → 8 buckets: many keys share a bucket, so removals shift probe runs, also across the wrap
  const m = new RecentMap<string, number>(3);
  for (let i = 0; i < 5000; i++) {
    m.set(`k${i}`, i);
    for (let j = Math.max(0, i - 2); j <= i; j++) assert.equal(m.get(`k${j}`), j, `k${j} after ${i}`);
    if (i >= 3) assert.equal(m.has(`k${i - 3}`), false);
  }
});

test("RecentSet stays at its capacity however many keys go through it", () => {
  const s = new RecentSet<string>(1000);
  for (let i = 0; i < 100_000; i++) s.add(`id-${i}`);
  assert.equal(s.size, 1000);
  assert.equal(s.evicted, 99_000);
  assert.ok(s.has("id-99999") && s.has("id-99000") && !s.has("id-98999"));
  assert.equal(s.add("id-99999"), false);
});

test("SignatureHistory: a signature is new once; the oldest are forgotten beyond the capacity", () => {
  const h = new SignatureHistory(3);
  const sig = (n: number) => Buffer.from(n.toString(16).padStart(64, "0"), "ascii");
  assert.equal(h.firstSeen(sig(1)), true);
  assert.equal(h.firstSeen(sig(1)), false);
  for (const n of [2, 3, 4]) assert.equal(h.firstSeen(sig(n)), true);
  assert.equal(h.size, 3);
  assert.equal(h.firstSeen(sig(1)), true, "forgotten after 3 newer ones, as jupyter_client's culled history");
  assert.equal(h.firstSeen(sig(4)), false);
});

test("BadMessages: a replayed message is dropped and counted as replayed; a forged one never enters the history", () => {
  const metrics = createControllerMetrics(new Registry());
  const log = createLogger({ level: "error", sink: () => {} });
  const session = new Session({ key: "k", username: "t" });
  const bad = new BadMessages({ metrics, log, session, maxMessageBytes: 1 << 20, logIntervalMs: 60_000, signatureHistory: 10 });
  const frames = session.build("shutdown_request", {}, { ids: [Buffer.from("client")] });
  assert.ok(bad.check("registration", frames, 100));
  assert.equal(bad.check("registration", frames, 100), null);
  assert.equal(bad.check("registration", [...frames], 100), null, "a copy of the frames is the same replay");
  const forged = new Session({ key: "other", username: "t" }).build("shutdown_request", {});
  assert.equal(bad.check("registration", forged, 100), null);
  assert.equal(bad.check("registration", forged, 100), null);
  assert.deepEqual(bad.snapshot(), { replayed: 2, bad_signature: 2 });
  // without a key (CurveZMQ) there are no signatures: nothing is remembered or refused
  const keyless = new Session({ key: "", username: "t" });
  const open = new BadMessages({ metrics, log, session: keyless, maxMessageBytes: 1 << 20, logIntervalMs: 60_000 });
  const m = keyless.build("connection_request", {});
  assert.ok(open.check("registration", m, 10));
  assert.ok(open.check("registration", m, 10));
});

test("task queue: the finished-task history is bounded; dependencies on remembered tasks still work", () => {
  const q = new TaskQueue<string>({ hwm: 0, doneHistory: 100 });
  q.addEngine("e1");
  q.addEngine("e2");
  for (let i = 0; i < 10_000; i++) {
    const id = `t${i}`;
    const a = q.submit({ msgId: id, payload: "p", metadata: {} });
    const engine = a[0]!.kind === "send" ? a[0]!.engine : "";
    assert.equal(q.result(engine, id, { success: i % 7 !== 0 }).kind, "final");
  }
  assert.equal(q.remembered, 100);
  assert.equal(q.unfinished, 0);
  // a recent success satisfies `after`; a recent failure makes it impossible
  assert.deepEqual(sends(q.submit({ msgId: "a1", payload: "p", metadata: { after: ["t9999"] } })).length, 1);
  assert.deepEqual(fails(q.submit({ msgId: "a2", payload: "p", metadata: { after: ["t9996"] } })), ["a2:ImpossibleDependency"]);
  // follow: runs where the remembered task ran
  const ran = new Map<string, string>();
  const f = q.submit({ msgId: "f1", payload: "p", metadata: { follow: ["t9998"] } });
  assert.equal(f.length, 1);
  ran.set("f1", f[0]!.kind === "send" ? f[0]!.engine : "");
  // a task culled from the history is unknown: InvalidDependency, with a reason that says so
  const culled = q.submit({ msgId: "c1", payload: "p", metadata: { after: ["t5"] } });
  assert.deepEqual(fails(culled), ["c1:InvalidDependency"]);
  const detail = culled[0]!.kind === "fail" ? culled[0]!.detail : undefined;
  assert.match(detail ?? "", /t5 is not a known task .*100 most recently finished/);
  assert.equal(q.remembered, 100, "failures are remembered in the same bounded history");
});

test("task queue: a waiting task's dependency on an unfinished task is kept until it finishes", () => {
  const q = new TaskQueue<string>({ hwm: 1, doneHistory: 2 });
  q.addEngine("e1");
  assert.deepEqual(sends(q.submit({ msgId: "long", payload: "p", metadata: {} })), ["long@e1"]);
  // many other tasks finish meanwhile on another engine; `long` is still live, so it stays known
  q.addEngine("e2");
  for (let i = 0; i < 50; i++) {
    const a = q.submit({ msgId: `x${i}`, payload: "p", metadata: {} });
    q.result("e2", `x${i}`, { success: true });
    assert.deepEqual(sends(a), [`x${i}@e2`]);
  }
  assert.deepEqual(q.submit({ msgId: "dep", payload: "p", metadata: { after: ["long"] } }), []);
  assert.deepEqual(sends(q.result("e1", "long", { success: true }).actions), ["dep@e1"]);
});

test("hub db: stdout/stderr count towards the size limit and are culled with their record", () => {
  const db = new HubDb({ recordLimit: 100, sizeLimitBytes: 1000 });
  db.add({ ...emptyRecord("old"), submitted: "2024-01-01T00:00:00Z" });
  db.add({ ...emptyRecord("chatty"), submitted: "2024-01-01T00:00:01Z", buffers: [Buffer.alloc(100)] });
  db.appendText("chatty", "stdout", "é".repeat(100)); // 200 bytes of UTF-8
  db.appendText("chatty", "stderr", "x".repeat(50));
  db.appendText("nobody", "stdout", "ignored");
  assert.equal(db.bufferBytes, 350);
  assert.equal(db.get("chatty")!.stdout, "é".repeat(100));
  db.update("chatty", { stdout: "" });
  assert.equal(db.bufferBytes, 150);
  for (let i = 0; i < 20; i++) db.appendText("chatty", "stdout", "y".repeat(100));
  // over the limit: the oldest records go first, then the chatty one itself
  assert.equal(db.has("old"), false);
  assert.ok(db.bufferBytes <= 1000);
  db.drop("chatty");
  assert.equal(db.bufferBytes, 0);
});

test("hub records: completed ids are remembered up to the history, per engine on demand", () => {
  const r = new HubRecords(createControllerMetrics(new Registry()), { sizeLimitBytes: 1 << 20, completedHistory: 5 });
  for (let i = 0; i < 20; i++) {
    r.pending.add(`m${i}`);
    assert.equal(r.completeIfPending(`m${i}`, i % 2 ? "e1" : "e2"), true);
  }
  assert.equal(r.completeIfPending("m3", "e1"), false);
  assert.equal(r.pending.size, 0);
  assert.equal(r.completed.size, 5);
  assert.deepEqual(r.completedOn("e1"), ["m15", "m17", "m19"]);
});
