/**
 * Pure helpers for moving named 1-D arrays between the JSON API and engines: ipyparallel's block
 * partition, dtype encoding, and the apply_request buffers that set or read a variable on an
 * engine without any Python code of ours installed there.
 *
 * apply_request buffers are [f, info, args…] pickles (ipyparallel's pack_apply_message layout).
 * We write them with a handful of pickle opcodes:
 *   scatter: exec("globals()[name] = numpy.frombuffer(b, dtype).copy()", None, {"b": <raw bytes>})
 *   gather:  eval("<expression returning one bytes object: header + data>", None, {})
 * The engine runs `f(*args)` with its user namespace as globals, so `globals()` is the namespace
 * `view['name']` reads. The gather result is always > 1 KiB (the header is padded), so ipyparallel
 * sends it as a raw buffer after a small pickle, and we never have to read a pickle.
 */
export type Dtype = "float64" | "int64";
export const DTYPES: readonly Dtype[] = ["float64", "int64"];
const NUMPY_DTYPE: Record<Dtype, string> = { float64: "<f8", int64: "<i8" };
const FROM_NUMPY: Record<string, Dtype> = { "<f8": "float64", "<i8": "int64" };
export const ITEM_BYTES = 8;

/** [low, high) of part p of q over n items: the first n % q parts take one extra (ipyparallel's scatter). */
export function partition(n: number, p: number, q: number): [number, number] {
  if (!(q >= 1 && p >= 0 && p < q)) throw new RangeError(`need 0 <= p < q, got p=${p} q=${q}`);
  const rem = n % q;
  const base = Math.floor(n / q);
  if (p < rem) {
    const low = p * (base + 1);
    return [low, low + base + 1];
  }
  const low = p * base + rem;
  return [low, low + base];
}

/** Numbers → little-endian bytes. Throws RangeError for values the dtype cannot hold exactly. */
export function encodeArray(values: readonly number[], dtype: Dtype): Buffer {
  const buf = Buffer.allocUnsafe(values.length * ITEM_BYTES);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (dtype === "float64") buf.writeDoubleLE(v, i * 8);
    else {
      if (!Number.isSafeInteger(v)) throw new RangeError(`data[${i}] is not a safe integer for int64`);
      buf.writeBigInt64LE(BigInt(v), i * 8);
    }
  }
  return buf;
}

/**
 * Little-endian bytes → JSON numbers. int64 values beyond ±2^53 cannot be JSON numbers without loss;
 * they are returned as strings so nothing is silently rounded.
 */
export function decodeArray(buf: Buffer, dtype: Dtype): (number | string)[] {
  const n = buf.length / ITEM_BYTES;
  const out: (number | string)[] = new Array(n);
  for (let i = 0; i < n; i++) {
    if (dtype === "float64") out[i] = buf.readDoubleLE(i * 8);
    else {
      const b = buf.readBigInt64LE(i * 8);
      out[i] = b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b.toString();
    }
  }
  return out;
}

/** A Python identifier that is not a keyword: the only names we put into generated code. */
export const PY_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const PY_KEYWORDS = new Set([
  "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
  "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
  "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
]);
export function isPythonName(s: string): boolean {
  return PY_NAME.test(s) && !PY_KEYWORDS.has(s);
}

// ---- a minimal pickle writer (protocol 4 opcodes; every Python ≥ 3.4 reads them) ----
const PROTO4 = Buffer.from([0x80, 0x04]);
const STOP = Buffer.from(".");
const NONE = Buffer.from("N");

function pickleGlobal(module: string, name: string): Buffer {
  return Buffer.from(`c${module}\n${name}\n`, "ascii");
}
function pickleStr(s: string): Buffer {
  const b = Buffer.from(s, "utf8");
  const h = Buffer.alloc(5);
  h[0] = 0x58; // BINUNICODE
  h.writeUInt32LE(b.length, 1);
  return Buffer.concat([h, b]);
}
function pickleInt(n: number): Buffer {
  const h = Buffer.alloc(5);
  h[0] = 0x4a; // BININT (signed 32-bit)
  h.writeInt32LE(n, 1);
  return h;
}
/** BINBYTES8 header; the data follows it (kept a separate Buffer so callers can avoid a copy) */
function bytesHeader(len: number): Buffer {
  const h = Buffer.alloc(9);
  h[0] = 0x8e;
  h.writeBigUInt64LE(BigInt(len), 1);
  return h;
}
const EMPTY_DICT = Buffer.from("}");
const EMPTY_LIST = Buffer.from("]");
const MARK = Buffer.from("(");
const SETITEMS = Buffer.from("u");

