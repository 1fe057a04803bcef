/**
 * Replay protection as jupyter_client's Session has it (`digest_history`): the signatures of the
 * most recent valid messages are remembered, and a message whose signature was seen before is a
 * replay. Every signed message carries a unique header (msg_id, session, date), so a legitimate
 * peer never repeats a signature. jupyter_client keeps 2**16 and culls a random 10 % when full;
 * here the oldest signature is forgotten, so the newest ones (what a replay would reuse soonest)
 * are always remembered. Only signatures that verified are added: a forged message cannot push
 * real ones out.
 */
import { RecentSet } from "./recent.ts";

/** jupyter_client's Session.digest_history_size default. */
export const DEFAULT_SIGNATURE_HISTORY = 2 ** 16;

export class SignatureHistory {
  private readonly seen: RecentSet<string>;

  constructor(capacity = DEFAULT_SIGNATURE_HISTORY) {
    this.seen = new RecentSet(capacity);
  }

  get size(): number {
    return this.seen.size;
  }

  /** Remember a verified signature; false if it was seen before (a replay). */
  firstSeen(signature: Buffer): boolean {
    // latin1 keeps the 64 hex digits as a one-byte string without decoding
    return this.seen.add(signature.toString("latin1"));
  }
}
