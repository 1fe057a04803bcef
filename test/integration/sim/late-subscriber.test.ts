// A client that subscribes to notifications after its connection reply (as ipyparallel's Client
// does) learns of the engines that registered in between: our controller in-process, simulated
// engines (bench/sim/engine.ts) and a raw zeromq.js client that asks for the engine list, lets 20
// engines register, and only then subscribes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Context, Dealer, Subscriber } from "zeromq";
import { Registry } from "prom-client";
import { startController } from "../../../src/controller/controller.ts";
import { createLogger } from "../../../src/util/log.ts";
import { Session, parseHeader, splitFrames } from "../../../src/protocol/index.ts";
import { SimEngine, type EngineConnection } from "../../../bench/sim/engine.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("engines that register between a client's connection reply and its subscription are announced to it", { timeout: 120_000 }, async () => {
  const key = randomUUID();
  const ctl = await startController(
    { ip: "127.0.0.1", key, heartbeatPeriodMs: 500, taskScheme: "leastload" },
    { logger: createLogger({ level: "error" }), registry: new Registry(), openFilesLimit: null },
  );
  const context = new Context();
  const engines: SimEngine[] = [];
  const client = new Dealer({ linger: 0 });
  const sub = new Subscriber({ linger: 0 });
  try {
    const c = ctl.clientConnection;
    const session = new Session({ key, username: "client" });
    client.connect(`${c.interface}:${c.registration}`);
    await client.send(session.build("connection_request", {}));
    const reply = session.parse(await client.receive());
    assert.deepEqual(reply.content.engines, {}, "no engine yet at the connection reply");

    const conn = ctl.engineConnection as unknown as EngineConnection;
    for (let i = 0; i < 20; i++) {
      const e = new SimEngine({ conn, context, requestedId: i, uuid: randomUUID(), registrationTimeoutMs: 30_000 });
      engines.push(e);
      void e.register();
    }
    const t0 = Date.now();
    while (ctl.engines().length < 20) {
      assert.ok(Date.now() - t0 < 60_000, `only ${ctl.engines().length}/20 engines registered`);
      await sleep(100);
    }

    // the client subscribes only now, as ipyparallel's Client would after a slow reply
    const seen = new Map<number, string>();
    sub.subscribe();
    sub.connect(`${c.interface}:${c.notification}`);
    const reading = (async () => {
      for await (const frames of sub) {
        const raw = splitFrames(frames);
        if (parseHeader(raw.header).msg_type === "registration_notification") {
          const content = JSON.parse(raw.content.toString("utf8")) as { id: number; uuid: string };
          seen.set(content.id, content.uuid);
        }
      }
    })().catch(() => {});
    const t1 = Date.now();
    while (seen.size < 20 && Date.now() - t1 < 10_000) await sleep(100);
    assert.deepEqual([...seen.keys()].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
    for (const e of ctl.engines()) assert.equal(seen.get(e.id), e.uuid);
    sub.close();
    await reading;
  } finally {
    for (const e of engines) e.kill();
    client.close();
    if (!sub.closed) sub.close();
    await ctl.stop();
  }
});
