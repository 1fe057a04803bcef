import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { leastload, lru, twobin, weighted, plainrandom } from "../../../src/controller/core/choosers.ts";
import { Dependency } from "../../../src/controller/core/dependency.ts";
import { TaskQueue, type TaskAction } from "../../../src/controller/core/task-queue.ts";
import { HeartMonitor } from "../../../src/controller/core/heartbeat.ts";
import { HubDb, emptyRecord, compileQuery, project, isoToMicros, QueryError } from "../../../src/controller/core/hub-db.ts";
import { splitTargets, leafFor, parseBroadcastTargets, broadcastMsgId } from "../../../src/controller/core/broadcast.ts";

const sends = (a: TaskAction<string>[]) => a.filter((x) => x.kind === "send").map((x) => (x.kind === "send" ? `${x.job.msgId}@${x.engine}` : ""));
const fails = (a: TaskAction<string>[]) => a.filter((x) => x.kind === "fail").map((x) => (x.kind === "fail" ? `${x.job.msgId}:${x.ename}` : ""));

test("choosers follow ipyparallel's rules", () => {
  assert.equal(leastload([2, 0, 1, 0], Math.random), 1);
  assert.equal(lru([5, 0], Math.random), 0);
  const seq = [0.9, 0.1];
  let i = 0;
  assert.equal(twobin([0, 0, 0, 0], () => seq[i++ % 2]!), 0);
  assert.equal(plainrandom([1, 1, 1], () => 0.99), 2);
  assert.equal(weighted([5, 0, 5], () => 0.5), 1);
  fc.assert(fc.property(fc.array(fc.nat(10), { minLength: 1, maxLength: 20 }), fc.double({ min: 0, max: 0.999, noNaN: true }), (loads, r) => {
    for (const f of [leastload, lru, twobin, weighted, plainrandom]) {
      const idx = f(loads, () => r);
      assert.ok(idx >= 0 && idx < loads.length);
    }
    assert.equal(loads[leastload(loads, Math.random)], Math.min(...loads));
  }));
});

test("Dependency check/unreachable for all/any and success/failure", () => {
  const done = new Set(["a"]);
  const failed = new Set(["b"]);
  assert.equal(new Dependency(["a"]).check(done, failed), true);
  assert.equal(new Dependency(["a", "b"]).check(done, failed), false);
  assert.equal(new Dependency(["a", "b"]).unreachable(done, failed), true);
  assert.equal(new Dependency(["a", "b"], { failure: true }).check(done, failed), true);
  assert.equal(new Dependency(["b", "c"], { all: false }).unreachable(done, failed), false);
  assert.equal(new Dependency(["b"], { all: false }).unreachable(done, failed), true);
  assert.equal(new Dependency(["a"], { success: false, failure: true }).unreachable(done, failed), true);
  const d = Dependency.fromWire({ dependencies: ["x"], all: false, success: true, failure: true });
  assert.deepEqual([...d.ids], ["x"]);
  assert.equal(d.all, false);
  assert.equal(Dependency.fromWire(null).size, 0);
});

test("task queue: leastload with hwm 1 spreads, queues, and dispatches on results in order", () => {
  const q = new TaskQueue<string>({ hwm: 1 });
  q.addEngine("e1");
  q.addEngine("e2");
  assert.deepEqual(sends(q.submit({ msgId: "t1", payload: "p", metadata: {} })), ["t1@e2"]);
  assert.deepEqual(sends(q.submit({ msgId: "t2", payload: "p", metadata: {} })), ["t2@e1"]);
  assert.deepEqual(sends(q.submit({ msgId: "t3", payload: "p", metadata: {} })), []);
  assert.deepEqual(sends(q.submit({ msgId: "t4", payload: "p", metadata: {} })), []);
  assert.equal(q.waiting, 2);
  const r = q.result("e1", "t2", { success: true });
  assert.equal(r.kind, "final");
  assert.deepEqual(sends(r.actions), ["t3@e1"]);
  assert.deepEqual(sends(q.result("e2", "t1", { success: true }).actions), ["t4@e2"]);
  assert.equal(q.waiting, 0);
  assert.equal(q.result("e2", "nope", { success: true }).kind, "unknown");
});

