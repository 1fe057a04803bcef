/**
 * Task records in SQLite (--sqlitedb), in the file, table and columns ipyparallel's SQLiteDB uses
 * (<profile>/tasks.db, table "ipython-tasks", the same declared types), so a database written by
 * upstream's controller is read here and the other way round: dicts are stored as Python's
 * json.dumps text, buffers as a pickled list of bytes, datetimes as Python isoformat text.
 * Queries are rendered as upstream renders them (core/sql-query.ts).
 *
 * Writes never run on the event loop: add/update/appendText change the record in memory and mark
 * it dirty; every flushIntervalMs (or as soon as maxBatch are dirty) the dirty records are handed
 * to a writer thread (sqlite-writer.ts), which encodes them and commits them in one transaction.
 * A record stays in memory until its batch is committed. A query (find, history, drop) first hands
 * over what is dirty and waits for the writer to finish, so it sees every change; that wait is the
 * only time the event loop waits on the disk, and only for a client's query. Like upstream's
 * SQLiteDB, records are never culled.
 */
import Database from "better-sqlite3";
import { existsSync } from "node:fs";
import { Worker } from "node:worker_threads";
import type { Logger } from "../util/log.ts";
import { type Query, type RecordStore, type StreamName, type TaskRecord } from "./core/hub-db.ts";
import { rowToRecord } from "./core/sqlite-rows.ts";
import { PyError, SQLITE_COLUMNS, SQLITE_COLUMNS_8, SQLITE_TYPES, renderQuery, selectKeys, type SqliteColumn } from "./core/sql-query.ts";
import type { WriterBatch, WriterInit, WriterReply } from "./sqlite-writer.ts";

export const DEFAULT_SQLITE_TABLE = "ipython-tasks";
export const DEFAULT_SQLITE_FILENAME = "tasks.db";

export interface SqliteStoreOptions {
  path: string;
  /** Default "ipython-tasks", as upstream. */
  table?: string;
  log: Logger;
  /** Longest a change waits in memory before it is handed to the writer. Default 100 ms. */
  flushIntervalMs?: number;
  /** Dirty records that are handed over at once. Default 500. */
  maxBatch?: number;
  /** Wait this long for another process's lock before giving up. Default 2000 ms. */
  lockTimeoutMs?: number;
  /** Called after each committed batch with its size and the writer's time (for benchmarks). */
  onFlush?: (records: number, ms: number) => void;
}

export class SqliteStoreError extends Error {
  readonly code = "IPP_SQLITE_UNUSABLE";
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** Python's sqlite3 exception class for a SQLite result code. */
function pyErrorName(code: string | undefined): string {
  if (!code) return "DatabaseError";
  if (code.startsWith("SQLITE_CONSTRAINT")) return "IntegrityError";
  if (code.startsWith("SQLITE_CORRUPT") || code.startsWith("SQLITE_NOTADB")) return "DatabaseError";
  if (code.startsWith("SQLITE_RANGE") || code.startsWith("SQLITE_MISUSE")) return "ProgrammingError";
  return "OperationalError";
}

/** The writer's module: the .ts source under the TypeScript loader (which the thread then needs too), the compiled .js otherwise. */
const FROM_SOURCE = import.meta.url.endsWith(".ts");
const WRITER_URL = new URL(`./sqlite-writer${FROM_SOURCE ? ".ts" : ".js"}`, import.meta.url);
/** Thread bootstrap: under the TypeScript loader, register it in the thread first (Node 20 does not carry loader hooks into threads). */
const WRITER_BOOT = FROM_SOURCE
  ? `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((m) => { m.register(); return import(${JSON.stringify(WRITER_URL.href)}); })`
  : `import(${JSON.stringify(WRITER_URL.href)})`;

export class SqliteRecordStore implements RecordStore {
  readonly path: string;
  readonly table: string;
  /** The table's columns: upstream 9.x's, or 8.x's (no label) when the table was made by an 8.x controller. */
  readonly columns: readonly SqliteColumn[];
  /** Upstream's SQLiteDB never culls. */
  readonly culled = 0;
  /** Batches the writer could not commit (their records are handed over again). */
  failedBatches = 0;
  private readonly db: Database.Database;
  private readonly log: Logger;
  /** Records held in memory: every dirty or uncommitted one, plus unfinished ones (about to change again). */
  private readonly hot = new Map<string, TaskRecord>();
  private readonly dirty = new Set<string>();
  /** Batches handed to the writer and not yet committed: seq -> msg_ids. */
  private readonly inflight = new Map<number, string[]>();
  /** The latest batch each uncommitted record went out in. */
  private readonly lastBatch = new Map<string, number>();
  private readonly writer: Worker;
  private readonly done: Int32Array;
  private seq = 0;
  private count: number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly flushIntervalMs: number;
  private readonly maxBatch: number;
  private readonly onFlush: SqliteStoreOptions["onFlush"];
  private readonly selectOne: Database.Statement;
  private readonly exists: Database.Statement;

