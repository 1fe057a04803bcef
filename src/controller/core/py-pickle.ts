/**
 * The one pickle shape ipyparallel's SQLiteDB stores: a Python list of bytes (a message's buffers),
 * in the `buffers` and `result_buffers` columns. Reading covers what CPython's pickler writes for
 * such a list at any protocol from 2 with binary bytes (3 and up; 5 is what upstream writes today):
 * framing, memo puts/gets (a buffer repeated in the list is written once and referenced), and
 * the three bytes opcodes. Anything else is refused: a stored blob is data, never code, so no
 * other opcode (globals, reduce, ...) is interpreted.
 */

export class PickleError extends Error {}

const PROTO = 0x80, FRAME = 0x95, STOP = 0x2e, EMPTY_LIST = 0x5d, MARK = 0x28, APPEND = 0x61, APPENDS = 0x65;
const SHORT_BINBYTES = 0x43, BINBYTES = 0x42, BINBYTES8 = 0x8e, BYTEARRAY8 = 0x96;
const MEMOIZE = 0x94, BINPUT = 0x71, LONG_BINPUT = 0x72, BINGET = 0x68, LONG_BINGET = 0x6a;

/** Decode a pickled list of bytes into Buffers (views into `blob`). */
export function unpickleBufferList(blob: Buffer): Buffer[] {
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo: unknown[] = [];
  let i = 0;
  const need = (n: number) => {
    if (i + n > blob.length) throw new PickleError("truncated pickle");
  };
  const u64 = () => {
    need(8);
    const hi = blob.readUInt32LE(i + 4);
    if (hi !== 0) throw new PickleError("pickled buffer too large");
    const v = blob.readUInt32LE(i);
    i += 8;
    return v;
  };
  const bytes = (n: number) => {
    need(n);
    const b = blob.subarray(i, i + n);
    i += n;
    stack.push(b);
  };
  const pop = () => {
    if (stack.length === 0) throw new PickleError("pickle stack underflow");
    return stack.pop();
  };
  const list = (): unknown[] => {
    const l = stack[stack.length - 1];
    if (!Array.isArray(l)) throw new PickleError("append to a non-list");
    return l;
  };
  while (i < blob.length) {
    const op = blob[i++]!;
    switch (op) {
      case PROTO: need(1); if (blob[i++]! < 2) throw new PickleError("pickle protocol < 2"); break;
      case FRAME: u64(); break;
      case EMPTY_LIST: stack.push([]); break;
      case MARK: marks.push(stack.length); break;
      case SHORT_BINBYTES: need(1); bytes(blob[i++]!); break;
      case BINBYTES: need(4); { const n = blob.readUInt32LE(i); i += 4; bytes(n); } break;
      case BINBYTES8: case BYTEARRAY8: bytes(u64()); break;
      case MEMOIZE: memo.push(stack[stack.length - 1]); break;
      case BINPUT: need(1); memo[blob[i++]!] = stack[stack.length - 1]; break;
      case LONG_BINPUT: need(4); memo[blob.readUInt32LE(i)] = stack[stack.length - 1]; i += 4; break;
      case BINGET: need(1); stack.push(memo[blob[i++]!]); break;
      case LONG_BINGET: need(4); stack.push(memo[blob.readUInt32LE(i)]); i += 4; break;
      case APPEND: { const v = pop(); list().push(v); break; }
      case APPENDS: {
        const m = marks.pop();
        if (m === undefined) throw new PickleError("APPENDS without MARK");
        const items = stack.splice(m);
        list().push(...items);
        break;
      }
      case STOP: {
        const v = pop();
        if (!Array.isArray(v) || !v.every((b) => Buffer.isBuffer(b))) throw new PickleError("pickle is not a list of bytes");
        return v as Buffer[];
      }
      default:
        throw new PickleError(`unsupported pickle opcode 0x${op.toString(16)} (only a list of bytes is read)`);
    }
  }
  throw new PickleError("pickle without STOP");
}

/** Encode buffers as CPython's pickle protocol 5 does for a list of bytes (without memo or frames, which are optional). */
export function pickleBufferList(bufs: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.from([PROTO, 5, EMPTY_LIST])];
  if (bufs.length > 1) parts.push(Buffer.from([MARK]));
  for (const b of bufs) {
    let head: Buffer;
    if (b.length < 256) head = Buffer.from([SHORT_BINBYTES, b.length]);
    else if (b.length < 2 ** 32) {
      head = Buffer.alloc(5);
      head[0] = BINBYTES;
      head.writeUInt32LE(b.length, 1);
    } else {
      head = Buffer.alloc(9);
      head[0] = BINBYTES8;
      head.writeBigUInt64LE(BigInt(b.length), 1);
    }
    parts.push(head, b);
  }
  parts.push(Buffer.from(bufs.length > 1 ? [APPENDS, STOP] : bufs.length === 1 ? [APPEND, STOP] : [STOP]));
  return Buffer.concat(parts);
}
