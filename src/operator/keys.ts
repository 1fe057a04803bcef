/**
 * Fresh key material for a new EngineCluster: the HMAC key of its connection files, the JSON
 * API's token (256 random bits), the SSH key pair its MPI workers trust, and (with spec.controller.curve) a CurveZMQ key pair. Each is
 * generated on first read only, since the planner reuses existing Secrets on every later reconcile.
 */
import { generateKeyPairSync, randomUUID } from "node:crypto";
import ssh2 from "ssh2";
import { newApiToken } from "../controller/http/auth.ts";

export interface Generated {
  hmacKey: string;
  apiToken: string;
  sshPrivateKey: string;
  sshPublicKey: string;
  curveSecretKey?: string;
  curvePublicKey?: string;
}

const Z85_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/** ZeroMQ's Z85 encoding (RFC 32/Z85); the input length must be a multiple of 4. */
export function z85Encode(data: Uint8Array): string {
  if (data.length % 4 !== 0) throw new Error("z85: length must be a multiple of 4");
  let out = "";
  for (let i = 0; i < data.length; i += 4) {
    let v = ((data[i]! << 24) >>> 0) + (data[i + 1]! << 16) + (data[i + 2]! << 8) + data[i + 3]!;
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) { chunk.unshift(Z85_CHARS[v % 85]!); v = Math.floor(v / 85); }
    out += chunk.join("");
  }
  return out;
}

/** A CurveZMQ key pair (X25519), both keys Z85-encoded as ZeroMQ expects. */
export function curveKeyPair(): { publicKey: string; secretKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync("x25519");
  const pub = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  const sec = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
  return { publicKey: z85Encode(pub), secretKey: z85Encode(sec) };
}

/** Length of an ssh-ed25519 public key blob: string "ssh-ed25519" then a 32-byte string. */
const ED25519_BLOB_LENGTH = 4 + "ssh-ed25519".length + 4 + 32;

/**
 * An ed25519 SSH key pair in OpenSSH format. ssh2's generator drops a leading zero byte of the
 * public key (about one key in 256), which OpenSSH then refuses to load ("error in libcrypto": a
 * worker's sshd exits with "no hostkeys available"); such a pair is discarded and drawn again.
 */
export function sshKeyPair(generate = () => ssh2.utils.generateKeyPairSync("ed25519")): { private: string; public: string } {
  for (let attempt = 0; attempt < 16; attempt++) {
    const pair = generate();
    const parsed = ssh2.utils.parseKey(pair.private);
    if (!(parsed instanceof Error) && parsed.getPublicSSH().length === ED25519_BLOB_LENGTH) return pair;
  }
  throw new Error("could not generate a well-formed ed25519 SSH key pair");
}

export function lazyGenerated(): Generated {
  let ssh: { private: string; public: string } | undefined;
  let curve: { publicKey: string; secretKey: string } | undefined;
  let hmac: string | undefined;
  let apiToken: string | undefined;
  const sshKeys = () => (ssh ??= sshKeyPair());
  const curveKeys = () => (curve ??= curveKeyPair());
  return {
    get hmacKey() { return (hmac ??= randomUUID()); },
    get apiToken() { return (apiToken ??= newApiToken()); },
    get sshPrivateKey() { return sshKeys().private; },
    get sshPublicKey() { return sshKeys().public; },
    get curveSecretKey() { return curveKeys().secretKey; },
    get curvePublicKey() { return curveKeys().publicKey; },
  };
}
