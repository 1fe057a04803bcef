/**
 * The hub's task records (ipyparallel's DictDB): one record per request msg_id, bounded by a record
 * count and a total size (oldest records culled first, 10 % at a time, like upstream), with
 * Mongo-style queries for db_request / purge_request / result_request. The size counts request and
 * result buffers, as upstream does, and also the stdout/stderr text captured from iopub (upstream
 * leaves text out, so a chatty task could grow its records without bound).
 */
export interface TaskRecord {
  msg_id: string;
  header: Record<string, unknown> | null;
  metadata: Record<string, unknown> | null;
  content: Record<string, unknown> | null;
  buffers: Buffer[] | null;
  submitted: string | null;
  client_uuid: string | null;
  engine_uuid: string | null;
  started: string | null;
  completed: string | null;
  resubmitted: string | null;
  received: string | null;
  result_header: Record<string, unknown> | null;
  result_metadata: Record<string, unknown> | null;
  result_content: Record<string, unknown> | null;
  result_buffers: Buffer[] | null;
  queue: string | null;
  execute_input: string | null;
  execute_result: Record<string, unknown> | null;
  error: Record<string, unknown> | null;
  stdout: string;
  stderr: string;
  label: unknown;
  [extra: string]: unknown;
}

export function emptyRecord(msgId: string): TaskRecord {
  return {
    msg_id: msgId, header: null, metadata: null, content: null, buffers: null, submitted: null,
    client_uuid: null, engine_uuid: null, started: null, completed: null, resubmitted: null, received: null,
    result_header: null, result_metadata: null, result_content: null, result_buffers: null, queue: null,
    execute_input: null, execute_result: null, error: null, stdout: "", stderr: "", label: null,
  };
}

export type Query = Record<string, unknown>;

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?$/;

/** Microseconds since the epoch for an ISO date string (µs kept), else null. */
export function isoToMicros(s: string): number | null {
  if (!ISO.test(s)) return null;
  const m = /\.(\d+)/.exec(s);
  const frac = m ? m[1]! : "";
  const base = Date.parse(s.replace(/\.\d+/, "") + (/(Z|[+-]\d\d:?\d\d)$/.test(s) ? "" : "Z"));
  if (Number.isNaN(base)) return null;
  return base * 1000 + Number((frac + "000000").slice(0, 6));
}

