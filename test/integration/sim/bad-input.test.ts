// Registration under bad input, with simulated engines against our controller: engines that ask
// for an id already taken, engines that die during registration, engines that flap, and a burst of
// registrations while other engines are live. Each is handled as ipyparallel's hub handles it,
// counted in the metrics, and the engine list a client sees stays exact.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { Dealer } from "zeromq";
import { startRig, type Rig } from "../controller/harness.ts";
import { readEngineConnection, startSimCluster, type SimCluster } from "../../../bench/sim/cluster.ts";
import { Session } from "../../../src/protocol/index.ts";
import { python } from "../../support/paths.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function metric(rig: Rig, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await rig.registry.getSingleMetric(name)?.get();
  let total = 0;
  for (const v of m?.values ?? []) {
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) total += v.value;
  }
  return total;
}

async function until(what: string, f: () => boolean | Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** rc.ids as an ipyparallel 9.2 client sees them (once it sees `n` engines). */
function clientIds(rig: Rig, n: number): Promise<number[]> {
  const code = "import ipyparallel as ipp, json, sys; rc = ipp.Client(sys.argv[1]); rc.wait_for_engines(int(sys.argv[2]), timeout=120); print(json.dumps(rc.ids))";
  return new Promise((resolve, reject) => {
    execFile(python(9), ["-c", code, rig.clientFile, String(n)], { timeout: 180_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${String(err)}\n${stderr.slice(-3000)}`));
      resolve(JSON.parse(stdout.trim()) as number[]);
    });
  });
}

const ids = (rig: Rig) => rig.controller.engines().map((e) => e.id);
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe("registration under bad input (simulated engines)", { timeout: 900_000 }, () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });
  const sim = async (rig: Rig, engines: number, extra: Partial<Parameters<typeof startSimCluster>[0]> = {}): Promise<SimCluster> => {
    const s = await startSimCluster({ conn: readEngineConnection(rig.engineFile), engines, registrationTimeoutMs: 60_000, ...extra });
    cleanup.push(() => s.stop());
    return s;
  };

  test("two engines asking for the same id: the second gets the next free id, as the hub gives it", async () => {
    const rig = await startRig(9);
    cleanup.push(() => rig.stop());
    const first = await sim(rig, 8);
    await first.waitRegistered(8, 120_000);
    const second = await sim(rig, 8); // ranks 0..7 again
    await second.waitRegistered(8, 120_000);
    await rig.waitForEngines(16);
    assert.deepEqual([...first.registered.values()].map((e) => e.id).sort((a, b) => a - b), range(0, 8));
    assert.deepEqual([...second.registered.values()].map((e) => e.id).sort((a, b) => a - b), range(8, 16));
    assert.deepEqual(ids(rig), range(0, 16));
    assert.deepEqual(await clientIds(rig, 16), range(0, 16));
    assert.equal(await metric(rig, "ipp_controller_registrations_total", { result: "ok" }), 16);

    // the same uuid twice is refused (KeyError "uuid ... in use"), counted, and changes nothing
    const uuid = second.registered.get(0)!.uuid;
    const d = new Dealer({ linger: 0 });
    d.connect(`tcp://127.0.0.1:${readEngineConnection(rig.engineFile).registration}`);
    const s = new Session({ key: rig.controller.engineConnection.key, session: uuid });
    await d.send(s.build("registration_request", { uuid, id: 3 }));
    const reply = s.parse(await d.receive());
    d.close();
    assert.equal(reply.content.status, "error");
    assert.equal(reply.content.ename, "KeyError");
    assert.equal(await metric(rig, "ipp_controller_registrations_total", { result: "error" }), 1);
    assert.deepEqual(ids(rig), range(0, 16));
  });

  test("an engine that dies during registration is purged after the registration timeout and never listed", async () => {
    const rig = await startRig(9, { registrationTimeoutMs: 2000 });
    cleanup.push(() => rig.stop());
    const live = await sim(rig, 4);
    await live.waitRegistered(4, 120_000);
    await rig.waitForEngines(4);
    // registration_request sent, then gone before its heart ever beats
    const conn = readEngineConnection(rig.engineFile);
    for (let i = 0; i < 3; i++) {
      const uuid = `dying-${i}`;
      const d = new Dealer({ linger: 0, routingId: uuid });
      d.connect(`tcp://127.0.0.1:${conn.registration}`);
      const s = new Session({ key: conn.key, session: uuid });
      await d.send(s.build("registration_request", { uuid, id: 100 + i }));
      assert.equal(s.parse(await d.receive()).content.status, "ok");
      d.close();
    }
    await until("the stalled registrations to be purged", async () => (await metric(rig, "ipp_controller_registrations_total", { result: "stalled" })) === 3);
    assert.deepEqual(ids(rig), range(0, 4));
    assert.deepEqual(await clientIds(rig, 4), range(0, 4));
    // the next engine that asks for no id gets the one after theirs, as upstream's id counter gives it
    const next = await sim(rig, 1, { requestRank: false });
    await next.waitRegistered(1, 120_000);
    assert.equal(next.registered.get(0)!.id, 103, "the hub's id counter moved past the requested ids, as upstream's does");
  });

  test("flapping engines: killed and restarted with the same rank again and again; rc.ids stays exact", async () => {
    const rig = await startRig(9);
    cleanup.push(() => rig.stop());
    const stable = await sim(rig, 8);
    await stable.waitRegistered(8, 120_000);
    await rig.waitForEngines(8);
    const listed = (uuid: string) => rig.controller.engines().some((e) => e.uuid === uuid);
    for (let round = 0; round < 4; round++) {
      // a second job on the same ranks (their ids are taken: it gets fresh ones); two of its engines die
      const flap = await sim(rig, 6);
      await flap.waitRegistered(6, 120_000);
      await until("the flapping engines to be listed", () => rig.controller.engines().length === 14);
      const killed = [2, 5].map((r) => flap.registered.get(r)!.uuid);
      await flap.kill([2, 5]);
      await until("the killed engines to be unregistered", () => !killed.some(listed), 60_000);
      assert.equal(rig.controller.engines().length, 12);
      await flap.stop();
      await until("the rest of the job to go", () => rig.controller.engines().length === 8, 60_000);
    }
    assert.deepEqual(ids(rig), range(0, 8), "only the stable engines remain, under the ids they asked for");
    assert.deepEqual(await clientIds(rig, 8), range(0, 8));
    assert.ok(await metric(rig, "ipp_controller_unregistrations_total", { reason: "heart_disconnected" }) >= 8);
  });

  test("a burst of 1,024 registrations: no live engine misses a heartbeat or is declared dead", async () => {
    // a pong counts while it answers the current or the previous ping: a 5 s period leaves the
    // simulator processes (starved on a busy machine) up to 10 s to answer
    const rig = await startRig(9, { heartbeatPeriodMs: 5000, maxHeartbeatMisses: 10 });
    cleanup.push(() => rig.stop());
    const live = await sim(rig, 64);
    await live.waitRegistered(64, 120_000);
    await rig.waitForEngines(64);
    const liveUuids = new Set([...live.registered.values()].map((e) => e.uuid));
    let lost = 0;
    rig.controller.on("engine-unregistered", () => { lost++; });
    const burst = await sim(rig, 1024, { requestRank: false });
    await burst.waitRegistered(1024, 300_000);
    await rig.waitForEngines(64 + 1024, 300_000);
    await sleep(10_500); // two more beats after the burst
    assert.equal(lost, 0, "no engine was unregistered");
    const live64 = rig.controller.engines().filter((e) => liveUuids.has(e.uuid));
    assert.equal(live64.length, 64);
    assert.ok(live64.every((e) => e.alive && e.missedBeats === 0));
    let misses = 0;
    for (const e of live64) misses += await metric(rig, "ipp_controller_heartbeat_misses_total", { engine: String(e.id) });
    assert.equal(misses, 0, "no live engine missed a heartbeat");
    assert.equal(await metric(rig, "ipp_controller_registrations_total", { result: "ok" }), 64 + 1024);
    const fromClient = await clientIds(rig, 64 + 1024);
    assert.deepEqual(fromClient, range(0, 64 + 1024));
  });
});
