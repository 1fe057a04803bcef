/**
 * The SQLite record store's cost on the message path: N tasks go through add (submission),
 * update (sent to an engine) and update (result), as the scheduler drives them, with 1 KiB request
 * and result buffers. Reports the time the message path spends in the store per task (handing
 * batches to the writer thread included), and the writer's transactions (records each, ms each),
 * which run on the writer thread, off the event loop.
 *
 *   npx tsx bench/controller/sqlite-store.ts [N=20000]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { emptyRecord } from "../../src/controller/core/hub-db.ts";
import { SqliteRecordStore } from "../../src/controller/sqlite-store.ts";
import { createLogger } from "../../src/util/log.ts";

const n = Number(process.argv[2] ?? 20_000);
const dir = mkdtempSync(join(tmpdir(), "ipp-sqlite-bench-"));
const flushes: Array<[number, number]> = [];
const store = SqliteRecordStore.open({ path: join(dir, "tasks.db"), log: createLogger({ level: "warn" }), onFlush: (r, ms) => flushes.push([r, ms]) });
const buf = Buffer.alloc(1024, 1);
let inStore = 0;
const timed = (f: () => void) => { const t = performance.now(); f(); inStore += performance.now() - t; };

const t0 = performance.now();
for (let i = 0; i < n; i++) {
  const id = `task-${i}`;
  const now = new Date().toISOString();
  timed(() => store.add({ ...emptyRecord(id), header: { msg_id: id, msg_type: "apply_request", date: now }, metadata: {}, content: {}, buffers: [buf, buf], submitted: now, queue: "task", client_uuid: "c" }));
  timed(() => store.update(id, { engine_uuid: "e" }));
  timed(() => store.update(id, { result_header: { msg_id: `r-${i}`, date: now }, result_metadata: { status: "ok" }, result_content: { status: "ok" }, result_buffers: [buf], completed: now, received: now }));
  // let timers run now and then, as the event loop would between messages
  if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
}
// the event loop's longest stall while the writer works through the last batches
let maxLag = 0;
const lagT0 = performance.now();
while (flushes.reduce((s, [r]) => s + r, 0) < n && performance.now() - lagT0 < 60_000) {
  const t = performance.now();
  await new Promise((r) => setTimeout(r, 1));
  maxLag = Math.max(maxLag, performance.now() - t - 1);
}
const wall = performance.now() - t0;
const inFlush = flushes.reduce((s, [, ms]) => s + ms, 0);
const t1 = performance.now();
const found = store.find({ queue: "task", completed: { $ne: null } }, ["msg_id"]).length;
const queryMs = performance.now() - t1;
store.close();
rmSync(dir, { recursive: true, force: true });
const maxFlush = Math.max(...flushes.map(([, ms]) => ms));
console.log(JSON.stringify({
  tasks: n,
  store_us_per_task_on_event_loop: +((inStore / n) * 1000).toFixed(1),
  event_loop_max_lag_ms_while_writing: +maxLag.toFixed(1),
  flush_count: flushes.length,
  records_per_flush_avg: +(flushes.reduce((s, [r]) => s + r, 0) / flushes.length).toFixed(0),
  writer_ms_per_batch_avg: +(inFlush / flushes.length).toFixed(2),
  writer_ms_per_batch_max: +maxFlush.toFixed(2),
  wall_ms: +wall.toFixed(0),
  query_all_ms: +queryMs.toFixed(1),
  found,
}));