  private constructor(db: Database.Database, table: string, columns: readonly SqliteColumn[], opts: SqliteStoreOptions) {
    this.db = db;
    this.path = opts.path;
    this.table = table;
    this.columns = columns;
    this.log = opts.log;
    this.flushIntervalMs = opts.flushIntervalMs ?? 100;
    this.maxBatch = opts.maxBatch ?? 500;
    this.onFlush = opts.onFlush;
    const t = quoteIdent(table);
    this.selectOne = db.prepare(`SELECT * FROM ${t} WHERE msg_id = ?`);
    this.exists = db.prepare(`SELECT 1 FROM ${t} WHERE msg_id = ?`).pluck();
    this.count = db.prepare(`SELECT COUNT(*) FROM ${t}`).pluck().get() as number;
    const shared = new SharedArrayBuffer(4);
    this.done = new Int32Array(shared);
    const init: WriterInit = { path: opts.path, table, columns, done: shared, busyTimeoutMs: Math.max(5000, opts.lockTimeoutMs ?? 2000) };
    this.writer = new Worker(WRITER_BOOT, { eval: true, workerData: init });
    this.writer.on("message", (r: WriterReply) => this.committed(r));
    this.writer.on("error", (err) => this.log.error("SQLite writer thread failed", err, { path: this.path }));
    this.writer.unref();
  }

  /**
   * Open (or create) the database. A file that is not SQLite, is corrupt or is locked by another
   * process is refused with a SqliteStoreError that says which, and is left as it was.
   */
  static open(opts: SqliteStoreOptions): SqliteRecordStore {
    const existed = existsSync(opts.path);
    let db: Database.Database;
    try {
      db = new Database(opts.path, { timeout: opts.lockTimeoutMs ?? 2000 });
    } catch (err) {
      throw new SqliteStoreError(`cannot open the SQLite task database ${opts.path}: ${(err as Error).message}`);
    }
    try {
      // reading the schema fails on a file that is not a database (and on a damaged header)
      db.pragma("schema_version");
      if (existed) {
        const check = db.pragma("quick_check", { simple: true });
        if (check !== "ok") throw Object.assign(new Error(`integrity check: ${String(check)}`), { code: "SQLITE_CORRUPT" });
      }
      // a write lock held elsewhere (another controller mid-transaction) shows here, before any write
      db.exec("BEGIN IMMEDIATE");
      db.exec("ROLLBACK");
      const { table, columns } = chooseTable(db, opts.table ?? DEFAULT_SQLITE_TABLE, opts.log);
      db.exec(`CREATE TABLE IF NOT EXISTS ${quoteIdent(table)} (msg_id text PRIMARY KEY, ${
        columns.slice(1).map((c) => `${c} ${SQLITE_TYPES[c]}`).join(", ")})`);
      return new SqliteRecordStore(db, table, columns, opts);
    } catch (err) {
      db.close();
      const code = (err as { code?: string }).code ?? "";
      const why = code === "SQLITE_BUSY" || code.startsWith("SQLITE_LOCKED")
        ? "is locked by another process (is another controller using it?)"
        : code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT")
          ? "is not a SQLite database or is damaged"
          : "cannot be used";
      throw new SqliteStoreError(`the SQLite task database ${opts.path} ${why}: ${(err as Error).message}; the file was left as it is`);
    }
  }

