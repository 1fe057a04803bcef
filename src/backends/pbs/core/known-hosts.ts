/**
 * known_hosts matching for the login host's key (OpenSSH format): plain and hashed (`|1|salt|hash`)
 * host names, `[host]:port` for ports other than 22, `*`/`?` wildcards, `!` negations and
 * `@revoked` markers. The SSH adapter calls `verifyHostKey` from ssh2's hostVerifier; a host that has
 * no entry, or whose key differs from every entry, is refused — verification is never skipped.
 */
import { createHash, createHmac } from "node:crypto";

export interface KnownHost { marker?: "@revoked" | "@cert-authority"; patterns: string; keyType: string; key: Buffer }

export function parseKnownHosts(text: string): KnownHost[] {
  const out: KnownHost[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const parts = line.split(/\s+/);
    let marker: KnownHost["marker"];
    if (parts[0] === "@revoked" || parts[0] === "@cert-authority") marker = parts.shift() as KnownHost["marker"];
    const [patterns, keyType, b64] = parts;
    if (patterns === undefined || keyType === undefined || b64 === undefined) continue;
    const key = Buffer.from(b64, "base64");
    if (key.length === 0) continue;
    out.push({ ...(marker !== undefined ? { marker } : {}), patterns, keyType, key });
  }
  return out;
}

/** The name known_hosts uses for a host: `host` on port 22, `[host]:port` otherwise. */
export const hostKeyName = (host: string, port: number): string => (port === 22 ? host : `[${host}]:${port}`);

function glob(pattern: string, name: string): boolean {
  const rx = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
  return rx.test(name);
}

function hostMatches(patterns: string, name: string): boolean {
  if (patterns.startsWith("|1|")) {
    const [, , salt, digest] = patterns.split("|");
    if (salt === undefined || digest === undefined) return false;
    return createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64") === digest;
  }
  let hit = false;
  for (const p of patterns.split(",")) {
    if (p.startsWith("!")) { if (glob(p.slice(1), name)) return false; } else if (glob(p, name)) hit = true;
  }
  return hit;
}

/** OpenSSH's fingerprint: `SHA256:` + unpadded base64 of the key blob's SHA-256. */
export const fingerprint = (key: Buffer): string => `SHA256:${createHash("sha256").update(key).digest("base64").replace(/=+$/, "")}`;

export type HostKeyVerdict = { ok: true } | { ok: false; reason: "unknown-host" | "mismatch" | "revoked"; message: string };

export function verifyHostKey(entries: readonly KnownHost[], host: string, port: number, offered: Buffer): HostKeyVerdict {
  const name = hostKeyName(host, port);
  const forHost = entries.filter((e) => e.marker !== "@cert-authority" && hostMatches(e.patterns, name));
  if (forHost.some((e) => e.marker === "@revoked" && e.key.equals(offered))) {
    return { ok: false, reason: "revoked", message: `host key ${fingerprint(offered)} of ${name} is marked @revoked in known_hosts` };
  }
  const plain = forHost.filter((e) => e.marker === undefined);
  if (plain.length === 0) return { ok: false, reason: "unknown-host", message: `${name} has no entry in known_hosts (offered ${fingerprint(offered)}); add the login host's key to the credentials Secret` };
  if (plain.some((e) => e.key.equals(offered))) return { ok: true };
  return {
    ok: false, reason: "mismatch",
    message: `host key mismatch for ${name}: the server offered ${fingerprint(offered)}, known_hosts has ${plain.map((e) => `${e.keyType} ${fingerprint(e.key)}`).join(", ")}`,
  };
}
