/**
 * The SQLite store's writer thread: batches of task records arrive from the controller's thread,
 * are turned into upstream's row format (pickling, JSON) and written in one transaction each, so
 * neither the encoding nor the commit (an fsync) ever runs on the controller's event loop. After
 * each batch, committed or not, the batch's sequence number is published in shared memory (the
 * store waits on it before a query) and the outcome is posted back.
 */
import Database from "better-sqlite3";
import { parentPort, workerData } from "node:worker_threads";
import { recordToRow } from "./core/sqlite-rows.ts";
import type { SqliteColumn } from "./core/sql-query.ts";

export interface WriterInit {
  path: string;
  table: string;
  columns: readonly SqliteColumn[];
  /** Int32Array over a SharedArrayBuffer: [0] = last batch done. */
  done: SharedArrayBuffer;
  busyTimeoutMs: number;
}
export interface WriterBatch { seq: number; records: Array<Record<string, unknown>> }
export type WriterReply = { seq: number; ok: true; ms: number; records: number } | { seq: number; ok: false; error: string };

const init = workerData as WriterInit;
const done = new Int32Array(init.done);
const db = new Database(init.path, { timeout: init.busyTimeoutMs });
const t = `"${init.table.replace(/"/g, '""')}"`;
const upsert = db.prepare(`INSERT OR REPLACE INTO ${t} (${init.columns.join(", ")}) VALUES (${init.columns.map(() => "?").join(", ")})`);
const writeAll = db.transaction((records: Array<Record<string, unknown>>) => {
  for (const r of records) upsert.run(recordToRow(r, init.columns));
});

parentPort!.on("message", (m: WriterBatch | "close") => {
  if (m === "close") {
    db.close();
    parentPort!.close();
    return;
  }
  const t0 = performance.now();
  let reply: WriterReply;
  try {
    writeAll(m.records);
    reply = { seq: m.seq, ok: true, ms: performance.now() - t0, records: m.records.length };
  } catch (err) {
    reply = { seq: m.seq, ok: false, error: (err as Error).message };
  }
  Atomics.store(done, 0, m.seq);
  Atomics.notify(done, 0);
  parentPort!.postMessage(reply);
});