test("task queue: targets, follow, after, impossible and invalid dependencies", () => {
  const q = new TaskQueue<string>({ hwm: 0 });
  q.addEngine("a");
  q.addEngine("b");
  assert.deepEqual(sends(q.submit({ msgId: "t1", payload: "", metadata: { targets: ["a"] } })), ["t1@a"]);
  assert.deepEqual(sends(q.submit({ msgId: "t2", payload: "", metadata: { after: ["t1"] } })), []);
  assert.deepEqual(sends(q.submit({ msgId: "t3", payload: "", metadata: { follow: ["t1"] } })), []);
  const r = q.result("a", "t1", { success: true });
  assert.deepEqual(sends(r.actions).sort(), ["t2@b", "t3@a"], "after runs anywhere, follow runs where t1 ran");
  q.result("b", "t2", { success: true });
  q.result("a", "t3", { success: true });
  assert.deepEqual(fails(q.submit({ msgId: "t4", payload: "", metadata: { after: ["unknown-id"] } })), ["t4:InvalidDependency"]);
  const [sentBad] = sends(q.submit({ msgId: "bad", payload: "", metadata: {} }));
  q.result(sentBad!.split("@")[1]!, "bad", { success: false });
  assert.deepEqual(fails(q.submit({ msgId: "t5", payload: "", metadata: { after: ["bad"] } })), ["t5:ImpossibleDependency"]);
  assert.deepEqual(fails(q.submit({ msgId: "t6", payload: "", metadata: { targets: ["gone"] } })), ["t6:ImpossibleDependency"]);
});

test("task queue: waiting task fails when its dependency fails; timeout only while waiting", () => {
  const q = new TaskQueue<string>({ hwm: 1 });
  q.addEngine("a");
  q.submit({ msgId: "t1", payload: "", metadata: {} });
  const acts = q.submit({ msgId: "t2", payload: "", metadata: { after: ["t1"], timeout: 2 } });
  const timer = acts.find((x) => x.kind === "timer");
  assert.ok(timer && timer.kind === "timer" && timer.ms === 2000);
  q.submit({ msgId: "t3", payload: "", metadata: { after: ["t1"] } });
  const r = q.result("a", "t1", { success: false });
  assert.deepEqual(fails(r.actions).sort(), ["t2:ImpossibleDependency", "t3:ImpossibleDependency"]);
  assert.deepEqual(fails(q.timeout("t2", (timer as { token: number }).token)), [], "already failed: timer is a no-op");
  q.submit({ msgId: "t4", payload: "", metadata: {} });
  const w = q.submit({ msgId: "t5", payload: "", metadata: { timeout: 1 } });
  const t5 = w.find((x) => x.kind === "timer") as { token: number };
  assert.deepEqual(fails(q.timeout("t5", t5.token)), ["t5:TaskTimeout"]);
});

test("task queue: retries and dependencies_met=false blacklist the engine and reschedule", () => {
  const q = new TaskQueue<string>({ hwm: 1 });
  q.addEngine("a");
  q.addEngine("b");
  assert.deepEqual(sends(q.submit({ msgId: "t", payload: "", metadata: { retries: 1 } })), ["t@b"]);
  const r1 = q.result("b", "t", { success: false });
  assert.equal(r1.kind, "rescheduled");
  assert.deepEqual(sends(r1.actions), ["t@a"]);
  const r2 = q.result("a", "t", { success: false });
  assert.equal(r2.kind, "final", "no retries left: the failure goes to the client");
  assert.deepEqual(sends(q.submit({ msgId: "u", payload: "", metadata: { targets: ["a"] } })), ["u@a"]);
  const r3 = q.result("a", "u", { success: true, dependenciesMet: false });
  assert.deepEqual(fails(r3.actions), ["u:ImpossibleDependency"], "only target blacklisted");
});

test("task queue: a dead engine's tasks are returned and can be retried elsewhere", () => {
  const q = new TaskQueue<string>({ hwm: 1 });
  q.addEngine("a");
  q.addEngine("b");
  q.submit({ msgId: "t", payload: "", metadata: { retries: 1 } });
  q.submit({ msgId: "v", payload: "", metadata: {} });
  const stranded = q.removeEngine("b");
  assert.deepEqual(stranded.map((j) => j.msgId), ["t"]);
  const r = q.result("b", "t", { success: false });
  assert.equal(r.kind, "rescheduled");
  q.forgetEngine("b");
  const done = q.result("a", "v", { success: true });
  assert.deepEqual(sends(done.actions), ["t@a"]);
});

