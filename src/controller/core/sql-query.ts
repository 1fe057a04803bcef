/**
 * Mongo-style record queries rendered as SQL the way ipyparallel's SQLiteDB renders them, and the
 * values it binds, so a query against our SQLite store matches the same rows (and fails the same
 * way) as against upstream's. Pure: the store runs the SQL.
 *
 * Upstream's rules, kept on purpose:
 * - operators: $lt $gt $lte $gte $eq $ne $in $nin $glob; $all, $mod and $exists (which the
 *   in-memory store has) are "Unsupported operator" KeyErrors; so is anything else;
 * - only the record's columns may be tested ("Illegal testing key(s)");
 * - `{$eq: null}` / `{$ne: null}` and a bare `null` become IS NULL / IS NOT NULL; other
 *   comparisons with null match nothing (SQL's NULL rules);
 * - $in / $nin expand to `(col = ? OR ...)` / `(col != ? AND ...)`: a list holding null is a
 *   ValueError, an empty list is SQLite's syntax error (as upstream: a hub error);
 * - ISO 8601 date strings anywhere in the query are compared as the text upstream stores for
 *   datetimes (Python's isoformat, with an offset), objects as Python's json.dumps text,
 *   booleans as 1/0.
 */

export const SQLITE_COLUMNS = [
  "msg_id", "header", "metadata", "content", "buffers", "submitted", "client_uuid", "engine_uuid", "started",
  "completed", "resubmitted", "received", "result_header", "result_metadata", "result_content", "result_buffers",
  "queue", "execute_input", "execute_result", "error", "stdout", "stderr", "label",
] as const;
export type SqliteColumn = (typeof SQLITE_COLUMNS)[number];
/** ipyparallel 8.x's table: the same without `label` (added in 9.1). */
export const SQLITE_COLUMNS_8: readonly SqliteColumn[] = SQLITE_COLUMNS.filter((c) => c !== "label");

/** Declared SQL types, as upstream creates and checks them (its converters key on the first word). */
export const SQLITE_TYPES: Record<SqliteColumn, string> = {
  msg_id: "text", header: "dict text", metadata: "dict text", content: "dict text", buffers: "bufs blob",
  submitted: "timestamp", client_uuid: "text", engine_uuid: "text", started: "timestamp", completed: "timestamp",
  resubmitted: "text", received: "timestamp", result_header: "dict text", result_metadata: "dict text",
  result_content: "dict text", result_buffers: "bufs blob", queue: "text", execute_input: "text",
  execute_result: "text", error: "text", stdout: "text", stderr: "text", label: "text",
};

/** An error shaped as the Python exception upstream's hub would report. */
export class PyError extends Error {
  constructor(readonly ename: string, evalue: string) {
    super(evalue);
  }
}

/** Python's repr() of a str. */
export function pyStr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  const body = s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r");
  return q + (q === "'" ? body.replace(/'/g, "\\'") : body) + q;
}

/** Python's str(KeyError(msg)): the repr of the message. */
export const keyError = (msg: string) => new PyError("KeyError", pyStr(msg));

const ISO = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?$/;

/**
 * An ISO 8601 date string (as jupyter_client's extract_dates recognises them) as Python's
 * datetime.isoformat() writes it after ensure_timezone: microseconds only when non-zero, an
 * explicit offset (+00:00 for Z; a date without one is taken as UTC, the controller's zone in
 * its container). Anything else: null.
 */
export function pyIsoformat(s: string): string | null {
  const m = ISO.exec(s);
  if (!m) return null;
  const frac = m[2] ? (m[2].slice(1) + "000000").slice(0, 6) : "000000";
  let off = m[3] ?? "Z";
  if (off === "Z") off = "+00:00";
  else if (!off.includes(":")) off = `${off.slice(0, 3)}:${off.slice(3)}`;
  return `${m[1]}${frac === "000000" ? "" : "." + frac}${off}`;
}

/** Python's json.dumps(v) text (default separators, ensure_ascii), for dict columns and dict query values. */
export function pyJson(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "NaN";
    if (!Number.isFinite(v)) return v > 0 ? "Infinity" : "-Infinity";
    return Number.isInteger(v) && Math.abs(v) < 1e16 ? String(v) : pyFloat(v);
  }
  if (typeof v === "string") return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  if (Array.isArray(v)) return "[" + v.map(pyJson).join(", ") + "]";
  if (Buffer.isBuffer(v)) return pyJson(v.toString("base64"));
  if (typeof v === "object") {
    return "{" + Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).map(([k, x]) => `${pyJson(k)}: ${pyJson(x)}`).join(", ") + "}";
  }
  return pyJson(String(v));
}

