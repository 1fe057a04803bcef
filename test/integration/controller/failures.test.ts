// Engine death, malformed traffic and shutdown, against the real controller sockets with real
// engines and clients.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Dealer, Publisher } from "zeromq";
import { startRig, type Rig } from "./harness.ts";
import { Session, DELIMITER } from "../../../src/protocol/index.ts";
import type { IppMajor } from "../../support/paths.ts";

const N = 8;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("malformed multipart messages on every socket (ipyparallel 9)", { timeout: 300_000 }, () => {
  let rig: Rig;
  before(async () => {
    rig = await startRig(9, { maxMessageBytes: 1 << 20, badMessageLogIntervalMs: 60_000 });
    await rig.startEngines(N);
    await rig.waitForEngines(N);
  });
  after(async () => {
    await rig?.stop();
  });

  test("the controller drops them, counts them by reason, and keeps serving a real client", async () => {
    const c = rig.controller.clientConnection;
    const e = rig.controller.engineConnection;
    const url = (p: number) => `${c.interface}:${p}`;
    const dealers = {
      registration: new Dealer({ linger: 0 }), mux: new Dealer({ linger: 0 }), task: new Dealer({ linger: 0 }),
      control: new Dealer({ linger: 0 }), broadcast: new Dealer({ linger: 0 }),
      engine_mux: new Dealer({ linger: 0, routingId: "fake-engine" }), engine_task: new Dealer({ linger: 0, routingId: "fake-engine" }),
      engine_control: new Dealer({ linger: 0, routingId: "fake-engine" }), hb_pong: new Dealer({ linger: 0, routingId: "fake-heart" }),
      engine_broadcast: new Dealer({ linger: 0, routingId: "fake-engine" }),
    };
    dealers.registration.connect(url(c.registration));
    dealers.mux.connect(url(c.mux));
    dealers.task.connect(url(c.task));
    dealers.control.connect(url(c.control));
    dealers.broadcast.connect(url(c.broadcast));
    dealers.engine_mux.connect(url(e.mux));
    dealers.engine_task.connect(url(e.task));
    dealers.engine_control.connect(url(e.control));
    dealers.hb_pong.connect(url(e.hb_pong));
    dealers.engine_broadcast.connect(url(e.broadcast[0]!));
    const iopub = new Publisher({ linger: 0 });
    iopub.connect(url(e.iopub));
    await sleep(500);

    const good = new Session({ key: c.key });
    const evil = new Session({ key: "not-the-key" });
    const engineUuid = rig.controller.engines()[0]!.uuid;
    const targets = Object.keys(dealers) as (keyof typeof dealers)[];
    const before = rig.controller.badMessageCounts();

    // a deterministic sample of every reason first, then random frames
    const signedGarbageHeader = good.serializeParts([], Buffer.from("{not json"), Buffer.from("{}"), Buffer.from("{}"), Buffer.from("{}"));
    const fixed: Array<[keyof typeof dealers, Buffer[]]> = [
      ["registration", [Buffer.from("just one frame")]],
      ["registration", evil.build("connection_request", {})],
      ["registration", signedGarbageHeader],
      ["registration", good.build("no_such_request", {})],
      ["mux", [Buffer.from(engineUuid), ...evil.build("execute_request", { code: "1" })]],
      ["mux", [Buffer.from("no-such-engine"), ...good.build("execute_request", { code: "1" })]],
      ["task", good.build("apply_request", {}, { metadata: { after: 5, targets: "x" } })],
      ["task", [DELIMITER, Buffer.from("sig")]],
      ["broadcast", good.build("apply_request", {}, { metadata: { targets: [["nobody", 99]], is_coalescing: true } })],
      ["engine_broadcast", good.build("apply_reply", {}, { ids: [Buffer.from("x")] })],
      ["control", [Buffer.from(engineUuid), DELIMITER, Buffer.alloc(64, 0x61), Buffer.from("{}")]],
      ["engine_task", good.build("apply_reply", { status: "ok" }, { ids: [Buffer.from("client")], metadata: { status: "ok" } })],
      ["hb_pong", [Buffer.from("a"), Buffer.from("b"), Buffer.from("c")]],
      // each frame under the 1 MiB cap (a larger frame never becomes a message: libzmq disconnects
      // the peer), the message over it
      ["mux", [Buffer.from(engineUuid), ...good.build("execute_request", { code: "1" }, { buffers: [Buffer.alloc(600 << 10), Buffer.alloc(600 << 10)] })]],
    ];
    for (const [t, frames] of fixed) await dealers[t].send(frames);
    await iopub.send([Buffer.from("engine.0.stream"), ...evil.build("stream", { name: "stdout", text: "spoofed" })]);
    await iopub.send([Buffer.from("engine.0.stream"), DELIMITER]);

    await fc.assert(fc.asyncProperty(
      fc.constantFrom(...targets, "iopub" as const),
      fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 1, maxLength: 8 }),
      fc.boolean(),
      async (target, arrays, withDelimiter) => {
        const frames = arrays.map((a) => Buffer.from(a));
        if (withDelimiter) frames.splice(Math.min(1, frames.length), 0, DELIMITER);
        if (target === "iopub") await iopub.send(frames);
        else await dealers[target].send(frames);
      },
    ), { numRuns: 300 });
    await sleep(1000);

    const afterCounts = rig.controller.badMessageCounts();
    for (const reason of ["truncated", "bad_signature", "bad_json", "unknown_msg_type", "too_large", "bad_routing"]) {
      assert.ok((afterCounts[reason] ?? 0) > (before[reason] ?? 0), `bad messages counted for ${reason}: ${JSON.stringify(afterCounts)}`);
    }
    const metrics = await rig.registry.metrics();
    assert.match(metrics, /ipp_controller_bad_messages_total\{channel="registration",reason="bad_signature"\} [1-9]/);
    assert.match(metrics, /ipp_controller_bad_messages_total\{channel="mux",reason="too_large"\} 1/);
    const warnLines = rig.logs.filter((l) => l.includes("dropped bad message"));
    const totalBad = Object.values(afterCounts).reduce((a, b) => a + b, 0);
    assert.ok(warnLines.length <= 7 && warnLines.length < totalBad, `bad-message logs are rate limited (${warnLines.length} lines for ${totalBad} messages)`);

    for (const d of Object.values(dealers)) d.close();
    iopub.close();
    assert.equal(rig.controller.engines().length, N, "no engine was disturbed");
    const r = await rig.driver("smoke.py", [String(N)]);
    assert.deepEqual(r.ranks, [0, 1, 2, 3, 4, 5, 6, 7]);
  });
});