test("property: every submitted task ends exactly once (sent-then-final or failed); a task that failed with retries on every engine waits for a new one, as upstream", () => {
  fc.assert(fc.property(fc.array(fc.record({ ok: fc.boolean(), dep: fc.option(fc.nat(30)), retries: fc.nat(2) }), { minLength: 1, maxLength: 30 }), fc.integer({ min: 1, max: 4 }), (tasks, nEng) => {
    const q = new TaskQueue<string>({ hwm: 1, random: () => 0.3 });
    for (let i = 0; i < nEng; i++) q.addEngine(`e${i}`);
    const running: Array<[string, string]> = [];
    const finished = new Set<string>();
    const take = (acts: TaskAction<string>[]) => {
      for (const a of acts) {
        if (a.kind === "send") running.push([a.engine, a.job.msgId]);
        if (a.kind === "fail") { assert.ok(!finished.has(a.job.msgId)); finished.add(a.job.msgId); }
      }
    };
    tasks.forEach((t, i) => {
      const md: Record<string, unknown> = { retries: t.retries };
      if (t.dep !== null && t.dep < i) md.after = [`t${t.dep}`];
      take(q.submit({ msgId: `t${i}`, payload: "", metadata: md }));
    });
    let guard = 0;
    const drain = () => {
      while (running.length && guard++ < 1000) {
        const [eng, id] = running.shift()!;
        const ok = tasks[Number(id.slice(1))]!.ok;
        const r = q.result(eng, id, { success: ok });
        if (r.kind === "final") { assert.ok(!finished.has(id)); finished.add(id); }
        take(r.actions);
      }
    };
    drain();
    // what has not ended is waiting (never lost); retries are at most 2, so three fresh engines end it all
    assert.equal(q.waiting, tasks.length - finished.size);
    for (let k = 0; k < 3; k++) {
      take(q.addEngine(`fresh${k}`));
      drain();
    }
    assert.equal(finished.size, tasks.length);
    assert.equal(q.waiting, 0);
  }));
});

test("heartbeat: first pong is 'new', misses go on probation, > maxMisses fails", () => {
  const hm = new HeartMonitor({ maxMisses: 2 });
  const p1 = hm.beat(1).ping;
  assert.equal(p1.toString(), "1.0");
  assert.equal(hm.pong("e", Buffer.from("1.0")), "new");
  assert.equal(hm.pong("e", Buffer.from("1.0")), "ok");
  assert.equal(hm.pong("x", Buffer.from("0.5")), "stale");
  hm.beat(2.5);
  assert.equal(hm.pong("e", Buffer.from("1.0")), "ok", "previous ping still counts");
  hm.beat(4);
  assert.equal(hm.missed("e"), 0);
  hm.beat(5);
  assert.equal(hm.missed("e"), 1);
  assert.deepEqual(hm.beat(6).failures, []);
  assert.deepEqual(hm.beat(7).failures, ["e"]);
  assert.equal(hm.has("e"), false);
});

test("heartbeat: a restored heart may miss more beats before it first answers; once it answered, the usual limit", () => {
  const hm = new HeartMonitor({ maxMisses: 2 });
  hm.track("r", 4);
  hm.track("plain");
  hm.beat(1);
  hm.beat(2);
  assert.deepEqual(hm.beat(3).failures, ["plain"], "the usual limit for a heart tracked without patience");
  hm.beat(4);
  assert.equal(hm.has("r"), true);
  assert.equal(hm.missed("r"), 4);
  const ping = hm.beat(5);
  assert.deepEqual(ping.failures, ["r"], "past its own limit");
  hm.track("s", 4);
  const p = hm.beat(6).ping;
  assert.equal(hm.pong("s", p), "ok");
  hm.beat(7);
  hm.beat(8);
  hm.beat(9);
  assert.deepEqual(hm.beat(10).failures, ["s"], "after its first answer, maxMisses as any heart");
});