function pickled(...parts: Buffer[]): Buffer {
  return Buffer.concat([PROTO4, ...parts, STOP]);
}
/** {str: pickled value part} */
function pickleDict(items: [string, Buffer[]][]): Buffer[] {
  if (items.length === 0) return [EMPTY_DICT];
  return [EMPTY_DICT, MARK, ...items.flatMap(([k, v]) => [pickleStr(k), ...v]), SETITEMS];
}

function applyInfo(nargs: number): Buffer {
  return pickled(...pickleDict([
    ["nargs", [pickleInt(nargs)]],
    ["narg_bufs", [pickleInt(nargs)]],
    ["kw_keys", [EMPTY_LIST]],
  ]));
}

/** apply_request buffers that set `name` on the engine to the 1-D array in `data`. */
export function scatterApplyBuffers(name: string, data: Buffer, dtype: Dtype): Buffer[] {
  if (!isPythonName(name)) throw new RangeError(`not a Python identifier: ${name}`);
  const code = `globals()[${JSON.stringify(name)}] = __import__("numpy").frombuffer(b, dtype="${NUMPY_DTYPE[dtype]}").copy()`;
  return [
    pickled(pickleGlobal("builtins", "exec")),
    applyInfo(3),
    pickled(pickleStr(code)),
    pickled(NONE),
    // the data goes inside the pickle as one bytes object: Buffer.concat copies it once
    pickled(...pickleDict([["b", [bytesHeader(data.length), data]]])),
  ];
}

export const GATHER_MAGIC = "IPPG";
const GATHER_HEADER_PAD = 1100; // > jupyter_client's 1024-byte buffer threshold, so the result is a raw buffer

/** apply_request buffers that return `name` (any array-like, flattened) as header + raw bytes. */
export function gatherApplyBuffers(name: string): Buffer[] {
  if (!isPythonName(name)) throw new RangeError(`not a Python identifier: ${name}`);
  const expr =
    `(lambda a, h: h(a, __import__("json").dumps({"dtype": a.dtype.str, "shape": list(a.shape)}).encode().ljust(${GATHER_HEADER_PAD})))` +
    `(__import__("numpy").ascontiguousarray(${name}), ` +
    `lambda a, j: b"${GATHER_MAGIC}" + len(j).to_bytes(4, "little") + j + a.tobytes())`;
  return [
    pickled(pickleGlobal("builtins", "eval")),
    applyInfo(3),
    pickled(pickleStr(expr)),
    pickled(NONE),
    pickled(EMPTY_DICT),
  ];
}

export interface GatheredPart {
  /** numpy dtype string, e.g. "<f8" */
  numpyDtype: string;
  dtype: Dtype | undefined;
  shape: number[];
  data: Buffer;
}

/** Read the raw result buffer of a gather apply_reply (the last buffer). */
export function parseGatherResult(buffers: readonly Buffer[]): GatheredPart {
  const raw = buffers[buffers.length - 1];
  if (!raw || raw.length < 8 || raw.subarray(0, 4).toString("ascii") !== GATHER_MAGIC) {
    throw new Error("gather reply carries no array payload");
  }
  const hlen = raw.readUInt32LE(4);
  if (8 + hlen > raw.length) throw new Error("gather reply header is truncated");
  const header = JSON.parse(raw.subarray(8, 8 + hlen).toString("utf8")) as { dtype: string; shape: number[] };
  return {
    numpyDtype: header.dtype,
    dtype: FROM_NUMPY[header.dtype],
    shape: header.shape,
    data: raw.subarray(8 + hlen),
  };
}

