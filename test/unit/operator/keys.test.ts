// The operator's CurveZMQ key pairs: Z85 as RFC 32 defines it, and a public key that really is the
// X25519 public half of the secret key (what libzmq derives when it checks a CURVE handshake).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey } from "node:crypto";
import ssh2 from "ssh2";
import { curveKeyPair, lazyGenerated, sshKeyPair, z85Encode } from "../../../src/operator/keys.ts";

const Z85_ALPHABET = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

function z85Decode(s: string): Buffer {
  const chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  const out = Buffer.alloc((s.length / 5) * 4);
  for (let i = 0; i < s.length; i += 5) {
    let v = 0;
    for (let j = 0; j < 5; j++) v = v * 85 + chars.indexOf(s[i + j]!);
    out.writeUInt32BE(v, (i / 5) * 4);
  }
  return out;
}

test("z85: the RFC 32 test vector", () => {
  assert.equal(z85Encode(Uint8Array.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b])), "HelloWorld");
  assert.throws(() => z85Encode(new Uint8Array(3)));
});

test("curveKeyPair: 40-character Z85 keys; the public key is X25519(secret)", () => {
  const a = curveKeyPair();
  const b = curveKeyPair();
  assert.notEqual(a.secretKey, b.secretKey);
  for (const k of [a.publicKey, a.secretKey]) assert.match(k, Z85_ALPHABET);
  // PKCS#8 wrapping of a raw X25519 private key, so node derives the public half itself
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), z85Decode(a.secretKey)]);
  const derived = createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({ format: "jwk" }).x;
  assert.equal(derived, z85Decode(a.publicKey).toString("base64url"));
  assert.notEqual(derived, z85Decode(b.publicKey).toString("base64url"));
});

test("lazyGenerated: the curve pair is generated once and read consistently", () => {
  const g = lazyGenerated();
  const pub = g.curvePublicKey;
  assert.equal(g.curvePublicKey, pub);
  assert.match(g.curveSecretKey!, Z85_ALPHABET);
});

test("sshKeyPair: a pair whose public key lost its leading zero byte (OpenSSH can't load it) is drawn again", () => {
  const blobLength = (priv: string) => { const k = ssh2.utils.parseKey(priv); return k instanceof Error ? -1 : k.getPublicSSH().length; };
  let malformed: { private: string; public: string } | undefined;
  for (let i = 0; i < 20_000 && !malformed; i++) {
    const pair = ssh2.utils.generateKeyPairSync("ed25519");
    if (blobLength(pair.private) !== 51) malformed = pair;
  }
  assert.ok(malformed, "ssh2 produced a short ed25519 key within 20000 draws");
  const good = ssh2.utils.generateKeyPairSync("ed25519");
  const draws = [malformed, good];
  assert.equal(sshKeyPair(() => draws.shift() ?? assert.fail("drew more than twice")), good);
  assert.equal(blobLength(sshKeyPair().private), 51);
  assert.throws(() => sshKeyPair(() => malformed!), /well-formed ed25519/);
});
