import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DELIMITER, ProtocolError, Session, splitFrames, joinFrames, isoDate, newId, createSigner,
} from "../../../src/protocol/index.ts";

const b = (s: string) => Buffer.from(s);

test("splitFrames keeps the very Buffers (no copies) and splits at the delimiter", () => {
  const parts = [b("id1"), b("id2"), DELIMITER, b("sig"), b("{}"), b("{}"), b("{}"), b("{}"), b("buf1"), b("buf2")];
  const raw = splitFrames(parts);
  assert.deepEqual(raw.ids.map(String), ["id1", "id2"]);
  assert.equal(raw.signature, parts[3]);
  assert.equal(raw.content, parts[7]);
  assert.equal(raw.buffers[1], parts[9]);
  const out = joinFrames(raw, [b("x")]);
  assert.equal(out.length, 9);
  assert.equal(out[out.length - 1], parts[9]);
});

test("splitFrames rejects messages without delimiter or with too few frames", () => {
  assert.throws(() => splitFrames([b("a"), b("b")]), (e: unknown) => e instanceof ProtocolError && e.code === "truncated");
  assert.throws(() => splitFrames([DELIMITER, b("s"), b("{}"), b("{}"), b("{}")]), (e: unknown) => (e as ProtocolError).code === "truncated");
});

test("Session.build → parse round-trips and signs with HMAC-SHA256", () => {
  const s = new Session({ key: "secret-key" });
  const frames = s.build("queue_request", { targets: null, verbose: false }, { ids: [b("peer")], metadata: { a: 1 }, buffers: [b("xyz")] });
  const msg = s.parse(frames);
  assert.deepEqual(msg.ids.map(String), ["peer"]);
  assert.equal(msg.header.msg_type, "queue_request");
  assert.equal(msg.header.version, "5.4");
  assert.match(msg.header.date, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.deepEqual(msg.content, { targets: null, verbose: false });
  assert.deepEqual(msg.metadata, { a: 1 });
  assert.equal(msg.buffers[0]!.toString(), "xyz");
  assert.match(frames[2]!.toString(), /^[0-9a-f]{64}$/);
});

test("a tampered frame or a different key is rejected as bad_signature", () => {
  const s = new Session({ key: "k1" });
  const frames = s.build("x", { v: 1 });
  const tampered = [...frames];
  tampered[5] = b('{"v":2}');
  assert.throws(() => s.parse(tampered), (e: unknown) => (e as ProtocolError).code === "bad_signature");
  assert.throws(() => new Session({ key: "k2" }).parse(frames), (e: unknown) => (e as ProtocolError).code === "bad_signature");
  const unsigned = [...frames];
  unsigned[1] = Buffer.alloc(0);
  assert.throws(() => s.parse(unsigned), (e: unknown) => (e as ProtocolError).code === "bad_signature");
});

test("buffers are not signed; empty key signs nothing and accepts anything", () => {
  const s = new Session({ key: "k" });
  const frames = s.build("x", {}, { buffers: [b("a")] });
  frames[frames.length - 1] = b("changed");
  assert.doesNotThrow(() => s.parse(frames));
  const open = new Session({ key: "" });
  const f2 = open.build("x", {});
  assert.equal(f2[1]!.length, 0);
  assert.equal(createSigner("").verify(b("junk"), b(""), b(""), b(""), b("")), true);
});

test("non-JSON and non-object frames give bad_json; missing msg_type gives bad_header", () => {
  const s = new Session({ key: "k" });
  const mk = (h: string, c = "{}") => s.serializeParts([], b(h), b("{}"), b("{}"), b(c));
  assert.throws(() => s.parse(mk("not json")), (e: unknown) => (e as ProtocolError).code === "bad_json");
  assert.throws(() => s.parse(mk('{"msg_id":"1","msg_type":"x"}', "[1]")), (e: unknown) => (e as ProtocolError).code === "bad_json");
  assert.throws(() => s.parse(mk('{"msg_id":"1"}')), (e: unknown) => (e as ProtocolError).code === "bad_header");
});

test("isoDate writes microseconds and Z; newId has jupyter_client's shape", () => {
  assert.equal(isoDate(new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)), 9), "2024-01-02T03:04:05.678009Z");
  assert.match(newId(), /^[0-9a-f]{8}-[0-9a-f]{24}$/);
});

test("property: parse never throws anything but ProtocolError on arbitrary frames", () => {
  const s = new Session({ key: "k" });
  fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 9 }), fc.boolean(), (arrs, withDelim) => {
    const frames = arrs.map((a) => Buffer.from(a));
    if (withDelim) frames.splice(Math.min(1, frames.length), 0, DELIMITER);
    try {
      s.parse(frames);
    } catch (e) {
      assert.ok(e instanceof ProtocolError, String(e));
    }
  }));
});

test("verify accepts only the 64-hex-digit digest: truncated, non-hex or another digest is rejected", () => {
  const signer = createSigner("k");
  const parts = [b('{"msg_id":"1","msg_type":"x"}'), b("{}"), b("{}"), b("{}")] as const;
  const sig = signer.sign(...parts);
  assert.equal(sig.length, 64);
  assert.equal(signer.verify(sig, ...parts), true);
  assert.equal(signer.verify(sig.subarray(0, 63), ...parts), false);
  const nonHex = Buffer.from(sig); nonHex[10] = "g".charCodeAt(0);
  assert.equal(signer.verify(nonHex, ...parts), false);
  const other = createSigner("k2").sign(...parts);
  assert.equal(signer.verify(other, ...parts), false);
  // a failed check leaves no state behind: the right signature still verifies
  assert.equal(signer.verify(sig, ...parts), true);
});