  get size(): number {
    return this.count;
  }

  has(msgId: string): boolean {
    return this.hot.has(msgId) || this.exists.get(msgId) !== undefined;
  }

  get(msgId: string): TaskRecord | undefined {
    const held = this.hot.get(msgId);
    if (held) return held;
    const row = this.selectOne.get(msgId) as Record<string, unknown> | undefined;
    if (!row) return undefined;
    const rec = rowToRecord(row) as TaskRecord;
    this.hot.set(msgId, rec);
    return rec;
  }

  add(rec: TaskRecord): void {
    // no disk read on the message path: a msg_id added again after its record left memory is counted twice until the next start
    if (!this.hot.has(rec.msg_id)) this.count++;
    this.hot.set(rec.msg_id, rec);
    this.markDirty(rec.msg_id);
  }

  /** Merge fields into an existing record; like upstream's UPDATE ... WHERE msg_id, nothing happens without one. */
  update(msgId: string, fields: Partial<TaskRecord>): TaskRecord | undefined {
    const rec = this.get(msgId);
    if (!rec) return undefined;
    Object.assign(rec, fields);
    this.markDirty(msgId);
    return rec;
  }

  appendText(msgId: string, stream: StreamName, text: string): void {
    const rec = this.get(msgId);
    if (!rec || text === "") return;
    rec[stream] = (rec[stream] ?? "") + text;
    this.markDirty(msgId);
  }

  drop(msgId: string): void {
    this.settle();
    this.hot.delete(msgId);
    this.count -= this.db.prepare(`DELETE FROM ${quoteIdent(this.table)} WHERE msg_id = ?`).run(msgId).changes;
  }

  /** Records matching a query (upstream's operators and errors); `keys` projects as upstream's find_records. */
  find(query: Query, keys?: readonly string[] | null): TaskRecord[] {
    const cols = selectKeys(keys, this.columns);
    const { where, args } = renderQuery(query, this.columns);
    this.settle();
    // an empty query is SQL with an empty WHERE upstream (a syntax error); here it matches every record
    const sql = `SELECT ${cols ? cols.join(", ") : "*"} FROM ${quoteIdent(this.table)}${where ? ` WHERE ${where}` : ""}`;
    return this.run(() => (this.db.prepare(sql).all(...args) as Record<string, unknown>[]).map((r) => rowToRecord(r) as TaskRecord));
  }

  dropMatching(query: Query): number {
    const { where, args } = renderQuery(query, this.columns);
    this.settle();
    const sql = `DELETE FROM ${quoteIdent(this.table)}${where ? ` WHERE ${where}` : ""}`;
    const n = this.run(() => this.db.prepare(sql).run(...args).changes);
    this.count -= n;
    this.hot.clear();
    return n;
  }

  /** msg_ids ordered by submission time (upstream's ORDER BY submitted, NULLs first). */
  history(): string[] {
    this.settle();
    return this.db.prepare(`SELECT msg_id FROM ${quoteIdent(this.table)} ORDER BY submitted ASC`).pluck().all() as string[];
  }

