/**
 * Controller-only relay benchmark: our controller (bin/ipp-operator controller, a child process)
 * between a fake client and fake engines that answer instantly, all ZeroMQ over loopback. Python
 * clients and engines are out of the picture, so this isolates what the controller costs per
 * message: CPU time of the controller process (from /proc) per task, on the mux and task channels
 * (each task: request, reply and two iopub status messages), and mux round-trip latency.
 *
 *   npx tsx bench/controller/relay.ts [--tasks 4000] [--engines 8] [--rounds 3] [--no-build] [--upstream]
 *                                     [--node-flags="--cpu-prof --cpu-prof-dir=/tmp/prof"]
 *
 * --upstream measures upstream ipcontroller (its whole process tree) the same way.
 * Without --no-build the controller runs compiled from dist/ (`npm run build` first), as
 * bin/ipp-operator runs it.
 */
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Dealer, Publisher, Subscriber } from "zeromq";
import { Session, splitFrames, parseHeader, parseJsonFrame, newId } from "../../src/protocol/index.ts";
import { REPO_ROOT, venvBin } from "../../test/support/paths.ts";

const { values: opts } = parseArgs({
  options: {
    tasks: { type: "string", default: "4000" },
    engines: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
    "no-build": { type: "boolean", default: false },
    "node-flags": { type: "string" },
    // extra controller arguments, e.g. --controller-args="--DictDB.record_limit=100"
    "controller-args": { type: "string" },
    // another build's compiled CLI (e.g. an older commit's dist/src/cli.js) to compare against
    entry: { type: "string" },
    // measure upstream ipcontroller (ipyparallel 9 venv) instead of ours
    upstream: { type: "boolean", default: false },
  },
});
const TASKS = Number(opts.tasks);
const ENGINES = Number(opts.engines);
const ROUNDS = Number(opts.rounds);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TICK_MS = 1000 / Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

