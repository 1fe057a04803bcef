/**
 * The scheduler's O(log N) engine bookkeeping (core/engine-order.ts) makes the same choices as the
 * pass over every engine it replaced (reference/linear-task-queue.ts): both get the same events and
 * the same random numbers, and must answer every one with the same actions, for every scheme and
 * high-water mark, with engines joining and leaving, retries, blacklists, targets and dependencies.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { TASK_SCHEMES, type TaskScheme } from "../../../src/controller/core/choosers.ts";
import { EngineOrder } from "../../../src/controller/core/engine-order.ts";
import { TaskQueue } from "../../../src/controller/core/task-queue.ts";
import { LinearTaskQueue } from "./reference/linear-task-queue.ts";

/** A seeded uniform [0, 1) source (mulberry32), so both schedulers draw the same numbers. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type AnyAction = { kind: string; engine?: string; job: { msgId: string }; ename?: string; ms?: number };
const show = (acts: readonly AnyAction[]) => acts.map((a) => `${a.kind}:${a.job.msgId}${a.engine ? `@${a.engine}` : ""}${a.ename ? `:${a.ename}` : ""}`);

type Op =
  | { op: "add" }
  | { op: "remove"; pick: number }
  | { op: "submit"; targets: number[] | null; follow: number | null; after: number | null; retries: number }
  | { op: "result"; pick: number; ok: boolean; depsMet: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Op>({ op: "add" }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("remove" as const), pick: fc.nat() }) },
  {
    weight: 6, arbitrary: fc.record({
      op: fc.constant("submit" as const),
      targets: fc.option(fc.array(fc.nat(12), { minLength: 1, maxLength: 3 }), { freq: 4 }),
      follow: fc.option(fc.nat(40), { freq: 5 }),
      after: fc.option(fc.nat(40), { freq: 5 }),
      retries: fc.nat(1),
    }),
  },
  { weight: 6, arbitrary: fc.record({ op: fc.constant("result" as const), pick: fc.nat(), ok: fc.boolean(), depsMet: fc.boolean() }) },
);

/** Drive both schedulers with the same events; every answer must be the same. */
function compare(scheme: TaskScheme, hwm: number, seed: number, ops: Op[]): void {
  const fast = new TaskQueue<string>({ scheme, hwm, random: seeded(seed) });
  const linear = new LinearTaskQueue<string>({ scheme, hwm, random: seeded(seed) });
  const engines: string[] = [];
  let nextEngine = 0;
  let nextTask = 0;
  const running: Array<[string, string]> = [];
  const same = (a: readonly AnyAction[], b: readonly AnyAction[], what: string) => {
    assert.deepEqual(show(a), show(b), what);
    for (const x of a) if (x.kind === "send") running.push([x.engine!, x.job.msgId]);
  };
  for (const o of ops) {
    if (o.op === "add") {
      const e = `e${nextEngine++}`;
      engines.push(e);
      same(fast.addEngine(e), linear.addEngine(e), `add ${e}`);
    } else if (o.op === "remove") {
      if (!engines.length) continue;
      const [e] = engines.splice(o.pick % engines.length, 1);
      const strandedFast = fast.removeEngine(e!).map((j) => j.msgId);
      const strandedLinear = linear.removeEngine(e!).map((j) => j.msgId);
      assert.deepEqual(strandedFast, strandedLinear, `stranded on ${e}`);
      // what the adapter does after the grace period: an EngineError for each, then forget it
      for (const id of strandedFast) {
        const i = running.findIndex(([re, rid]) => re === e && rid === id);
        if (i >= 0) running.splice(i, 1);
        const a = fast.result(e!, id, { success: false });
        const b = linear.result(e!, id, { success: false });
        assert.equal(a.kind, b.kind);
        same(a.actions, b.actions, `engine error ${id}`);
      }
      fast.forgetEngine(e!);
      linear.forgetEngine(e!);
    } else if (o.op === "submit") {
      const id = `t${nextTask++}`;
      const md: Record<string, unknown> = { retries: o.retries };
      if (o.targets) md.targets = o.targets.map((t) => `e${t}`);
      if (o.follow !== null && o.follow < nextTask - 1) md.follow = [`t${o.follow}`];
      if (o.after !== null && o.after < nextTask - 1) md.after = [`t${o.after}`];
      same(fast.submit({ msgId: id, payload: "", metadata: md }), linear.submit({ msgId: id, payload: "", metadata: md }), `submit ${id}`);
    } else {
      if (!running.length) continue;
      const [e, id] = running.splice(o.pick % running.length, 1)[0]!;
      const a = fast.result(e, id, { success: o.ok, dependenciesMet: o.depsMet });
      const b = linear.result(e, id, { success: o.ok, dependenciesMet: o.depsMet });
      assert.equal(a.kind, b.kind, `result ${id}`);
      same(a.actions, b.actions, `result ${id}`);
    }
    assert.deepEqual(fast.targets, linear.targets, "engines in line");
    assert.deepEqual(fast.loads, linear.loads, "loads");
    assert.equal(fast.waiting, linear.waiting, "waiting");
  }
}

for (const scheme of TASK_SCHEMES) {
  test(`task queue (${scheme}): the same choices as the pass over every engine, with engines joining and leaving, targets, dependencies, retries`, () => {
    fc.assert(fc.property(fc.constantFrom(0, 1, 2), fc.integer(), fc.array(opArb, { minLength: 1, maxLength: 120 }), (hwm, seed, ops) => {
      compare(scheme, hwm, seed, [{ op: "add" }, { op: "add" }, ...ops]);
    }), { numRuns: 150 });
  });
}

test("task queue: thousands of tasks over a few engines (the line is renumbered many times) choose as before", () => {
  for (const scheme of TASK_SCHEMES) {
    const rnd = seeded(7);
    const ops: Op[] = [];
    for (let i = 0; i < 24; i++) ops.push({ op: "add" });
    for (let i = 0; i < 6000; i++) {
      const r = rnd();
      if (r < 0.45) ops.push({ op: "submit", targets: null, follow: null, after: null, retries: 0 });
      else if (r < 0.9) ops.push({ op: "result", pick: Math.floor(rnd() * 1000), ok: rnd() < 0.9, depsMet: true });
      else if (r < 0.95) ops.push({ op: "add" });
      else ops.push({ op: "remove", pick: Math.floor(rnd() * 1000) });
    }
    compare(scheme, scheme === "weighted" ? 2 : 1, 11, ops);
  }
});

test("engine order: least loaded ties go to the front of the line; the k-th available skips engines at the high-water mark", () => {
  const o = new EngineOrder(2);
  const a = o.addFront("a");
  const b = o.addFront("b"); // line: b a
  assert.equal(o.leastLoaded()!.uuid, "b");
  o.setLoad(b, 1);
  o.moveToBack(b); // line: a b
  assert.equal(o.leastLoaded()!.uuid, "a");
  o.setLoad(a, 2); // a is full
  assert.equal(o.availableCount, 1);
  assert.equal(o.nthAvailable(0)!.uuid, "b");
  assert.equal(o.nthAvailable(1), undefined);
  assert.equal(o.countWithLoad(1), 1);
  o.setLoad(b, 2);
  assert.equal(o.leastLoaded(), undefined);
  o.remove("a");
  assert.deepEqual([...o.inOrder()].map((e) => e.uuid), ["b"]);
});
