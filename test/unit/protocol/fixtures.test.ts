// Framing and signatures checked against traffic recorded from real ipyparallel 9.2 and 8.8
// (test/python/record_fixtures.py: upstream ipcontroller + a real ipengine).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../support/paths.ts";
import { Session, splitFrames, ProtocolError } from "../../../src/protocol/index.ts";

interface Fixture {
  ipyparallel: string;
  key: string;
  client_json: Record<string, unknown>;
  engine_json: Record<string, unknown>;
  exchanges: Record<string, { request: string[]; reply: string[] }>;
  hb_ping: string[];
  engine_registration_request: string[];
}

const frames = (b64: string[]) => b64.map((s) => Buffer.from(s, "base64"));

for (const major of [9, 8]) {
  const fx = JSON.parse(readFileSync(join(REPO_ROOT, "test/fixtures", `ipp${major}-frames.json`), "utf8")) as Fixture;

  test(`ipp${major}: every recorded request and reply verifies and parses with the connection key`, () => {
    const s = new Session({ key: fx.key });
    for (const [type, ex] of Object.entries(fx.exchanges)) {
      const req = s.parse(frames(ex.request));
      assert.equal(req.header.msg_type, type);
      const rep = s.parse(frames(ex.reply));
      assert.equal(rep.parent.msg_id, req.header.msg_id, `${type} reply's parent is the request`);
      assert.deepEqual(rep.ids, [], "a DEALER sees no routing frames");
    }
    const conn = s.parse(frames(fx.exchanges.connection_request!.reply));
    assert.equal(conn.header.msg_type, "connection_reply");
    assert.deepEqual(conn.content, { status: "ok", engines: {} });
    const err = s.parse(frames(fx.exchanges.bogus_request!.reply));
    assert.equal(err.header.msg_type, "hub_error");
    assert.equal(err.content.ename, "KeyError");
  });

  test(`ipp${major}: our signatures equal upstream's for the same bytes`, () => {
    const s = new Session({ key: fx.key });
    const raw = splitFrames(frames(fx.exchanges.queue_request!.reply));
    const ours = s.serializeParts([], raw.header, raw.parent, raw.metadata, raw.content);
    assert.equal(ours[1]!.toString(), raw.signature.toString());
  });

  test(`ipp${major}: a real engine's registration_request carries its uuid as routing id`, () => {
    const s = new Session({ key: fx.key });
    const msg = s.parse(frames(fx.engine_registration_request));
    assert.equal(msg.header.msg_type, "registration_request");
    assert.equal(msg.ids.length, 1);
    assert.equal(msg.ids[0]!.toString(), msg.content.uuid);
    assert.equal(msg.header.session, msg.content.uuid);
  });

  test(`ipp${major}: a flipped byte in a recorded message fails as bad_signature`, () => {
    const f = frames(fx.exchanges.connection_request!.reply);
    f[5] = Buffer.from('{"status": "ok", "engines": {"0": "x"}}');
    assert.throws(() => new Session({ key: fx.key }).parse(f), (e: unknown) => e instanceof ProtocolError && e.code === "bad_signature");
  });

  test(`ipp${major}: heartbeat ping is one frame of decimal seconds`, () => {
    assert.equal(fx.hb_ping.length, 1);
    assert.match(frames(fx.hb_ping)[0]!.toString(), /^\d+\.\d+$/);
  });
}