/** Pids of a process tree (upstream ipcontroller runs its schedulers as child processes). */
function tree(root: number): number[] {
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
function cpuMs(root: number): number {
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
function rssMb(root: number, field: "VmRSS" | "VmHWM"): number {
  let kb = 0;
  for (const pid of tree(root)) {
    try {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      kb += m ? Number(m[1]) : 0;
    } catch { /* gone */ }
  }
  return kb / 1024;
}

interface Info { key: string; interface: string; registration: number; mux: number; task: number; control: number; iopub: number; hb_ping: number; hb_pong: number }

async function main(): Promise<void> {
  if (!opts["no-build"] && !opts.entry && !opts.upstream) execFileSync("npm", ["run", "--silent", "build"], { cwd: REPO_ROOT, stdio: "ignore" });
  const entry = opts.entry ? [opts.entry] : opts["no-build"]
    ? ["--import", join(REPO_ROOT, "node_modules/tsx/dist/loader.mjs"), join(REPO_ROOT, "src/cli.ts")]
    : [join(REPO_ROOT, "dist/src/cli.js")];
  const profile = mkdtempSync(join(tmpdir(), "ipp-relay-"));
  const flags = (opts["node-flags"] ?? "").split(/\s+/).filter(Boolean);
  const cmd = opts.upstream ? [venvBin(9, "ipcontroller")] : ["node", ...flags, ...entry, "controller"];
  const ctl = spawn(cmd[0]!, [...cmd.slice(1), `--profile-dir=${profile}`, "--ip=127.0.0.1", "--log-level=WARN",
    ...(opts["controller-args"] ?? "").split(/\s+/).filter(Boolean)], { stdio: ["ignore", "ignore", "inherit"] });
  const closers: Array<() => void> = [];
  try {
    const sec = join(profile, "security");
    for (let i = 0; !existsSync(join(sec, "ipcontroller-client.json")); i++) {
      if (i > 300) throw new Error("no connection files after 30 s");
      await sleep(100);
    }
    await sleep(200);
    const cInfo = JSON.parse(readFileSync(join(sec, "ipcontroller-client.json"), "utf8")) as Info;
    const eInfo = JSON.parse(readFileSync(join(sec, "ipcontroller-engine.json"), "utf8")) as Info;
    const ep = (port: number) => `${eInfo.interface}:${port}`;
    const session = new Session({ key: cInfo.key, username: "bench" });

    // ---------------------------------------------------------------- fake engines
    const uuids: string[] = [];
    for (let i = 0; i < ENGINES; i++) {
      const uuid = newId();
      uuids.push(uuid);
      const reg = new Dealer({ linger: 0 });
      reg.connect(ep(eInfo.registration));
      await reg.send(session.build("registration_request", { uuid, id: null }));
      const [, ...rest] = await reg.receive();
      void rest;
      const ping = new Subscriber({ linger: 0 });
      ping.subscribe();
      ping.connect(ep(eInfo.hb_ping));
      const pong = new Dealer({ linger: 0, routingId: uuid });
      pong.connect(ep(eInfo.hb_pong));
      void (async () => { for await (const f of ping) await pong.send(f); })().catch(() => {});
      const iopub = new Publisher({ linger: 0, sendHighWaterMark: 0 });
      iopub.connect(ep(eInfo.iopub));
      const serve = (port: number) => {
        const s = new Dealer({ linger: 0, routingId: uuid, sendHighWaterMark: 0, receiveHighWaterMark: 0 });
        s.connect(ep(port));
        void (async () => {
          for await (const frames of s) {
            const raw = splitFrames(frames);
            const parent = parseHeader(raw.header);
            const ids = raw.ids;
            const md = { status: "ok", engine: uuid, started: new Date().toISOString(), dependencies_met: true };
            await iopub.send(session.build("status", { execution_state: "busy" }, { parent, ids: [Buffer.from(`engine.${i}.status`)] }));
            await s.send(session.build("apply_reply", { status: "ok" }, { ids, parent, metadata: md, buffers: [Buffer.from("result")] }));
            await iopub.send(session.build("status", { execution_state: "idle" }, { parent, ids: [Buffer.from(`engine.${i}.status`)] }));
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
    query.connect(ep(cInfo.registration));
    closers.push(() => query.close());
    for (let i = 0; ; i++) {
      await query.send(session.build("connection_request", {}));
      const raw = splitFrames(await query.receive());
      const n = Object.keys((parseJsonFrame(raw.content, "content").engines ?? {}) as object).length;
      if (n === ENGINES) break;
      if (i > 100) throw new Error(`only ${n} engines registered`);
      await sleep(200);
    }

    // ---------------------------------------------------------------- fake client
    const cep = (port: number) => `${cInfo.interface}:${port}`;
    const client = (port: number) => {
      const s = new Dealer({ linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0 });
      s.connect(cep(port));
      closers.push(() => s.close());
      return s;
    };
    const mux = client(cInfo.mux);
    const task = client(cInfo.task);
    const sub = new Subscriber({ linger: 0, receiveHighWaterMark: 0 });
    sub.subscribe();
    sub.connect(cep(cInfo.iopub));
    closers.push(() => sub.close());
    let iopubSeen = 0;
    void (async () => { for await (const _f of sub) iopubSeen++; })().catch(() => {});
    await sleep(300);
    const content = { f: "noop", args: [], kwargs: {} };
    const buffers = [Buffer.alloc(200, 1), Buffer.alloc(40, 2), Buffer.alloc(40, 3)];

    const burst = async (sock: Dealer, direct: boolean) => {
      const cpu0 = cpuMs(ctl.pid!);
      const t0 = performance.now();
      const done = (async () => { let n = 0; for await (const _f of sock) { if (++n === TASKS) break; } })();
      for (let i = 0; i < TASKS; i++) {
        const md = direct ? {} : { after: [], follow: [], timeout: null, targets: [], retries: 0 };
        await sock.send(session.build("apply_request", content, { ids: direct ? [Buffer.from(uuids[i % ENGINES]!)] : [], metadata: md, buffers }));
      }
      await done;
      const wall = performance.now() - t0;
      await sleep(300); // let the controller finish relaying iopub
      return { perS: TASKS / (wall / 1000), cpuMsPerTask: (cpuMs(ctl.pid!) - cpu0) / TASKS };
    };
    const rtt = async () => {
      const lat: number[] = [];
      const cpu0 = cpuMs(ctl.pid!);
      for (let i = 0; i < 500; i++) {
        const t0 = performance.now();
        await mux.send(session.build("apply_request", content, { ids: [Buffer.from(uuids[0]!)], buffers }));
        await mux.receive();
        lat.push(performance.now() - t0);
      }
      lat.sort((a, b) => a - b);
      return { p50: lat[250]!, p99: lat[494]!, cpuMsPerCall: (cpuMs(ctl.pid!) - cpu0) / 500 };
    };

    const rows: Record<string, number[]> = {};
    const put = (k: string, v: number) => (rows[k] ??= []).push(v);
    put("registered_rss_MB", rssMb(ctl.pid!, "VmRSS"));
    for (let r = 0; r < ROUNDS; r++) {
      const m = await burst(mux, true);
      put("mux_tasks_per_s", m.perS); put("mux_cpu_ms_per_task", m.cpuMsPerTask);
      const t = await burst(task, false);
      put("task_tasks_per_s", t.perS); put("task_cpu_ms_per_task", t.cpuMsPerTask);
      const l = await rtt();
      put("rtt_p50_ms", l.p50); put("rtt_p99_ms", l.p99); put("rtt_cpu_ms_per_call", l.cpuMsPerCall);
      put("controller_rss_MB", rssMb(ctl.pid!, "VmRSS"));
      put("controller_peak_rss_MB", rssMb(ctl.pid!, "VmHWM"));
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    console.log(`relay bench: ${TASKS} tasks x ${ROUNDS} rounds, ${ENGINES} fake engines, controller ${opts.upstream ? "upstream ipcontroller (ipyparallel 9)" : opts.entry ?? (opts["no-build"] ? "from source (tsx)" : "compiled (dist/)")}; iopub relayed ${iopubSeen}`);
    for (const [k, v] of Object.entries(rows)) console.log(`${k.padEnd(24)} median ${med(v).toFixed(3).padStart(9)}   runs ${v.map((x) => x.toFixed(3)).join(" ")}`);
  } finally {
    for (const c of closers) c();
    const pids = tree(ctl.pid!);
    for (const pid of pids) { try { process.kill(pid, "SIGTERM"); } catch { /* gone */ } }
    for (let i = 0; i < 50 && pids.some((p) => existsSync(`/proc/${p}`)); i++) await sleep(100);
    for (const pid of pids) { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }
    rmSync(profile, { recursive: true, force: true });
  }
}

await main();
