/**
 * What the controller-only benchmarks (relay.ts, soak.ts) share: our controller (or upstream's) as
 * a child process started as ipyparallel's launchers start it, lightweight fake engines and a fake
 * client that speak the wire protocol over ZeroMQ and answer instantly, and /proc readings of the
 * controller's process tree.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Dealer, Publisher, Subscriber } from "zeromq";
import { Session, splitFrames, parseHeader, parseJsonFrame, newId } from "../../src/protocol/index.ts";
import { REPO_ROOT, venvBin } from "../../test/support/paths.ts";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TICK_MS = 1000 / Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

/** Pids of a process tree (upstream ipcontroller runs its schedulers as child processes). */
export function tree(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(e)]);
    } catch { /* gone */ }
  }
  const out: number[] = [];
  const walk = (p: number) => { out.push(p); for (const c of kids.get(p) ?? []) walk(c); };
  walk(root);
  return out;
}

export function cpuMs(root: number): number {
  let ms = 0;
  for (const pid of tree(root)) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      ms += (Number(f[11]) + Number(f[12])) * TICK_MS;
    } catch { /* gone */ }
  }
  return ms;
}

export function rssMb(root: number, field: "VmRSS" | "VmHWM"): number {
  let kb = 0;
  for (const pid of tree(root)) {
    try {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      kb += m ? Number(m[1]) : 0;
    } catch { /* gone */ }
  }
  return kb / 1024;
}

export interface Info { key: string; interface: string; registration: number; mux: number; task: number; control: number; iopub: number; hb_ping: number; hb_pong: number }

export interface ControllerUnderTest {
  proc: ChildProcess;
  pid: number;
  client: Info;
  engine: Info;
  /** Stop the whole process tree and remove the profile. */
  stop(): Promise<void>;
}

export interface ControllerChoice {
  /** upstream ipcontroller (ipyparallel 9 venv) instead of ours */
  upstream?: boolean;
  /** a compiled CLI (e.g. another build's dist/src/cli.js) */
  entry?: string;
  /** a checkout whose src/cli.ts runs through tsx (e.g. an older commit) */
  source?: string;
  /** run ours from source (tsx) rather than dist/ */
  noBuild?: boolean;
  nodeFlags?: string[];
  args?: string[];
}