function pyFloat(v: number): string {
  const s = String(v);
  if (/e/.test(s)) return s.replace(/e([+-])(\d)$/, "e$10$2");
  return s.includes(".") ? s : s + ".0";
}

export type SqlValue = string | number | bigint | Buffer | null;

/** A query value as upstream binds it (after extract_dates and sqlite3's adapters). */
export function bindValue(v: unknown): SqlValue {
  if (v === null || v === undefined) return null;
  if (typeof v === "string") return pyIsoformat(v) ?? v;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "number" || typeof v === "bigint" || Buffer.isBuffer(v)) return v;
  if (Array.isArray(v)) throw new PyError("ProgrammingError", "Error binding parameter: type 'list' is not supported");
  return pyJson(datesNormalised(v));
}

/** extract_dates turns ISO strings inside a dict into datetimes, which json_default writes back as isoformat with Z for UTC. */
function datesNormalised(v: unknown): unknown {
  if (typeof v === "string") {
    const iso = pyIsoformat(v);
    return iso ? iso.replace(/\+00:00$/, "Z") : v;
  }
  if (Array.isArray(v)) return v.map(datesNormalised);
  if (v !== null && typeof v === "object" && !Buffer.isBuffer(v)) {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, datesNormalised(x)]));
  }
  return v;
}

const OPERATORS: Record<string, string | [string, string]> = {
  $lt: "<", $gt: ">", $eq: "=", $ne: "!=", $lte: "<=", $gte: ">=", $in: ["=", " OR "], $nin: ["!=", " AND "], $glob: "GLOB",
};
const NULL_OPERATORS: Record<string, string> = { "=": "IS NULL", "!=": "IS NOT NULL" };

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v) && !Buffer.isBuffer(v);

/** The WHERE clause and its arguments for a query, as upstream's _render_expression builds them. */
export function renderQuery(query: unknown, columns: readonly string[] = SQLITE_COLUMNS): { where: string; args: SqlValue[] } {
  if (!isPlainObject(query)) throw new PyError("AttributeError", `${pyTypeName(query)} object has no attribute 'keys'`);
  const cols = new Set<string>(columns);
  const illegal = Object.keys(query).filter((k) => !cols.has(k));
  if (illegal.length) throw keyError(`Illegal testing key(s): {${illegal.map(pyStr).join(", ")}}`);
  const exprs: string[] = [];
  const args: SqlValue[] = [];
  for (const [name, sub] of Object.entries(query)) {
    if (isPlainObject(sub)) {
      for (const [test, value] of Object.entries(sub)) {
        const spec = OPERATORS[test];
        if (spec === undefined) throw keyError(`Unsupported operator: ${pyStr(test)}`);
        const [op, join] = Array.isArray(spec) ? spec : [spec, ""];
        let expr: string;
        if ((value === null || value === undefined) && op in NULL_OPERATORS) {
          expr = `${name} ${NULL_OPERATORS[op]}`;
        } else {
          expr = `${name} ${op} ?`;
          if (Array.isArray(value)) {
            if (op in NULL_OPERATORS && value.some((v) => v === null)) {
              throw new PyError("ValueError", `Cannot use ${pyStr(test)} test with NULL values on SQLite backend`);
            }
            // upstream only expands lists for $in/$nin; for a plain operator it joins with "" (a syntax error unless 1 item)
            expr = `( ${Array.from({ length: value.length }, () => expr).join(join)} )`;
            args.push(...value.map(bindValue));
          } else {
            args.push(bindValue(value));
          }
        }
        exprs.push(expr);
      }
    } else if (sub === null || sub === undefined) {
      exprs.push(`${name} IS NULL`);
    } else {
      exprs.push(`${name} = ?`);
      args.push(bindValue(sub));
    }
  }
  return { where: exprs.join(" AND "), args };
}

function pyTypeName(v: unknown): string {
  if (Array.isArray(v)) return "'list'";
  if (typeof v === "string") return "'str'";
  if (typeof v === "number") return Number.isInteger(v) ? "'int'" : "'float'";
  if (typeof v === "boolean") return "'bool'";
  return "'NoneType'";
}

/** Projection keys as upstream checks them (db_request `keys`): msg_id first, only real columns. */
export function selectKeys(keys: readonly string[] | null | undefined, columns: readonly string[] = SQLITE_COLUMNS): SqliteColumn[] | null {
  if (!keys || keys.length === 0) return null;
  const cols = new Set<string>(columns);
  const bad = keys.filter((k) => !cols.has(k));
  if (bad.length) throw keyError(`Bad record key(s): [${bad.map(pyStr).join(", ")}]`);
  return ["msg_id", ...keys.filter((k) => k !== "msg_id")] as SqliteColumn[];
}
