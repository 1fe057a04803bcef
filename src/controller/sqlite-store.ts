/**
 * Task records in SQLite (--sqlitedb), in the file, table and columns ipyparallel's SQLiteDB uses
 * (<profile>/tasks.db, table "ipython-tasks", the same declared types), so a database written by
 * upstream's controller is read here and the other way round: dicts are stored as Python's
 * json.dumps text, buffers as a pickled list of bytes, datetimes as Python isoformat text.
 * Queries are rendered as upstream renders them (core/sql-query.ts).
 *
 * Writes never touch the disk on the message path: add/update/appendText change the record in
 * memory and mark it dirty; dirty records are written in one transaction a short time later
 * (flushIntervalMs), or at once when maxBatch are waiting, so a burst of tasks costs one commit.
 * Reads that need the disk (find, history, a record no longer held in memory) first write what is
 * dirty, so they see every change. Like upstream's SQLiteDB, records are never culled.
 */
import Database from "better-sqlite3";
import { existsSync } from "node:fs";
import type { Logger } from "../util/log.ts";
import { emptyRecord, type Query, type RecordStore, type StreamName, type TaskRecord } from "./core/hub-db.ts";
import { pickleBufferList, unpickleBufferList } from "./core/py-pickle.ts";
import {
  PyError, SQLITE_COLUMNS, SQLITE_COLUMNS_8, SQLITE_TYPES, pyIsoformat, pyJson, renderQuery, selectKeys, type SqlValue, type SqliteColumn,
} from "./core/sql-query.ts";

export const DEFAULT_SQLITE_TABLE = "ipython-tasks";
export const DEFAULT_SQLITE_FILENAME = "tasks.db";

export interface SqliteStoreOptions {
  path: string;
  /** Default "ipython-tasks", as upstream. */
  table?: string;
  log: Logger;
  /** Longest a change waits in memory before it is written. Default 100 ms. */
  flushIntervalMs?: number;
  /** Dirty records that trigger a write at once. Default 500. */
  maxBatch?: number;
  /** Wait this long for another process's lock at start-up before giving up. Default 2000 ms. */
  lockTimeoutMs?: number;
  /** Called after each write with how many records and how long it took (for metrics and benchmarks). */
  onFlush?: (records: number, ms: number) => void;
}

export class SqliteStoreError extends Error {
  readonly code = "IPP_SQLITE_UNUSABLE";
}

const DICT_COLUMNS = new Set<string>(SQLITE_COLUMNS.filter((c) => SQLITE_TYPES[c].startsWith("dict")));
const BUF_COLUMNS = new Set<string>(["buffers", "result_buffers"]);
const TIME_COLUMNS = new Set<string>(["submitted", "started", "completed", "received"]);
/** Columns declared text that upstream fills with dicts (its dict adapter writes JSON; its reader returns the text). */
const JSON_TEXT_COLUMNS = new Set<string>(["execute_result", "error"]);

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** Python's sqlite3 exception class for a SQLite result code. */
function pyErrorName(code: string | undefined): string {
  if (!code) return "DatabaseError";
  if (code.startsWith("SQLITE_CONSTRAINT")) return "IntegrityError";
  if (code.startsWith("SQLITE_CORRUPT") || code.startsWith("SQLITE_NOTADB")) return "DatabaseError";
  if (code.startsWith("SQLITE_RANGE") || code.startsWith("SQLITE_MISUSE")) return "ProgrammingError";
  return "OperationalError";
}