/** Start a controller as launchers do (`--profile-dir=D --ip=127.0.0.1`) and read its connection files. */
export async function startControllerUnderTest(c: ControllerChoice): Promise<ControllerUnderTest> {
  if (!c.noBuild && !c.entry && !c.source && !c.upstream) execFileSync("npm", ["run", "--silent", "build"], { cwd: REPO_ROOT, stdio: "ignore" });
  const loader = ["--import", join(REPO_ROOT, "node_modules/tsx/dist/loader.mjs")];
  const entry = c.entry ? [c.entry]
    : c.source ? [...loader, join(c.source, "src/cli.ts")]
    : c.noBuild ? [...loader, join(REPO_ROOT, "src/cli.ts")]
    : [join(REPO_ROOT, "dist/src/cli.js")];
  const profile = mkdtempSync(join(tmpdir(), "ipp-bench-"));
  const cmd = c.upstream ? [venvBin(9, "ipcontroller")] : ["node", ...(c.nodeFlags ?? []), ...entry, "controller"];
  const proc = spawn(cmd[0]!, [...cmd.slice(1), `--profile-dir=${profile}`, "--ip=127.0.0.1", "--log-level=WARN", ...(c.args ?? [])], { stdio: ["ignore", "ignore", "inherit"] });
  const stop = async () => {
    const pids = tree(proc.pid!);
    for (const pid of pids) { try { process.kill(pid, "SIGTERM"); } catch { /* gone */ } }
    for (let i = 0; i < 50 && pids.some((p) => existsSync(`/proc/${p}`)); i++) await sleep(100);
    for (const pid of pids) { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    const sec = join(profile, "security");
    for (let i = 0; !existsSync(join(sec, "ipcontroller-client.json")); i++) {
      if (i > 300) throw new Error("no connection files after 30 s");
      await sleep(100);
    }
    await sleep(200);
    const client = JSON.parse(readFileSync(join(sec, "ipcontroller-client.json"), "utf8")) as Info;
    const engine = JSON.parse(readFileSync(join(sec, "ipcontroller-engine.json"), "utf8")) as Info;
    return { proc, pid: proc.pid!, client, engine, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * `n` fake engines: each registers, answers heartbeats, and answers every mux and task request at
 * once with an apply_reply (a small result buffer) between iopub busy/idle status messages.
 * Resolves when the hub lists them all.
 */
export async function startFakeEngines(session: Session, ctl: ControllerUnderTest, n: number, closers: Array<() => void>): Promise<string[]> {
  const eInfo = ctl.engine;
  const ep = (port: number) => `${eInfo.interface}:${port}`;
  const uuids: string[] = [];
  for (let i = 0; i < n; i++) {
    const uuid = newId();
    uuids.push(uuid);
    const reg = new Dealer({ linger: 0 });
    reg.connect(ep(eInfo.registration));
    await reg.send(session.build("registration_request", { uuid, id: null }));
    await reg.receive();
    const ping = new Subscriber({ linger: 0 });
    ping.subscribe();
    ping.connect(ep(eInfo.hb_ping));
    const pong = new Dealer({ linger: 0, routingId: uuid });
    pong.connect(ep(eInfo.hb_pong));
    void (async () => { for await (const f of ping) await pong.send(f); })().catch(() => {});
    const iopub = new Publisher({ linger: 0, sendHighWaterMark: 0 });
    iopub.connect(ep(eInfo.iopub));
    // the mux and task loops share the iopub socket: zeromq.js allows one pending send per socket
    let iopubTail: Promise<void> = Promise.resolve();
    const publish = (frames: Buffer[]) => (iopubTail = iopubTail.then(() => iopub.send(frames)));
    const serve = (port: number) => {
      const s = new Dealer({ linger: 0, routingId: uuid, sendHighWaterMark: 0, receiveHighWaterMark: 0 });
      s.connect(ep(port));
      void (async () => {
        for await (const frames of s) {
          const raw = splitFrames(frames);
          const parent = parseHeader(raw.header);
          const ids = raw.ids;
          const md = { status: "ok", engine: uuid, started: new Date().toISOString(), dependencies_met: true };
          await publish(session.build("status", { execution_state: "busy" }, { parent, ids: [Buffer.from(`engine.${i}.status`)] }));
          await s.send(session.build("apply_reply", { status: "ok" }, { ids, parent, metadata: md, buffers: [Buffer.from("result")] }));
          await publish(session.build("status", { execution_state: "idle" }, { parent, ids: [Buffer.from(`engine.${i}.status`)] }));
        }
      })().catch(() => {});
      return s;
    };
    const mux = serve(eInfo.mux);
    const task = serve(eInfo.task);
    closers.push(() => { for (const s of [reg, ping, pong, iopub, mux, task]) s.close(); });
  }
  // wait until the hub lists every engine
  const query = new Dealer({ linger: 0 });
  query.connect(`${ctl.client.interface}:${ctl.client.registration}`);
  closers.push(() => query.close());
  for (let i = 0; ; i++) {
    await query.send(session.build("connection_request", {}));
    const raw = splitFrames(await query.receive());
    const got = Object.keys((parseJsonFrame(raw.content, "content").engines ?? {}) as object).length;
    if (got === n) break;
    if (i > 100) throw new Error(`only ${got} engines registered`);
    await sleep(200);
  }
  return uuids;
}

/** A fake client's DEALER on one of the controller's client ports (unlimited queues, as pyzmq's clients set). */
export function clientSocket(ctl: ControllerUnderTest, port: number, closers: Array<() => void>): Dealer {
  const s = new Dealer({ linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0 });
  s.connect(`${ctl.client.interface}:${port}`);
  closers.push(() => s.close());
  return s;
}

/** A tiny apply_request as the benchmarks send it (a function name and three small buffers). */
export const TINY_APPLY = { content: { f: "noop", args: [], kwargs: {} }, buffers: [Buffer.alloc(200, 1), Buffer.alloc(40, 2), Buffer.alloc(40, 3)] };
