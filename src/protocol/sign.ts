/**
 * HMAC signing of the four JSON frames (header, parent, metadata, content); buffers are not signed.
 * An empty key means no authentication: the signature is empty and never checked (CurveZMQ mode).
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export type SignatureScheme = "hmac-sha256";

export interface Signer {
  readonly enabled: boolean;
  /** Lowercase hex digest as ASCII bytes (empty when no key). */
  sign(header: Buffer, parent: Buffer, metadata: Buffer, content: Buffer): Buffer;
  /** True when `signature` matches; always true without a key. */
  verify(signature: Buffer, header: Buffer, parent: Buffer, metadata: Buffer, content: Buffer): boolean;
}

const EMPTY = Buffer.alloc(0);

export function createSigner(key: string | Buffer, scheme: SignatureScheme = "hmac-sha256"): Signer {
  if (scheme !== "hmac-sha256") throw new Error(`unsupported signature scheme ${String(scheme)}`);
  const keyBuf = typeof key === "string" ? Buffer.from(key, "utf8") : key;
  if (keyBuf.length === 0) {
    return { enabled: false, sign: () => EMPTY, verify: () => true };
  }
  const scratch = Buffer.alloc(32);
  const digest = (h: Buffer, p: Buffer, m: Buffer, c: Buffer): Buffer => {
    const mac = createHmac("sha256", keyBuf);
    mac.update(h); mac.update(p); mac.update(m); mac.update(c);
    return mac.digest();
  };
  return {
    enabled: true,
    sign: (h, p, m, c) => Buffer.from(digest(h, p, m, c).toString("hex"), "ascii"),
    verify: (sig, h, p, m, c) => {
      if (sig.length !== 64) return false;
      const expected = digest(h, p, m, c);
      // decode the hex signature into a scratch buffer (write stops at the first non-hex pair)
      if (scratch.write(sig.toString("latin1"), 0, 32, "hex") !== 32) return false;
      return timingSafeEqual(scratch, expected);
    },
  };
}