function comparable(a: unknown, b: unknown): [number | string, number | string] | null {
  if (typeof a === "number" && typeof b === "number") return [a, b];
  if (typeof a === "string" && typeof b === "string") {
    const da = isoToMicros(a);
    const db = isoToMicros(b);
    if (da !== null && db !== null) return [da, db];
    return [a, b];
  }
  return null;
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === "string" && typeof b === "string") {
    const da = isoToMicros(a);
    return da !== null && da === isoToMicros(b);
  }
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Buffer.isBuffer(a) || Buffer.isBuffer(b)) return Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.equals(b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

const contains = (list: unknown, v: unknown) => Array.isArray(list) && list.some((x) => deepEqual(x, v));

type Op = (value: unknown, arg: unknown) => boolean;
const OPS: Record<string, Op> = {
  $eq: (v, a) => deepEqual(v, a),
  $ne: (v, a) => !deepEqual(v, a),
  $lt: (v, a) => { const c = comparable(v, a); return c !== null && c[0] < c[1]; },
  $lte: (v, a) => { const c = comparable(v, a); return c !== null && c[0] <= c[1]; },
  $gt: (v, a) => { const c = comparable(v, a); return c !== null && c[0] > c[1]; },
  $gte: (v, a) => { const c = comparable(v, a); return c !== null && c[0] >= c[1]; },
  $in: (v, a) => contains(a, v),
  $nin: (v, a) => !contains(a, v),
  $all: (v, a) => Array.isArray(a) && Array.isArray(v) && a.every((x) => contains(v, x)),
  $mod: (v, a) => Array.isArray(a) && typeof v === "number" && typeof a[0] === "number" && v % a[0] === a[1],
  $exists: (v, a) => (a ? v !== null && v !== undefined : v === null || v === undefined),
  $glob: (v, a) => typeof v === "string" && typeof a === "string" && globToRegExp(a).test(v),
};

function globToRegExp(g: string): RegExp {
  const re = g.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".").replace(/\[!/g, "[^");
  return new RegExp(`^${re}$`, "s");
}

export class QueryError extends Error {}

/** Compile a Mongo-style query into a predicate; throws QueryError on an unknown operator. */
export function compileQuery(query: Query): (rec: Record<string, unknown>) => boolean {
  if (query === null || typeof query !== "object" || Array.isArray(query)) throw new QueryError("query must be an object");
  const tests: Array<[string, (v: unknown) => boolean]> = [];
  for (const [key, test] of Object.entries(query)) {
    if (test !== null && typeof test === "object" && !Array.isArray(test)) {
      const parts = Object.entries(test as Record<string, unknown>).map(([op, arg]) => {
        const f = OPS[op];
        if (!f) throw new QueryError(`unknown query operator ${op}`);
        return (v: unknown) => f(v, arg);
      });
      tests.push([key, (v) => parts.every((p) => p(v))]);
    } else {
      tests.push([key, (v) => deepEqual(v ?? null, test)]);
    }
  }
  return (rec) => tests.every(([k, t]) => t(rec[k] ?? null));
}

/** The text fields that grow as iopub stream output arrives. */
export type StreamName = "stdout" | "stderr";

/**
 * What the hub needs from a record store. HubDb keeps records in memory; another store (e.g. on
 * disk) implements the same interface, with the same culling rules.
 */
export interface RecordStore {
  /** Records held now. */
  readonly size: number;
  /** Records culled by the limits so far. */
  readonly culled: number;
  has(msgId: string): boolean;
  get(msgId: string): TaskRecord | undefined;
  /** Insert (or replace) a record; may cull the oldest ones. */
  add(rec: TaskRecord): void;
  /**
   * Merge fields into an existing record; may cull. A record that is gone (culled or purged) is
   * not recreated, as upstream's update_record refuses a culled id: returns undefined.
   */
  update(msgId: string, fields: Partial<TaskRecord>): TaskRecord | undefined;
  /** Append stream text to an existing record (no-op if there is none); may cull. */
  appendText(msgId: string, stream: StreamName, text: string): void;
  drop(msgId: string): void;
  /** `keys`: the projection a db_request asks for, for stores that check it (upstream's SQLiteDB does). */
  find(query: Query, keys?: readonly string[] | null): TaskRecord[];
  dropMatching(query: Query): number;
  /** msg_ids with a submission time, oldest first. */
  history(): string[];
  /** Write out anything held back and release the store (the controller is stopping). */
  close?(): void;
}

export interface HubDbOptions {
  recordLimit?: number; // default 1024
  sizeLimitBytes?: number; // default 1 GiB
  cullFraction?: number; // default 0.1
}

const bufBytes = (bs: Buffer[] | null | undefined) => (bs ? bs.reduce((n, b) => n + b.length, 0) : 0);
const textBytes = (t: string | null | undefined) => (t ? Buffer.byteLength(t, "utf8") : 0);

/** Bytes one field of a record counts towards the size limit (0 for fields that are not counted). */
function fieldBytes(rec: Partial<TaskRecord>, key: string): number {
  switch (key) {
    case "buffers": return bufBytes(rec.buffers);
    case "result_buffers": return bufBytes(rec.result_buffers);
    case "stdout": return textBytes(rec.stdout);
    case "stderr": return textBytes(rec.stderr);
    default: return 0;
  }
}
const SIZED_FIELDS = ["buffers", "result_buffers", "stdout", "stderr"] as const;
const recordBytes = (rec: TaskRecord) => SIZED_FIELDS.reduce((n, k) => n + fieldBytes(rec, k), 0);

export class HubDb implements RecordStore {
  private readonly records = new Map<string, TaskRecord>();
  /** Counted bytes per record, so an update only measures the fields it changes. */
  private readonly sizes = new Map<string, number>();
  private bytes = 0;
  readonly recordLimit: number;
  readonly sizeLimit: number;
  readonly cullFraction: number;
  culled = 0;

  constructor(opts: HubDbOptions = {}) {
    this.recordLimit = opts.recordLimit ?? 1024;
    this.sizeLimit = opts.sizeLimitBytes ?? 1024 ** 3;
    this.cullFraction = opts.cullFraction ?? 0.1;
  }

  get size(): number {
    return this.records.size;
  }

  /** Bytes counted towards the size limit: buffers and stream text. */
  get bufferBytes(): number {
    return this.bytes;
  }

  has(msgId: string): boolean {
    return this.records.has(msgId);
  }

  get(msgId: string): TaskRecord | undefined {
    return this.records.get(msgId);
  }

  add(rec: TaskRecord): void {
    this.bytes -= this.sizes.get(rec.msg_id) ?? 0;
    const n = recordBytes(rec);
    this.records.set(rec.msg_id, rec);
    this.sizes.set(rec.msg_id, n);
    this.bytes += n;
    this.maybeCull();
  }

  update(msgId: string, fields: Partial<TaskRecord>): TaskRecord | undefined {
    const rec = this.records.get(msgId);
    if (!rec) return undefined;
    let delta = 0;
    for (const k of SIZED_FIELDS) if (k in fields) delta += fieldBytes(fields, k) - fieldBytes(rec, k);
    Object.assign(rec, fields);
    this.resize(msgId, delta);
    return rec;
  }

  appendText(msgId: string, stream: StreamName, text: string): void {
    const rec = this.records.get(msgId);
    if (!rec || text === "") return;
    rec[stream] += text;
    this.resize(msgId, textBytes(text));
  }

  drop(msgId: string): void {
    if (!this.records.delete(msgId)) return;
    this.bytes -= this.sizes.get(msgId) ?? 0;
    this.sizes.delete(msgId);
  }

  private resize(msgId: string, delta: number): void {
    if (delta !== 0) {
      this.sizes.set(msgId, (this.sizes.get(msgId) ?? 0) + delta);
      this.bytes += delta;
    }
    this.maybeCull();
  }

  /** `_keys`: the projection db_request asks for (the SQLite store checks it; here any key projects). */
  find(query: Query, _keys?: readonly string[] | null): TaskRecord[] {
    const pred = compileQuery(query);
    const out: TaskRecord[] = [];
    for (const rec of this.records.values()) if (pred(rec)) out.push(rec);
    return out;
  }

  dropMatching(query: Query): number {
    const found = this.find(query);
    for (const rec of found) this.drop(rec.msg_id);
    return found.length;
  }

  /** msg_ids with a submission time, oldest first. */
  history(): string[] {
    const recs = [...this.records.values()].filter((r) => r.submitted !== null);
    const key = (r: TaskRecord) => isoToMicros(r.submitted!) ?? 0;
    return recs.sort((a, b) => key(a) - key(b)).map((r) => r.msg_id);
  }

  private cullOldest(n: number): void {
    // insertion order approximates submission order and avoids a sort on the hot path
    for (const id of this.records.keys()) {
      if (n-- <= 0) break;
      this.drop(id);
      this.culled++;
    }
  }

  private maybeCull(): void {
    if (this.records.size > this.recordLimit) this.cullOldest(Math.max(1, Math.floor(this.cullFraction * this.recordLimit)));
    if (this.bytes > this.sizeLimit) {
      const limit = this.sizeLimit * (1 - this.cullFraction);
      while (this.bytes > limit && this.records.size > 0) this.cullOldest(1);
    }
  }
}

/** A record projected onto `keys` (msg_id always included), as db_reply sends it. */
export function project(rec: TaskRecord, keys: readonly string[] | null): Record<string, unknown> {
  if (!keys || keys.length === 0) return { ...rec };
  const d: Record<string, unknown> = { msg_id: rec.msg_id };
  for (const k of keys) d[k] = rec[k] ?? null;
  return d;
}
