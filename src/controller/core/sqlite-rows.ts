/**
 * Task records to and from the row values upstream's SQLiteDB stores: dict columns as Python's
 * json.dumps text, buffer lists pickled, datetimes as Python isoformat text (Z becomes +00:00).
 * Shared by the store (reads) and its writer thread (writes).
 */
import { pickleBufferList, unpickleBufferList } from "./py-pickle.ts";
import { SQLITE_COLUMNS, SQLITE_TYPES, pyIsoformat, pyJson, type SqlValue, type SqliteColumn } from "./sql-query.ts";

const DICT_COLUMNS = new Set<string>(SQLITE_COLUMNS.filter((c) => SQLITE_TYPES[c].startsWith("dict")));
const BUF_COLUMNS = new Set<string>(["buffers", "result_buffers"]);
const TIME_COLUMNS = new Set<string>(["submitted", "started", "completed", "received"]);
/** Columns declared text that upstream fills with dicts (its dict adapter writes JSON; its reader returns the text). */
const JSON_TEXT_COLUMNS = new Set<string>(["execute_result", "error"]);

/** A record's values for `columns`, as upstream's adapters write them. */
export function recordToRow(rec: Record<string, unknown>, columns: readonly SqliteColumn[]): SqlValue[] {
  return columns.map((c) => {
    const v = rec[c];
    if (v === null || v === undefined) return null;
    if (BUF_COLUMNS.has(c)) {
      const bufs = v as Buffer[];
      return bufs.length === 0 ? null : pickleBufferList(bufs.map((b) => Buffer.isBuffer(b) ? b : Buffer.from(b as Uint8Array)));
    }
    if (TIME_COLUMNS.has(c) && typeof v === "string") return pyIsoformat(v) ?? v;
    if (typeof v === "object") return pyJson(v);
    if (typeof v === "boolean") return v ? 1 : 0;
    return v as SqlValue;
  });
}

/** A row read back: dicts parsed, buffers unpickled, timestamps as ISO text with Z for UTC. */
export function rowToRecord(row: Record<string, unknown>): Record<string, unknown> {
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
