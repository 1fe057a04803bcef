/**
 * Malformed, unsigned or oversized messages are dropped, never answered: each drop is counted by
 * channel and reason, and logged at most once per interval per reason so a misbehaving peer
 * cannot flood the log.
 */
import {
  ProtocolError, decodeRaw, parseHeader, parseJsonFrame, splitFrames,
  type BadMessageReason, type JsonObject, type Message, type RawMessage, type Session,
} from "../protocol/index.ts";
import type { ControllerMetrics } from "../metrics/controller.ts";
import type { Logger } from "../util/log.ts";
import type { Frames } from "./socket-io.ts";
import { SignatureHistory } from "./core/signature-history.ts";

export interface BadMessageOptions {
  metrics: ControllerMetrics;
  log: Logger;
  session: Session;
  maxMessageBytes: number;
  logIntervalMs: number;
  /** Signatures remembered for replay detection (jupyter_client's digest_history_size). */
  signatureHistory?: number;
}

// module-level parsers, so a parse-or-drop call allocates no closure per message
const headerOf = (raw: RawMessage): JsonObject => parseHeader(raw.header);
const metadataOf = (raw: RawMessage): JsonObject => parseJsonFrame(raw.metadata, "metadata");

export class BadMessages {
  private readonly counts: Record<string, number> = {};
  private readonly lastLogged = new Map<string, number>();
  private readonly signatures: SignatureHistory;

  constructor(private readonly o: BadMessageOptions) {
    this.signatures = new SignatureHistory(o.signatureHistory);
  }

  /** Count and (rate-limited) log one dropped message. */
  drop(channel: string, reason: BadMessageReason, detail: string): void {
    this.o.metrics.badMessages.labels(channel, reason).inc();
    this.counts[reason] = (this.counts[reason] ?? 0) + 1;
    const now = Date.now();
    if ((this.lastLogged.get(reason) ?? -Infinity) + this.o.logIntervalMs <= now) {
      this.lastLogged.set(reason, now);
      this.o.log.warn("dropped bad message", { channel, reason, detail, droppedSoFar: this.counts[reason] });
    }
  }

  /** Drops so far, by reason. */
  snapshot(): Record<string, number> {
    return { ...this.counts };
  }

  /** Size cap, split, signature and replay check; on failure the message is dropped and null returned. */
  check(channel: string, frames: Frames, bytes: number): RawMessage | null {
    try {
      if (bytes > this.o.maxMessageBytes) throw new ProtocolError("too_large", `message of ${bytes} bytes over the ${this.o.maxMessageBytes} cap`);
      const raw = splitFrames(frames);
      this.o.session.verify(raw);
      // without a key (CurveZMQ only) there is no signature to remember
      if (this.o.session.signer.enabled && !this.signatures.firstSeen(raw.signature)) {
        throw new ProtocolError("replayed", "signature seen before");
      }
      return raw;
    } catch (err) {
      if (err instanceof ProtocolError) this.drop(channel, err.code, err.message);
      else this.drop(channel, "truncated", String(err));
      return null;
    }
  }

  decode(channel: string, raw: RawMessage): Message | null {
    return this.parse(channel, raw, decodeRaw);
  }

  header(channel: string, raw: RawMessage): JsonObject | null {
    return this.parse(channel, raw, headerOf);
  }

  metadata(channel: string, raw: RawMessage): JsonObject | null {
    return this.parse(channel, raw, metadataOf);
  }

  private parse<T>(channel: string, raw: RawMessage, parse: (raw: RawMessage) => T): T | null {
    try {
      return parse(raw);
    } catch (err) {
      this.drop(channel, err instanceof ProtocolError ? err.code : "bad_json", String(err));
      return null;
    }
  }
}
