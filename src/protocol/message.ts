/**
 * Decoded Jupyter messages and the session that builds, signs, serializes and parses them.
 */
import { randomBytes } from "node:crypto";
import { ProtocolError } from "./errors.ts";
import { DELIMITER, splitFrames, type RawMessage } from "./framing.ts";
import { createSigner, type SignatureScheme, type Signer } from "./sign.ts";

export const PROTOCOL_VERSION = "5.4";

export type JsonObject = Record<string, unknown>;

export interface MessageHeader {
  msg_id: string;
  msg_type: string;
  username: string;
  session: string;
  date: string;
  version: string;
  [extra: string]: unknown;
}

export interface Message<C extends JsonObject = JsonObject> {
  ids: Buffer[];
  header: MessageHeader;
  /** `{}` when the message has no parent. */
  parent: Partial<MessageHeader> & JsonObject;
  metadata: JsonObject;
  content: C;
  buffers: Buffer[];
}

/** Random id in jupyter_client's `new_id()` shape: 8 hex, "-", 24 hex. */
export function newId(): string {
  const b = randomBytes(16).toString("hex");
  return `${b.slice(0, 8)}-${b.slice(8)}`;
}

/** ISO 8601 UTC with microseconds and a trailing Z, as Python's isoformat writes them. */
export function isoDate(d: Date, micros = 0): string {
  const s = d.toISOString(); // 2024-01-02T03:04:05.678Z
  const us = String(((d.getTime() % 1000) + 1000) % 1000 * 1000 + (micros % 1000)).padStart(6, "0");
  return `${s.slice(0, 19)}.${us}Z`;
}

/** Decode one JSON frame that must hold an object. */
export function parseJsonFrame(frame: Buffer, what: string): JsonObject {
  let v: unknown;
  try {
    v = JSON.parse(frame.toString("utf8"));
  } catch {
    throw new ProtocolError("bad_json", `${what} is not JSON`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new ProtocolError("bad_json", `${what} is not a JSON object`);
  }
  return v as JsonObject;
}

export function parseHeader(frame: Buffer): MessageHeader {
  const h = parseJsonFrame(frame, "header");
  if (typeof h.msg_id !== "string" || typeof h.msg_type !== "string") {
    throw new ProtocolError("bad_header", "header lacks msg_id/msg_type");
  }
  return h as MessageHeader;
}

const enc = (v: unknown): Buffer => Buffer.from(JSON.stringify(v), "utf8");

export interface SessionOptions {
  key: string | Buffer;
  signatureScheme?: SignatureScheme;
  username?: string;
  session?: string;
  clock?: () => Date;
}

export interface BuildOptions {
  parent?: Partial<MessageHeader> | JsonObject;
  metadata?: JsonObject;
  buffers?: Buffer[];
  ids?: Buffer[];
  header?: Partial<MessageHeader>;
}

/** Encodes and decodes messages for one signing key. */
export class Session {
  readonly signer: Signer;
  readonly username: string;
  readonly session: string;
  private readonly clock: () => Date;
  private count = 0;
  private readonly prefix: string;

  constructor(opts: SessionOptions) {
    this.signer = createSigner(opts.key, opts.signatureScheme ?? "hmac-sha256");
    this.username = opts.username ?? "ipp-controller";
    this.session = opts.session ?? newId();
    this.clock = opts.clock ?? (() => new Date());
    this.prefix = `${this.session}_${process.pid}_`;
  }

  nextMsgId(): string {
    return this.prefix + String(this.count++);
  }

  header(msgType: string): MessageHeader {
    return {
      msg_id: this.nextMsgId(),
      msg_type: msgType,
      username: this.username,
      session: this.session,
      date: isoDate(this.clock(), this.count),
      version: PROTOCOL_VERSION,
    };
  }

  /** Build and serialize a new message; returns wire frames (routing ids first). */
  build(msgType: string, content: JsonObject, opts: BuildOptions = {}): Buffer[] {
    const header = { ...this.header(msgType), ...(opts.header ?? {}) };
    return this.serializeParts(
      opts.ids ?? [], enc(header), enc(opts.parent ?? {}), enc(opts.metadata ?? {}), enc(content), opts.buffers ?? [],
    );
  }

  /** Serialize already-encoded JSON frames, signing them. */
  serializeParts(ids: readonly Buffer[], header: Buffer, parent: Buffer, metadata: Buffer, content: Buffer, buffers: readonly Buffer[] = []): Buffer[] {
    const sig = this.signer.sign(header, parent, metadata, content);
    return [...ids, DELIMITER, sig, header, parent, metadata, content, ...buffers];
  }

  /** Serialize a decoded message (JSON parts re-encoded and re-signed). */
  serialize(msg: Omit<Message, "ids"> & { ids?: Buffer[] }): Buffer[] {
    return this.serializeParts(msg.ids ?? [], enc(msg.header), enc(msg.parent), enc(msg.metadata), enc(msg.content), msg.buffers);
  }

  /** Check the signature of split frames; throws ProtocolError("bad_signature"). */
  verify(raw: RawMessage): void {
    if (!this.signer.enabled) return;
    if (raw.signature.length === 0) throw new ProtocolError("bad_signature", "unsigned message");
    if (!this.signer.verify(raw.signature, raw.header, raw.parent, raw.metadata, raw.content)) {
      throw new ProtocolError("bad_signature", "signature mismatch");
    }
  }

  /** Split, verify and decode every JSON part. */
  parse(frames: readonly Buffer[]): Message {
    const raw = splitFrames(frames);
    this.verify(raw);
    return decodeRaw(raw);
  }
}

/** Decode the JSON parts of split frames (no signature check). */
export function decodeRaw(raw: RawMessage): Message {
  return {
    ids: raw.ids,
    header: parseHeader(raw.header),
    parent: parseJsonFrame(raw.parent, "parent_header") as Message["parent"],
    metadata: parseJsonFrame(raw.metadata, "metadata"),
    content: parseJsonFrame(raw.content, "content"),
    buffers: raw.buffers,
  };
}

export const encodeJson = enc;