  /** Hand every dirty record to the writer now, as one batch. */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.dirty.size === 0 || this.closed) return;
    const ids = [...this.dirty];
    this.dirty.clear();
    const seq = ++this.seq;
    this.inflight.set(seq, ids);
    for (const id of ids) this.lastBatch.set(id, seq);
    const batch: WriterBatch = { seq, records: ids.map((id) => this.hot.get(id)).filter((r): r is TaskRecord => r !== undefined) };
    this.writer.postMessage(batch);
  }

  /** Write out everything and stop the writer. */
  close(): void {
    if (this.closed) return;
    this.settle();
    this.closed = true;
    this.writer.postMessage("close");
    this.db.close();
  }

  /** Flush and wait until the writer has committed every batch (queries need the disk up to date). */
  private settle(): void {
    this.flush();
    const deadline = Date.now() + 30_000;
    while (Atomics.load(this.done, 0) < this.seq) {
      if (Atomics.wait(this.done, 0, Atomics.load(this.done, 0), Math.max(1, deadline - Date.now())) === "timed-out" && Date.now() >= deadline) {
        throw new PyError("OperationalError", "the task database writer did not finish within 30 s");
      }
    }
  }

  private committed(r: WriterReply): void {
    const ids = this.inflight.get(r.seq) ?? [];
    this.inflight.delete(r.seq);
    if (!r.ok) {
      for (const id of ids) if (this.lastBatch.get(id) === r.seq) this.lastBatch.delete(id);
      this.failedBatches++;
      this.log.error("could not write task records to SQLite; retrying", undefined, { path: this.path, records: ids.length, error: r.error });
      for (const id of ids) this.dirty.add(id);
      this.schedule(Math.max(1000, this.flushIntervalMs));
      return;
    }
    // keep unfinished records at hand (they change again soon); finished ones are read back from disk
    for (const id of ids) {
      if (this.lastBatch.get(id) !== r.seq) continue; // went out again in a later batch
      this.lastBatch.delete(id);
      const rec = this.hot.get(id);
      if (rec && !this.dirty.has(id) && (rec.completed !== null || this.hot.size > 8 * this.maxBatch)) this.hot.delete(id);
    }
    this.onFlush?.(r.records, r.ms);
  }

  private markDirty(msgId: string): void {
    this.dirty.add(msgId);
    if (this.dirty.size >= this.maxBatch) this.flush();
    else if (!this.timer) this.schedule(this.flushIntervalMs);
  }

  private schedule(ms: number): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, ms);
    this.timer.unref();
  }

  private run<T>(f: () => T): T {
    try {
      return f();
    } catch (err) {
      if (err instanceof PyError) throw err;
      const e = err as { code?: string; message?: string };
      throw new PyError(pyErrorName(e.code), e.message ?? String(err));
    }
  }
}

/**
 * Upstream's _check_table: a table of that name with other columns is left alone and the next free
 * name (table_1, ...) is used. A table with 9.x's columns or 8.x's (no label) is used as it is.
 */
function chooseTable(db: Database.Database, first: string, log: Logger): { table: string; columns: readonly SqliteColumn[] } {
  let table = first;
  for (let i = 1; ; i++) {
    const info = db.prepare(`PRAGMA table_info(${quoteIdent(table)})`).all() as Array<{ name: string; type: string }>;
    if (info.length === 0) return { table, columns: SQLITE_COLUMNS };
    const names = info.map((r) => r.name);
    // SQLite 3.37+ reports a declared "text" as "TEXT"; upstream compares case-sensitively and so never
    // reuses a table on a current SQLite (a new table_N at every start). Compared without case here.
    const matches = (cols: readonly SqliteColumn[]) => names.length === cols.length &&
      cols.every((c, j) => names[j] === c && info[j]!.type.toLowerCase() === SQLITE_TYPES[c]);
    if (matches(SQLITE_COLUMNS)) return { table, columns: SQLITE_COLUMNS };
    if (matches(SQLITE_COLUMNS_8)) return { table, columns: SQLITE_COLUMNS_8 };
    const next = `${first}_${i}`;
    log.warn("SQLite table exists with other columns; using another table", { table, next });
    table = next;
  }
}

