// ZeroMQ hardening against real parts: `ipp-operator controller` as a child process attacked by raw
// TCP peers that never send a signature (oversize frames), the controller in-process with a
// subscriber that never reads and with replayed messages from raw zeromq.js peers, and real
// ipyparallel 9.2 clients that must keep working throughout.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Dealer, Publisher, Subscriber } from "zeromq";
import { REPO_ROOT } from "../../support/paths.ts";
import { frameHeader, rawPeer, type RawPeer } from "../../support/zmtp.ts";
import { startRig, type Rig } from "./harness.ts";
import { Session, splitFrames, parseHeader } from "../../../src/protocol/index.ts";

const BIN = join(REPO_ROOT, "bin", "ipp-operator");
const MiB = 1 << 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) / 1024;
}

interface Info { interface: string; mux: number; registration: number; iopub: number; key: string }
interface ChildController { proc: ChildProcess; pid: number; info: Info; engineInfo: Info; metrics(): Promise<string>; stop(): Promise<void> }

async function startChildController(args: string[], withHttp = false): Promise<ChildController> {
  const profile = mkdtempSync(join(tmpdir(), "ipp-hardening-"));
  const proc = spawn(BIN, ["controller", `--profile-dir=${profile}`, "--ip=127.0.0.1", "--log-level=WARN", ...args], { stdio: ["ignore", "ignore", withHttp ? "pipe" : "inherit"] });
  // with --metrics-port=0 the port is in the "serving metrics and health over HTTP" log line
  let httpPort = 0;
  let err = "";
  proc.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
    const m = /"msg":"serving metrics and health over HTTP"[^\n]*"port":(\d+)/.exec(err);
    if (m) httpPort = Number(m[1]);
  });
  const file = join(profile, "security", "ipcontroller-client.json");
  const stop = async () => {
    if (proc.exitCode === null) {
      proc.kill("SIGTERM");
      await new Promise<void>((r) => { const t = setTimeout(() => { proc.kill("SIGKILL"); r(); }, 10_000); proc.once("exit", () => { clearTimeout(t); r(); }); });
    }
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    await until("connection files", () => (existsSync(file) && (!withHttp || httpPort > 0)) || proc.exitCode !== null, 60_000);
    if (proc.exitCode !== null) throw new Error(`controller exited with ${proc.exitCode}: ${err.slice(-2000)}`);
    await sleep(300);
    const metrics = async () => (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const engineInfo = JSON.parse(readFileSync(file.replace("-client.json", "-engine.json"), "utf8")) as Info;
    return { proc, pid: proc.pid!, info: JSON.parse(readFileSync(file, "utf8")) as Info, engineInfo, metrics, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Four peers without the key each announce a 1 GiB frame on the mux socket and send 48 MiB of it.
 * Returns the controller's RSS growth in MiB, and how many peers it disconnected.
 */
async function oversizeAttack(c: ChildController): Promise<{ growthMiB: number; disconnected: number }> {
  const host = c.info.interface.replace("tcp://", "");
  await sleep(500);
  const before = rssMiB(c.pid);
  const peers: RawPeer[] = [];
  for (let i = 0; i < 4; i++) peers.push(await rawPeer(host, c.info.mux, "DEALER"));
  let disconnected = 0;
  for (const p of peers) void p.closed.then(() => { disconnected++; });
  const chunk = Buffer.alloc(MiB, 0x61);
  await Promise.all(peers.map(async (p) => {
    try {
      await p.write(frameHeader(2 ** 30));
      for (let i = 0; i < 48; i++) await p.write(chunk);
    } catch { /* disconnected while writing: what the cap is for */ }
  }));
  await sleep(2000);
  const growthMiB = rssMiB(c.pid) - before;
  for (const p of peers) p.sock.destroy();
  return { growthMiB, disconnected };
}

describe("an oversize frame from a peer without the key (ipp-operator controller)", { timeout: 300_000 }, () => {
  test("is refused at its header: RSS stays flat, the peer is disconnected, clients keep working", async () => {
    const capped = await startChildController(["--max-message-size=16Mi"]);
    try {
      const r = await oversizeAttack(capped);
      assert.ok(r.growthMiB < 64, `RSS grew ${r.growthMiB.toFixed(1)} MiB with a 16 MiB cap (4 peers × 48 MiB sent)`);
      assert.equal(r.disconnected, 4, "every attacking peer was disconnected");
      // the controller still answers a key holder
      const d = new Dealer({ linger: 0 });
      d.connect(`${capped.info.interface}:${capped.info.registration}`);
      await d.send(new Session({ key: capped.info.key }).build("connection_request", {}));
      const reply = splitFrames(await d.receive());
      assert.equal(parseHeader(reply.header).msg_type, "connection_reply");
      d.close();
    } finally {
      await capped.stop();
    }
    // control: with a cap above the announced size the same attack is held in memory, so the
    // measurement above can tell the difference
    const uncapped = await startChildController(["--max-message-size=4Gi"]);
    try {
      const r = await oversizeAttack(uncapped);
      assert.ok(r.growthMiB > 120, `without the cap the attack holds memory (grew ${r.growthMiB.toFixed(1)} MiB)`);
      assert.equal(r.disconnected, 0);
    } finally {
      await uncapped.stop();
    }
  });
});

describe("a subscriber that never reads (ipp-operator controller)", { timeout: 300_000 }, () => {
  /** Publish `n` 16 KiB iopub messages as an engine would; the controller's RSS growth (MiB), drops, and what a reading client saw. */
  async function flood(subscriberHwm: number, n: number) {
    const ctl = await startChildController([`--IppOperator.subscriber_hwm=${subscriberHwm}`, "--metrics-port=0", "--log-level=INFO"], true);
    try {
      const c = ctl.info;
      const e = ctl.engineInfo;
      const session = new Session({ key: c.key });
      const stuck = await rawPeer(c.interface.replace("tcp://", ""), c.iopub, "SUB");
      await stuck.write(Buffer.concat([frameHeader(1), Buffer.from([1])])); // subscribe to everything
      stuck.sock.pause(); // and never read again
      const reader = new Subscriber({ linger: 0, receiveHighWaterMark: 0 });
      reader.subscribe();
      reader.connect(`${c.interface}:${c.iopub}`);
      let sawMarker = false;
      void (async () => { for await (const f of reader) { if (f[f.length - 1]!.toString() === "marker") sawMarker = true; } })().catch(() => {});
      const engine = new Publisher({ linger: 0, sendHighWaterMark: 0 });
      engine.connect(`${e.interface}:${e.iopub}`);
      await sleep(1000);
      const before = rssMiB(ctl.pid);
      const text = "x".repeat(16 * 1024);
      for (let i = 0; i < n; i++) {
        await engine.send([Buffer.from("engine.0.stream"), ...session.build("stream", { name: "stdout", text })]);
        if (i % 500 === 0) await sleep(5);
      }
      const metric = async (re: RegExp) => Number(re.exec(await ctl.metrics())?.[1] ?? 0);
      await until("the controller relayed the flood", async () => (await metric(/ipp_controller_messages_total\{channel="iopub",direction="out"\} (\d+)/)) >= n, 120_000);
      await sleep(1000);
      const growthMiB = rssMiB(ctl.pid) - before;
      const dropped = await metric(/ipp_controller_messages_dropped_total\{channel="iopub",reason="hwm"\} (\d+)/);
      // the reading client still gets what is published after the flood
      await engine.send([Buffer.from("engine.0.stream"), ...session.build("stream", { name: "stdout", text: "" }, { buffers: [Buffer.from("marker")] })]);
      await until("the marker after the flood", () => sawMarker, 60_000).catch(() => {});
      const result = { growthMiB, dropped, sawMarker, stuckOpen: !stuck.sock.destroyed };
      stuck.sock.destroy();
      reader.close();
      engine.close();
      return result;
    } finally {
      await ctl.stop();
    }
  }

  test("holds at most its high-water mark for it, counts the drops, and other subscribers still get messages", async () => {
    const bounded = await flood(500, 12_000); // 12,000 × 16 KiB = 188 MiB through the controller
    assert.ok(bounded.dropped > 0, "drops counted in ipp_controller_messages_dropped_total");
    assert.ok(bounded.growthMiB < 64, `RSS grew ${bounded.growthMiB.toFixed(1)} MiB with a 500-message high-water mark`);
    assert.equal(bounded.sawMarker, true, "the reading subscriber got the message published after the flood");
    assert.equal(bounded.stuckOpen, true);
    // control: with an effectively unlimited mark the controller holds the stuck subscriber's backlog
    const unbounded = await flood(2 ** 30, 12_000);
    assert.equal(unbounded.dropped, 0);
    assert.ok(unbounded.growthMiB > bounded.growthMiB + 60, `without the mark RSS grew ${unbounded.growthMiB.toFixed(1)} MiB (bounded: ${bounded.growthMiB.toFixed(1)})`);
  });
});

describe("replayed messages (controller in-process, raw zeromq.js peers)", { timeout: 300_000 }, () => {
  let rig: Rig;
  before(async () => {
    rig = await startRig(9, { shutdownDelayMs: -1 });
  });
  after(async () => {
    await rig?.stop();
  });

  test("a replayed shutdown_request is refused and counted; the controller stays up for a real client", async () => {
    const c = rig.controller.clientConnection;
    let shutdowns = 0;
    rig.controller.on("shutdown-requested", () => { shutdowns++; });
    const notifications: string[] = [];
    const notif = new Subscriber({ linger: 0 });
    notif.subscribe();
    notif.connect(`${c.interface}:${c.notification}`);
    void (async () => { for await (const f of notif) notifications.push(String(parseHeader(splitFrames(f).header).msg_type)); })().catch(() => {});
    const client = new Dealer({ linger: 0 });
    client.connect(`${c.interface}:${c.registration}`);
    await sleep(500);
    const captured = new Session({ key: c.key }).build("shutdown_request", {});
    await client.send(captured);
    assert.equal(parseHeader(splitFrames(await client.receive()).header).msg_type, "shutdown_reply");
    // an eavesdropper sends the same frames again, from another connection
    const attacker = new Dealer({ linger: 0 });
    attacker.connect(`${c.interface}:${c.registration}`);
    await sleep(300);
    await attacker.send(captured);
    await until("the replay counted", () => (rig.controller.badMessageCounts().replayed ?? 0) === 1);
    assert.match(await rig.registry.metrics(), /ipp_controller_bad_messages_total\{channel="registration",reason="replayed"\} 1/);
    await sleep(500);
    assert.equal(shutdowns, 1, "only the original shutdown_request was acted on");
    assert.deepEqual(notifications, ["shutdown_notification"], "one shutdown_notification, for the original");
    client.close();
    attacker.close();
    notif.close();
    const r = await rig.driver("connect_only.py", [], 60_000);
    assert.deepEqual(r, { ids: [] }, "a real ipyparallel client still connects and queries the hub");
  });
});

describe("resubmit and culled records with a real ipyparallel 9.2 client", { timeout: 400_000 }, () => {
  let rig: Rig;
  before(async () => {
    rig = await startRig(9, { dbRecordLimit: 20 });
    await rig.startEngines(2);
    await rig.waitForEngines(2);
  });
  after(async () => {
    await rig?.stop();
  });

  test("rc.resubmit reruns a finished task under a new id; get_result of a culled record fails as upstream", async () => {
    const r = await rig.driver("resubmit_culled.py", ["2", "60"], 300_000);
    assert.deepEqual(r.errors, {});
    assert.deepEqual(r.resubmit, { first: 42, again: [42], new_ids: true }); // resubmit returns an AsyncHubResult over a list of ids
    assert.deepEqual(r.resubmit_unknown, { type: "RemoteError", ename: "KeyError", evalue: "No such msg(s): ['no-such-msg-id']" });
    assert.equal(r.many, 118);
    // the oldest task still counts as completed, but its record is gone: upstream's hub_error KeyError(msg_id)
    assert.deepEqual(r.old_status, { status: "ok", completed: [r.old_id], pending: [] });
    assert.deepEqual(r.old_result, { type: "RemoteError", ename: "KeyError", evalue: `'${String(r.old_id)}'` });
    assert.equal(r.recent_result, 118);
    assert.deepEqual(r.unknown_result, { type: "RemoteError", ename: "KeyError", evalue: "'No such message: no-such-msg-id'" });
    assert.match(await rig.registry.metrics(), /ipp_controller_db_culled_total [1-9]/);
  });
});