test("heartbeat: a closed heart connection is dead at the first beat a grace period later, unless it answers again", () => {
  const hm = new HeartMonitor({ maxMisses: 10, disconnectGraceMs: 500 });
  const ping = hm.beat(1, 0).ping;
  for (const h of ["a", "b", "c"]) assert.equal(hm.pong(h, ping), "new");
  hm.beat(2, 1000);
  hm.disconnected("a", 1100);
  hm.disconnected("b", 1100);
  hm.disconnected("unknown", 1100);
  // b reconnects and answers: not dead
  assert.equal(hm.pong("b", Buffer.from("2.0")), "ok");
  let r = hm.beat(3, 1400);
  assert.deepEqual(r.disconnected, [], "within the grace period");
  r = hm.beat(4, 1700);
  assert.deepEqual(r.disconnected, ["a"]);
  assert.deepEqual(r.failures, []);
  assert.equal(hm.has("a"), false);
  assert.equal(hm.has("b"), true);
  assert.equal(hm.has("c"), true);
  // a pong from a removed heart is "new" again (the hub decides whether it is still an engine)
  assert.equal(hm.pong("a", Buffer.from("4.0")), "new");
});

test("hub db: Mongo-style queries, dates with microseconds, projection, culling", () => {
  const db = new HubDb({ recordLimit: 10, sizeLimitBytes: 100 });
  for (let i = 0; i < 5; i++) {
    db.add({ ...emptyRecord(`m${i}`), submitted: `2024-01-01T00:00:00.00000${i}Z`, engine_uuid: i % 2 ? "odd" : "even", completed: i < 3 ? `2024-01-01T00:00:01.000000Z` : null, buffers: [Buffer.alloc(10)] });
  }
  assert.deepEqual(db.find({ engine_uuid: "odd" }).map((r) => r.msg_id), ["m1", "m3"]);
  assert.deepEqual(db.find({ completed: { $ne: null } }).length, 3);
  assert.deepEqual(db.find({ msg_id: { $in: ["m0", "m4", "zz"] } }).map((r) => r.msg_id), ["m0", "m4"]);
  assert.deepEqual(db.find({ msg_id: { $nin: ["m0"] }, engine_uuid: "even" }).map((r) => r.msg_id), ["m2", "m4"]);
  assert.deepEqual(db.find({ submitted: { $gt: "2024-01-01T00:00:00.000002Z" } }).map((r) => r.msg_id), ["m3", "m4"]);
  assert.deepEqual(db.find({ submitted: { $lte: "2024-01-01T00:00:00.000001+00:00" } }).map((r) => r.msg_id), ["m0", "m1"]);
  assert.deepEqual(db.find({ completed: { $exists: false } }).map((r) => r.msg_id), ["m3", "m4"]);
  assert.throws(() => compileQuery({ a: { $bogus: 1 } }), QueryError);
  assert.deepEqual(project(db.get("m1")!, ["engine_uuid"]), { msg_id: "m1", engine_uuid: "odd" });
  assert.deepEqual(db.history(), ["m0", "m1", "m2", "m3", "m4"]);
  assert.equal(isoToMicros("2024-01-01T00:00:00.5Z"), Date.UTC(2024, 0, 1) * 1000 + 500000);
  for (let i = 5; i < 12; i++) db.add({ ...emptyRecord(`m${i}`), buffers: [Buffer.alloc(10)] });
  assert.ok(db.bufferBytes <= 100, `buffer bytes ${db.bufferBytes} within the size limit`);
  assert.ok(!db.has("m0"), "oldest culled first");
  assert.ok(db.has("m11"));
  assert.equal(db.dropMatching({ msg_id: "m11" }), 1);
});

test("broadcast: targets split by id % leaves, like ipyparallel's tree of depth 1", () => {
  const t = parseBroadcastTargets([["u0", 0], ["u1", 1], ["u2", 2], ["u3", 3], ["u5", 5]])!;
  assert.deepEqual(splitTargets(t, 1), [[["u0", 0], ["u2", 2]], [["u1", 1], ["u3", 3], ["u5", 5]]]);
  assert.equal(leafFor(6, 2), 2);
  assert.equal(parseBroadcastTargets([["u", "x"]]), null);
  assert.equal(broadcastMsgId("m", "u"), "m_u");
});
