/**
 * Why a multipart message was rejected. The codes are stable: metrics label bad messages by them
 * and callers match on them.
 */
export type BadMessageReason =
  | "truncated" // fewer frames than a Jupyter message needs, or no delimiter
  | "bad_signature" // HMAC mismatch, or unsigned while a key is set
  | "bad_json" // a header/parent/metadata/content frame is not a JSON object
  | "bad_header" // header lacks msg_id/msg_type strings
  | "unknown_msg_type" // a msg_type this channel does not accept
  | "too_large" // over the configured size cap
  | "bad_routing" // routing frames do not name a known peer
  | "replayed"; // a valid signature seen before: a captured message sent again

export const BAD_MESSAGE_REASONS: readonly BadMessageReason[] = [
  "truncated", "bad_signature", "bad_json", "bad_header", "unknown_msg_type", "too_large", "bad_routing", "replayed",
];

export class ProtocolError extends Error {
  readonly code: BadMessageReason;
  constructor(code: BadMessageReason, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}
