/**
 * The engine-facing ROUTERs with real libzmq sockets: a message for an engine whose connection to
 * that socket is not up is held (libzmq would drop it silently) and delivered, in order with what
 * followed it, once the socket's connect notice for the engine arrives; a forgotten engine's held
 * messages are dropped. This is what lets engines re-attach to a restarted controller whose
 * heartbeat connection comes back before the shell connection.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { Router } from "zeromq";
import { allSockets, bindSockets, isConnectNotice, openOutlets } from "../../../src/controller/sockets.ts";
import { readLoop, type Frames } from "../../../src/controller/socket-io.ts";
import { trafficCounters } from "../../../src/controller/traffic.ts";
import { createControllerMetrics } from "../../../src/metrics/controller.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function receiveWithin(sock: Router, ms: number): Promise<Frames | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([sock.receive(), new Promise<undefined>((res) => { timer = setTimeout(() => res(undefined), ms); })]);
  clearTimeout(timer);
  return r;
}

test("engine mux: messages for an engine not connected yet are held, then delivered in order when it connects; a forgotten engine's are dropped", { timeout: 60_000 }, async () => {
  const metrics = createControllerMetrics(new Registry());
  const { sockets, ports } = await bindSockets({ ip: "127.0.0.1", key: "k", heartbeatPeriodMs: 1000, taskScheme: "leastload" }, 1);
  const errors: unknown[] = [];
  const { outlets, close } = openOutlets(sockets, trafficCounters(metrics), () => (err) => errors.push(err), () => () => {},
    (channel) => () => metrics.messagesHeld.labels(channel).inc());
  const notices: string[] = [];
  const replies: Frames[] = [];
  const reader = readLoop(sockets.muxOut, (frames) => {
    if (isConnectNotice(frames)) {
      notices.push(frames[0]!.toString());
      outlets.muxOut.connected(frames[0]!);
    } else replies.push(frames);
  }, (err) => errors.push(err));
  // an engine's shell socket: a ROUTER with the engine's uuid as its routing id, as ipengine's
  const engine = new Router({ routingId: "engine-a", linger: 0 });
  const late = new Router({ routingId: "engine-b", linger: 0 });
  try {
    for (let i = 0; i < 3; i++) outlets.muxOut.send([Buffer.from("engine-a"), Buffer.from(`request ${i}`)]);
    outlets.muxOut.send([Buffer.from("engine-b"), Buffer.from("never delivered")]);
    await sleep(200);
    const held = async () => (await metrics.messagesHeld.get()).values.find((v) => v.labels.channel === "engine_mux")?.value ?? 0;
    assert.equal(await held(), 4, "four messages held: no engine is connected yet");

    engine.connect(`tcp://127.0.0.1:${ports.engine_mux}`);
    const got: string[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await receiveWithin(engine, 10_000);
      assert.ok(m, `held message ${i} delivered after the engine connected (notices: ${notices.join(", ")})`);
      assert.equal(m[0]!.toString(), "mux_out", "from the controller's mux socket");
      got.push(m[1]!.toString());
    }
    assert.deepEqual(got, ["request 0", "request 1", "request 2"], "in the order they were sent");
    assert.ok(notices.includes("engine-a"));

    // connected now: a new message goes straight out, and the engine's reply reaches the reader
    outlets.muxOut.send([Buffer.from("engine-a"), Buffer.from("request 3")]);
    assert.equal((await receiveWithin(engine, 10_000))?.[1]?.toString(), "request 3");
    await engine.send([Buffer.from("mux_out"), Buffer.from("reply")]);
    for (let i = 0; i < 100 && replies.length === 0; i++) await sleep(50);
    assert.deepEqual(replies.map((f) => f.map((b) => b.toString())), [["engine-a", "reply"]]);

    // engine-b is unregistered before it ever connects: nothing waits for it any more
    outlets.muxOut.forget(Buffer.from("engine-b"));
    late.connect(`tcp://127.0.0.1:${ports.engine_mux}`);
    assert.equal(await receiveWithin(late, 1500), undefined, "a forgotten engine's held message is not delivered");
    assert.equal(await held(), 4, "held once each");
    assert.deepEqual(errors, []);
  } finally {
    engine.close();
    late.close();
    close();
    for (const s of allSockets(sockets)) s.close();
    await reader;
  }
});
