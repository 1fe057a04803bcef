/**
 * The load-balanced scheduler alone (core/task-queue.ts, no I/O): CPU per task with N engines, for
 * the O(log N) bookkeeping and the pass over every engine it replaced (the unit tests' reference).
 * Keeps every engine busy at hwm 1 and answers the oldest running task as each new one is submitted.
 *
 *   npx tsx bench/controller/task-queue.ts [--n 256,1024,4096] [--tasks 100000] [--scheme leastload]
 */
import { parseArgs } from "node:util";
import type { TaskScheme } from "../../src/controller/core/choosers.ts";
import { TaskQueue } from "../../src/controller/core/task-queue.ts";
import { LinearTaskQueue } from "../../test/unit/controller/reference/linear-task-queue.ts";

const { values: opts } = parseArgs({ options: { n: { type: "string", default: "256,1024,4096" }, tasks: { type: "string", default: "100000" }, scheme: { type: "string", default: "leastload" } } });
type Q = { addEngine(u: string): unknown; submit(s: { msgId: string; payload: string; metadata: Record<string, unknown> }): Array<{ kind: string; engine?: string; job: { msgId: string } }>; result(e: string, m: string, r: { success: boolean }): { actions: Array<{ kind: string; engine?: string; job: { msgId: string } }> } };

function run(q: Q, n: number, tasks: number): number {
  for (let i = 0; i < n; i++) q.addEngine(`engine-${i}`);
  const running: Array<[string, string]> = [];
  let head = 0;
  const take = (acts: Array<{ kind: string; engine?: string; job: { msgId: string } }>) => { for (const a of acts) if (a.kind === "send") running.push([a.engine!, a.job.msgId]); };
  const t0 = process.cpuUsage();
  for (let t = 0; t < tasks; t++) {
    take(q.submit({ msgId: `t${t}`, payload: "", metadata: {} }));
    if (t >= n) {
      const [e, id] = running[head++]!;
      take(q.result(e, id, { success: true }).actions);
    }
  }
  const u = process.cpuUsage(t0);
  return (u.user + u.system) / tasks; // µs per task
}

const scheme = opts.scheme as TaskScheme;
for (const n of opts.n.split(",").map(Number)) {
  const tasks = Number(opts.tasks);
  const fast = run(new TaskQueue<string>({ scheme, hwm: 1 }), n, tasks);
  const linear = run(new LinearTaskQueue<string>({ scheme, hwm: 1 }), n, Math.min(tasks, 20_000));
  process.stdout.write(`N=${n} ${scheme}: ${fast.toFixed(1)} µs CPU per task (before: ${linear.toFixed(1)} µs)\n`);
}