for (const major of [9, 8] as IppMajor[]) {
  describe(`ipyparallel ${major}: engine death and shutdown`, { timeout: 300_000 }, () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig(major, { maxHeartbeatMisses: 3, heartbeatPeriodMs: 1000, strandedTaskDelayMs: 1000 });
      await rig.startEngines(N);
      await rig.waitForEngines(N);
    });
    after(async () => {
      await rig?.stop();
    });

    test("killed engines: their tasks fail with EngineError, ids drop them, the rest keeps working", async () => {
      const gone: number[] = [];
      rig.controller.on("engine-unregistered", (s) => gone.push(s.id));
      const r = await rig.driver("kill_engine.py", [String(N)], 150_000);
      assert.deepEqual(r.errors, {});
      assert.equal(r.mux, "EngineError");
      assert.equal(r.lb, "EngineError");
      assert.deepEqual(r.ids, [0, 1, 2, 3, 4, 5]);
      assert.deepEqual(r.events, [["unregister", 6], ["unregister", 7]]);
      assert.deepEqual(r.survivors, [1, 1, 1, 1, 1, 1]);
      assert.deepEqual(r.lb_after, [...Array(12).keys()].map((x) => x + 1));
      assert.deepEqual(gone.sort(), [6, 7]);
      assert.deepEqual(rig.controller.engines().map((e) => e.id), [0, 1, 2, 3, 4, 5]);
      const metrics = await rig.registry.metrics();
      // the kernel's and nanny's sockets closed with the process: the heart's disconnect notice, not 10 missed beats;
      // the surviving nanny's unregistration_request comes from a socket of its own, so the heart confirms it too
      assert.match(metrics, /ipp_controller_unregistrations_total\{reason="heart_disconnected"\} 2/);
      assert.doesNotMatch(metrics, /ipp_controller_queue_depth\{engine="7"\}/, "per-engine series removed");
    });

    test("shutdown(hub=True): engines leave, the hub replies and notifies other clients", async () => {
      let requested = false;
      rig.controller.on("shutdown-requested", () => { requested = true; });
      const r = await rig.driver("shutdown.py", ["6"], 90_000);
      assert.equal(r.error, null);
      assert.equal(requested, true);
      assert.deepEqual(r.other_client_notified, [{ msg_type: "shutdown_notification", content: { status: "ok" } }], "the other client got the hub's notification");
      assert.equal(r.other_client_closed, true, "and closed itself, as ipyparallel's client does on it");
      const t0 = Date.now();
      while (rig.controller.engines().length > 0 && Date.now() - t0 < 20_000) await sleep(200);
      assert.equal(rig.controller.engines().length, 0, "every engine unregistered after shutdown");
    });
  });
}