export class SqliteRecordStore implements RecordStore {
  readonly path: string;
  readonly table: string;
  /** The table's columns: upstream 9.x's, or 8.x's (no label) when the table was made by an 8.x controller. */
  readonly columns: readonly SqliteColumn[];
  /** Upstream's SQLiteDB never culls. */
  readonly culled = 0;
  private readonly db: Database.Database;
  private readonly log: Logger;
  /** Records held in memory: every dirty one, plus unfinished ones (about to change again). */
  private readonly hot = new Map<string, TaskRecord>();
  private readonly dirty = new Set<string>();
  /** Pickled blobs of buffer lists already encoded, so a record written twice pickles its buffers once. */
  private readonly pickled = new WeakMap<Buffer[], Buffer>();
  private count: number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly flushIntervalMs: number;
  private readonly maxBatch: number;
  private readonly onFlush: SqliteStoreOptions["onFlush"];
  private readonly upsert: Database.Statement;
  private readonly selectOne: Database.Statement;
  private readonly exists: Database.Statement;
  /** Writes that failed (e.g. the file locked by another process) and are retried at the next flush. */
  failedFlushes = 0;

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
    this.upsert = db.prepare(`INSERT OR REPLACE INTO ${t} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`);
    this.selectOne = db.prepare(`SELECT * FROM ${t} WHERE msg_id = ?`);
    this.exists = db.prepare(`SELECT 1 FROM ${t} WHERE msg_id = ?`).pluck();
    this.count = db.prepare(`SELECT COUNT(*) FROM ${t}`).pluck().get() as number;
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
    if (!this.hot.has(rec.msg_id) && this.exists.get(rec.msg_id) === undefined) this.count++;
    this.hot.set(rec.msg_id, rec);
    this.markDirty(rec.msg_id);
  }

  update(msgId: string, fields: Partial<TaskRecord>): TaskRecord {
    let rec = this.get(msgId);
    if (!rec) {
      rec = emptyRecord(msgId);
      this.hot.set(msgId, rec);
      this.count++;
    }
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
    this.flush();
    this.hot.delete(msgId);
    this.count -= this.db.prepare(`DELETE FROM ${quoteIdent(this.table)} WHERE msg_id = ?`).run(msgId).changes;
  }

  /** Records matching a query (upstream's operators and errors); `keys` projects as upstream's find_records. */
  find(query: Query, keys?: readonly string[] | null): TaskRecord[] {
    const cols = selectKeys(keys, this.columns);
    const { where, args } = renderQuery(query, this.columns);
    this.flush();
    // an empty query is SQL with an empty WHERE upstream (a syntax error); here it matches every record
    const sql = `SELECT ${cols ? cols.join(", ") : "*"} FROM ${quoteIdent(this.table)}${where ? ` WHERE ${where}` : ""}`;
    return this.run(() => (this.db.prepare(sql).all(...args) as Record<string, unknown>[]).map((r) => rowToRecord(r) as TaskRecord));
  }

  dropMatching(query: Query): number {
    const { where, args } = renderQuery(query, this.columns);
    this.flush();
    const sql = `DELETE FROM ${quoteIdent(this.table)}${where ? ` WHERE ${where}` : ""}`;
    const n = this.run(() => this.db.prepare(sql).run(...args).changes);
    this.count -= n;
    this.hot.clear();
    return n;
  }

  /** msg_ids ordered by submission time (upstream's ORDER BY submitted, NULLs first). */
  history(): string[] {
    this.flush();
    return this.db.prepare(`SELECT msg_id FROM ${quoteIdent(this.table)} ORDER BY submitted ASC`).pluck().all() as string[];
  }

  /** Write every dirty record now, in one transaction. */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.dirty.size === 0 || this.closed) return;
    const t0 = performance.now();
    const ids = [...this.dirty];
    try {
      this.db.transaction(() => {
        for (const id of ids) {
          const rec = this.hot.get(id);
          if (rec) this.upsert.run(this.recordToRow(rec));
        }
      })();
    } catch (err) {
      this.failedFlushes++;
      this.log.error("could not write task records to SQLite; retrying", err, { path: this.path, records: ids.length });
      this.schedule(Math.max(1000, this.flushIntervalMs));
      return;
    }
    this.dirty.clear();
    // keep unfinished records at hand (they change again soon); finished ones are read back from disk
    for (const [id, rec] of this.hot) if (rec.completed !== null || this.hot.size > 4 * this.maxBatch) this.hot.delete(id);
    this.onFlush?.(ids.length, performance.now() - t0);
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.db.close();
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

  private recordToRow(rec: TaskRecord): SqlValue[] {
    return this.columns.map((c) => {
      const v = rec[c];
      if (v === null || v === undefined) return null;
      if (BUF_COLUMNS.has(c)) {
        const bufs = v as Buffer[];
        if (bufs.length === 0) return null;
        let blob = this.pickled.get(bufs);
        if (!blob) this.pickled.set(bufs, (blob = pickleBufferList(bufs)));
        return blob;
      }
      if (TIME_COLUMNS.has(c) && typeof v === "string") return pyIsoformat(v) ?? v;
      if (typeof v === "object") return pyJson(v);
      if (typeof v === "boolean") return v ? 1 : 0;
      return v as SqlValue;
    });
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

/** A row read back: dicts parsed, buffers unpickled, timestamps as ISO text with Z for UTC. */
function rowToRecord(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [c, v] of Object.entries(row)) out[c] = decodeColumn(c as SqliteColumn, v);
  return out;
}

function decodeColumn(c: SqliteColumn, v: unknown): unknown {
  if (v === null || v === undefined) return BUF_COLUMNS.has(c) ? [] : null;
  if (BUF_COLUMNS.has(c)) return Buffer.isBuffer(v) ? unpickleBufferList(v) : [];
  if (DICT_COLUMNS.has(c) || JSON_TEXT_COLUMNS.has(c)) {
    if (typeof v !== "string") return v;
    try {
      return JSON.parse(v.replace(/\bNaN\b|-?\bInfinity\b/g, "null"));
    } catch {
      return v;
    }
  }
  if (TIME_COLUMNS.has(c) && typeof v === "string") return v.replace(/\+00:00$/, "Z");
  return v;
}
