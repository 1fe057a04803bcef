/**
 * Jupyter wire-protocol framing (version 5.x, as ipyparallel uses it):
 *
 *   [routing ids…] "<IDS|MSG>" signature header parent_header metadata content [buffers…]
 *
 * Splitting never copies: every part is the very Buffer the socket produced, so a relay can put the
 * same parts on another socket with only the routing frames changed.
 */
import { ProtocolError } from "./errors.ts";

export const DELIMITER = Buffer.from("<IDS|MSG>", "ascii");
const DELIM_LEN = DELIMITER.length;

/** A message split at the delimiter; nothing decoded. */
export interface RawMessage {
  ids: Buffer[];
  signature: Buffer;
  header: Buffer;
  parent: Buffer;
  metadata: Buffer;
  content: Buffer;
  buffers: Buffer[];
}

export function isDelimiter(frame: Buffer): boolean {
  return frame.length === DELIM_LEN && frame.equals(DELIMITER);
}

/** Index of the delimiter frame, or -1. */
export function delimiterIndex(frames: readonly Buffer[]): number {
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i]!;
    if (f.length === DELIM_LEN && f.equals(DELIMITER)) return i;
  }
  return -1;
}

/** Split a multipart message; throws ProtocolError("truncated") when it is not a full message. */
export function splitFrames(frames: readonly Buffer[]): RawMessage {
  const d = delimiterIndex(frames);
  if (d < 0) throw new ProtocolError("truncated", "no <IDS|MSG> delimiter");
  if (frames.length < d + 6) throw new ProtocolError("truncated", "fewer than 5 frames after the delimiter");
  return {
    ids: frames.slice(0, d) as Buffer[],
    signature: frames[d + 1]!,
    header: frames[d + 2]!,
    parent: frames[d + 3]!,
    metadata: frames[d + 4]!,
    content: frames[d + 5]!,
    buffers: frames.slice(d + 6) as Buffer[],
  };
}

/** The frames of a RawMessage in wire order, with the given routing ids. */
export function joinFrames(raw: RawMessage, ids: readonly Buffer[] = raw.ids): Buffer[] {
  return [...ids, DELIMITER, raw.signature, raw.header, raw.parent, raw.metadata, raw.content, ...raw.buffers];
}

/** Total bytes in a multipart message. */
export function frameBytes(frames: readonly Buffer[]): number {
  let n = 0;
  for (const f of frames) n += f.length;
  return n;
}
