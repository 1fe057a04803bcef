/**
 * Scale benchmark: our controller and upstream `ipcontroller` (ipyparallel 9.2) in one run, on the
 * same simulated engines (bench/sim), for N = 256, 1,024 and 4,096 engines. One unmodified Python
 * client (client.py) measures what a user sees. Prints every figure and the ratio ours/upstream.
 *
 *   npx tsx bench/scale/run.ts [--n 256,1024,4096] [--repeat 1] [--only ours|upstream]
 *                              [--map-tasks 100000] [--calls 20] [--cap 600] [--skip stagger,map,...] [--json out.json]
 *                              [--ours-args="--flag ..."] [--node-flags="--cpu-prof ..."] [--no-build]
 *                              [--model auto|full|lean]
 *
 * Per controller, N and repeat (order alternated between repeats; medians printed):
 *  - reg: controller start → all N in the client's rc.ids, every engine registering at once;
 *  - reg_stagger: the same with ipyparallel's MPI stagger (rank × 20 ms for ranks ≥ 100);
 *  - idle_cpu: the controller's process tree's CPU, % of one core, over 10 s with N idle engines;
 *  - rss: the tree's resident memory with N engines (MB; upstream's is the sum of its processes);
 *  - direct / broadcast: rc[:].apply(noop) / coalescing BroadcastView apply(noop) to all N, p50 of --calls (20);
 *  - map: LoadBalancedView.map of --map-tasks no-ops over N engines, tasks/s;
 *  - queue_status: rc.queue_status() round trip, p50 of --calls (20);
 *  - lost: 10 % of the engines (every rank ≡ 5 mod 10), each with a direct and a load-balanced
 *    task that never ends, killed at once: seconds until rc.ids lists none of them; their tasks must
 *    all fail with EngineError, none may hang, and the survivors must still answer.
 * A figure that is not done within --cap seconds (default 600) prints "did not finish" and how far
 * it got.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { descendants, readProcTable } from "../../src/local/proctree.ts";
import { REPO_ROOT, venvBin } from "../../test/support/paths.ts";
import { openFilesLimit, readEngineConnection, startSimCluster, type SimCluster } from "../sim/cluster.ts";

const { values: opts } = parseArgs({
  options: {
    n: { type: "string", default: "256,1024,4096" },
    repeat: { type: "string", default: "1" },
    only: { type: "string" },
    "map-tasks": { type: "string", default: "100000" },
    // calls per p50 figure (queue_status, direct, broadcast)
    calls: { type: "string", default: "20" },
    cap: { type: "string", default: "600" },
    skip: { type: "string", default: "" },
    json: { type: "string" },
    "ours-args": { type: "string", default: "" },
    // keep each controller's stderr (its log) in this directory
    "ctl-log": { type: "string" },
    // node flags for our controller, e.g. --node-flags="--cpu-prof --cpu-prof-dir=/tmp/prof"
    "node-flags": { type: "string", default: "" },
    "no-build": { type: "boolean", default: false },
    // full: every engine connects as ipengine does (8 connections at the controller); lean: 4
    // (bench/sim/engine.ts SharedSockets); auto: lean where full would not fit the descriptor limit
    model: { type: "string", default: "auto" },
  },
});
const sizes = opts.n.split(",").map(Number);
const repeat = Number(opts.repeat);
const capS = Number(opts.cap);
const mapTasks = Number(opts["map-tasks"]);
const calls = Number(opts.calls);
const skip = new Set(opts.skip.split(",").filter(Boolean));
const kinds: Kind[] = opts.only ? [opts.only as Kind] : ["ours", "upstream"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

type Kind = "ours" | "upstream";
/** A figure: its value, or why there is none ("did not finish: 812/4096"). */
type Figure = number | string;
type Figures = Record<string, Figure>;

const CLK_TCK = 100;

/** CPU ticks and resident bytes of a process tree. */
function treeUsage(root: number): { ticks: number; rssBytes: number; pids: number[] } {
  const table = readProcTable();
  const pids = [root, ...descendants(table, root).map((p) => p.pid)];
  let ticks = 0;
  let rss = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]);
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      rss += m ? Number(m[1]) * 1024 : 0;
    } catch { /* exited */ }
  }
  return { ticks, rssBytes: rss, pids };
}

interface Controller { proc: ChildProcess; startedAt: number; dir: string; stop(): Promise<void> }

/** CPU seconds of a set of processes (those gone count as 0). */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]);
    } catch { /* exited */ }
  }
  return ticks / CLK_TCK;
}

async function startController(kind: Kind): Promise<Controller> {
  const dir = mkdtempSync(join(tmpdir(), `ipp-scale-${kind}-`));
  const args = [`--profile-dir=${dir}`, "--ip=127.0.0.1"];
  const extra = kind === "ours" ? opts["ours-args"].split(" ").filter(Boolean) : [];
  // ours as bin/ipp-operator runs it, but always the build made at the start of this run (an edit
  // to src/ meanwhile must not switch later runs to the sources)
  const cmd = kind === "ours" ? process.execPath : venvBin(9, "ipcontroller");
  const nodeFlags = ["--max-semi-space-size=2", "--max-old-space-size=1024", ...opts["node-flags"].split(" ").filter(Boolean)];
  const ourArgs = opts["no-build"]
    ? [...nodeFlags, "--import", join(REPO_ROOT, "node_modules/tsx/dist/loader.mjs"), join(REPO_ROOT, "src/cli.ts")]
    : [...nodeFlags, join(REPO_ROOT, "dist/src/cli.js")];
  const startedAt = Date.now();
  const proc = spawn(cmd, kind === "ours" ? [...ourArgs, "controller", ...args, ...extra] : args, {
    stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, IPYTHONDIR: join(dir, "ipython") }, detached: true,
  });
  let errText = "";
  const logFile = opts["ctl-log"] ? join(opts["ctl-log"], `${kind}-${startedAt}.log`) : undefined;
  proc.stderr!.on("data", (d: Buffer) => {
    errText = (errText + d.toString()).slice(-4000);
    if (logFile) appendFileSync(logFile, d);
  });
  const file = join(dir, "security/ipcontroller-engine.json");
  const deadline = Date.now() + 60_000;
  while (!existsSync(file) || !existsSync(join(dir, "security/ipcontroller-client.json"))) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`${kind} controller did not start:\n${errText}`);
    await sleep(50);
  }
  await sleep(200); // the file is written before the last socket binds in ipcontroller
  return {
    proc, startedAt, dir,
    async stop() {
      const table = readProcTable();
      const pids = [proc.pid!, ...descendants(table, proc.pid!).map((p) => p.pid)];
      for (const pid of pids) { try { process.kill(pid, "SIGTERM"); } catch { /* gone */ } }
      const t = Date.now();
      while (Date.now() - t < 5000 && pids.some((p) => existsSync(`/proc/${p}`) && !readFileSync(`/proc/${p}/stat`, "utf8").includes(") Z"))) await sleep(100);
      for (const pid of pids) { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Python client, one JSON command per line. */
class Client {
  private readonly proc: ChildProcess;
  private readonly pending: Array<(v: Record<string, unknown>) => void> = [];
  private errText = "";
  constructor(dir: string) {
    this.proc = spawn(venvBin(9, "python"), [join(REPO_ROOT, "bench/scale/client.py")], {
      stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, IPYTHONDIR: join(dir, "ipython") },
    });
    createInterface({ input: this.proc.stdout! }).on("line", (l) => {
      try {
        this.pending.shift()?.(JSON.parse(l) as Record<string, unknown>);
      } catch { log(`client: ${l}`); }
    });
    this.proc.stderr!.on("data", (d: Buffer) => { this.errText = (this.errText + d.toString()).slice(-4000); });
    this.proc.on("exit", () => { for (const p of this.pending.splice(0)) p({ error: `client exited: ${this.errText}` }); });
  }
  call(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      this.pending.push(resolve);
      this.proc.stdin!.write(`${JSON.stringify({ op, ...args })}\n`);
    });
  }
  stop(): void {
    try { this.proc.stdin!.end(); } catch { /* gone */ }
    setTimeout(() => this.proc.kill("SIGKILL"), 2000).unref();
  }
}

/** Connections one engine opens to the controller in each model. */
const CONNECTIONS = { full: 8, lean: 4 } as const;
function modelFor(n: number): "full" | "lean" {
  if (opts.model === "full" || opts.model === "lean") return opts.model;
  return CONNECTIONS.full * n + 512 > openFilesLimit() ? "lean" : "full";
}

const dnf = (what: string) => `did not finish (${what})`;

async function startAll(kind: Kind, n: number, stagger: boolean): Promise<{ ctl: Controller; sim: SimCluster; client: Client; reg: Figure; regCpu?: string }> {
  let ctl!: Controller;
  let ctlCpu0 = 0;
  // the simulator's processes load first; the controller starts once they wait for it
  const conn = async () => {
    ctl = await startController(kind);
    ctlCpu0 = treeUsage(ctl.proc.pid!).ticks / CLK_TCK;
    return readEngineConnection(join(ctl.dir, "security/ipcontroller-engine.json"));
  };
  // simulated engines wait 60 s for their registration reply, not ipengine's 5 s: thousands of
  // them share two cores with the controller here, and a starved simulator process would give up
  // on replies that are already in its sockets; the engines that would have given up are counted
  const sim = await startSimCluster({ conn, engines: n, staggerMs: stagger ? 20 : 0, staggerAbove: 100, lean: modelFor(n) === "lean", registrationTimeoutMs: 60_000 });
  const simCpu0 = cpuSeconds(sim.pids());
  const client = new Client(ctl.dir);
  const c = await client.call("connect", { file: join(ctl.dir, "security/ipcontroller-client.json"), timeout: capS });
  if (c.error) log(`${kind} N=${n}: the client could not connect: ${String(c.error)}`);
  else log(`${kind} N=${n}: client connected ${((c.at as number) * 1000 - ctl.startedAt) / 1000} s after the controller started (request sent at ${((c.sent as number) * 1000 - ctl.startedAt) / 1000} s), ${String(c.ids)} engines in its connection reply`);
  const r = await client.call("wait_ids", { n, cap: capS + (stagger ? n * 0.02 : 0) });
  if (Array.isArray(r.progress) && r.progress.length) {
    log(`${kind} N=${n}: engines in rc.ids by second: ${(r.progress as Array<[number, number]>).map(([t, k]) => `${((t * 1000 - ctl.startedAt) / 1000).toFixed(0)}s:${k}`).join(" ")}`);
  }
  const reg: Figure = typeof r.at === "number" ? (r.at * 1000 - ctl.startedAt) / 1000
    : dnf(r.error ? `client: ${String(r.error)}` : `${String(r.ids)}/${n} in rc.ids, ${sim.registered.size} registration replies, ${sim.failed.size} engines gave up`);
  // with --ctl-log, each engine's registration request and reply times too (to line up with the controller's log)
  if (opts["ctl-log"]) writeFileSync(join(opts["ctl-log"], `${kind}-${ctl.startedAt}.sim.json`), JSON.stringify({ startedAt: ctl.startedAt, engines: [...sim.registered.values()] }));
  // where the CPU went between the controller's start (connection files written) and all registered
  const regCpuS = treeUsage(ctl.proc.pid!).ticks / CLK_TCK - ctlCpu0;
  const regCpu = `controller ${regCpuS.toFixed(1)} s (${(regCpuS / n * 1000).toFixed(2)} ms per engine), simulator ${(cpuSeconds(sim.pids()) - simCpu0).toFixed(1)} s, load ${loadavg()[0]!.toFixed(1)}`;
  log(`${kind} N=${n}: CPU until registered: ${regCpu}`);
  const replies = [...sim.registered.values()].map((e) => e.at - ctl.startedAt).sort((a, b) => a - b);
  const slow = [...sim.registered.values()].filter((e) => e.at - e.sentAt > 5000).length;
  if (slow) log(`${kind} N=${n}: ${slow} engines waited more than ipengine's 5 s for their registration reply`);
  if (replies.length) log(`${kind} N=${n}: registration replies from ${(replies[0]! / 1000).toFixed(2)} s to ${(replies[replies.length - 1]! / 1000).toFixed(2)} s after the controller started (sim processes up after ${((sim.startedAt - ctl.startedAt) / 1000).toFixed(2)} s)`);
  if (sim.failed.size) log(`${kind} N=${n}: ${sim.failed.size} simulated engines gave up registering (e.g. ${[...sim.failed.values()][0]})`);
  return { ctl, sim, client, reg, regCpu };
}

async function stopAll(x: { ctl: Controller; sim: SimCluster; client: Client }): Promise<void> {
  x.client.stop();
  await x.sim.stop();
  await x.ctl.stop();
}

const p50OrDnf = (r: Record<string, unknown>): Figure =>
  r.error ? `error: ${String(r.error).slice(0, 200)}` : r.calls === r.of ? (r.p50 as number) : dnf(`${String(r.calls)}/${String(r.of)} calls, p50 ${String(r.p50)}`);

async function measure(kind: Kind, n: number): Promise<Figures> {
  const f: Figures = {};
  log(`${kind} N=${n}: start, all at once`);
  const run = await startAll(kind, n, false);
  f.reg = run.reg;
  if (run.regCpu) f.reg_cpu = run.regCpu;
  log(`${kind} N=${n}: registered ${String(run.reg)}`);
  try {
    if (typeof run.reg === "number") {
      await sleep(3000);
      const a = treeUsage(run.ctl.proc.pid!);
      const t0 = Date.now();
      await sleep(10_000);
      const b = treeUsage(run.ctl.proc.pid!);
      f.idle_cpu = ((b.ticks - a.ticks) / CLK_TCK) / ((Date.now() - t0) / 1000) * 100;
      f.rss = b.rssBytes / 1e6;
      log(`${kind} N=${n}: idle cpu ${f.idle_cpu.toFixed(1)} %, rss ${f.rss.toFixed(0)} MB (${b.pids.length} processes)`);
      // queue_status first: after a coalescing broadcast the client still works through the
      // engines' iopub messages (which it ignores) and a query reply waits behind them
      // the controller's own CPU per call (the client's is most of the rest on this machine)
      const ctlCpu = async (key: string, phase: () => Promise<Record<string, unknown>>, per: (r: Record<string, unknown>) => number) => {
        const before = treeUsage(run.ctl.proc.pid!).ticks;
        const r = await phase();
        const used = (treeUsage(run.ctl.proc.pid!).ticks - before) / CLK_TCK;
        const count = per(r);
        if (count > 0) f[`cpu_${key}`] = used / count;
        return r;
      };
      const callsDone = (r: Record<string, unknown>) => Number(r.calls ?? 0);
      if (!skip.has("queue_status")) f.queue_status = p50OrDnf(await ctlCpu("queue_status", () => run.client.call("queue_status", { count: calls, cap: capS }), callsDone));
      if (!skip.has("direct")) f.direct = p50OrDnf(await ctlCpu("direct", () => run.client.call("direct", { count: calls, cap: capS }), callsDone));
      if (!skip.has("broadcast")) f.broadcast = p50OrDnf(await ctlCpu("broadcast", () => run.client.call("broadcast", { count: calls, cap: capS }), callsDone));
      await sleep(2000);
      log(`${kind} N=${n}: direct ${String(f.direct)}, broadcast ${String(f.broadcast)}, queue_status ${String(f.queue_status)}`);
      if (!skip.has("map")) {
        const m = await ctlCpu("map", () => run.client.call("map", { tasks: mapTasks, cap: capS }), (r) => Number(r.done ?? 0));
        f.map = m.error ? `error: ${String(m.error)}` : m.done === m.tasks ? (m.tasks_per_s as number) : dnf(`${String(m.done)}/${String(m.tasks)} tasks, ${(m.tasks_per_s as number).toFixed(0)} tasks/s`);
        log(`${kind} N=${n}: map ${String(f.map)}`);
      }
      if (!skip.has("lost")) {
        const victims = Array.from({ length: n }, (_, i) => i).filter((i) => i % 10 === 5);
        const prep = await run.client.call("lost_prepare", { victims });
        if (prep.error) f.lost = `error: ${String(prep.error)}`;
        else {
          await run.sim.kill(victims);
          const killedAt = Date.now();
          const r = await run.client.call("lost_wait", { victims, cap: capS });
          if (r.error) f.lost = `error: ${String(r.error)}`;
          else {
            f.lost = typeof r.gone_at === "number" ? (r.gone_at * 1000 - killedAt) / 1000 : dnf(`${String(r.still_listed)} of ${victims.length} still in rc.ids`);
            f.lost_tasks = `${String(r.engine_errors)} EngineError, ${String(r.other)} other, ${String(r.hanging)} hanging of ${2 * victims.length}; ${String(r.survivors)} survivors answer`;
            if (r.engine_errors !== 2 * victims.length) f.lost = dnf(String(f.lost_tasks));
          }
        }
        log(`${kind} N=${n}: lost ${String(f.lost)} (${String(f.lost_tasks)})`);
      }
    }
  } finally {
    await stopAll(run);
  }
  if (!skip.has("stagger")) {
    log(`${kind} N=${n}: start, MPI stagger`);
    const st = await startAll(kind, n, true);
    f.reg_stagger = st.reg;
    log(`${kind} N=${n}: registered with stagger ${String(st.reg)}`);
    await stopAll(st);
  }
  return f;
}

const FIGURES: Array<[string, string]> = [
  ["reg", "all N registered, at once (s)"],
  ["reg_stagger", "all N registered, MPI stagger (s)"],
  ["idle_cpu", "idle CPU, heartbeats (% of a core)"],
  ["rss", "RSS with N engines (MB)"],
  ["direct", "DirectView apply to all, p50 (s/call)"],
  ["broadcast", "BroadcastView to all, p50 (s/call)"],
  ["map", `LB map of ${mapTasks} no-ops (tasks/s)`],
  ["queue_status", "queue_status() p50 (s)"],
  ["lost", "10 % killed: out of rc.ids after (s)"],
  ["cpu_queue_status", "controller CPU per queue_status (s)"],
  ["cpu_direct", "controller CPU per DirectView apply to all (s)"],
  ["cpu_broadcast", "controller CPU per broadcast to all (s)"],
  ["cpu_map", "controller CPU per map task (s)"],
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function summarise(runs: Figure[]): Figure {
  const nums = runs.filter((x): x is number => typeof x === "number");
  if (nums.length === runs.length && nums.length) return median(nums);
  return runs.find((x) => typeof x === "string") ?? "–";
}

const fmt = (x: Figure | undefined) => (x === undefined ? "–" : typeof x === "number" ? (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3)) : x);

async function main(): Promise<void> {
  if (opts["ctl-log"]) mkdirSync(opts["ctl-log"], { recursive: true });
  if (!opts["no-build"] && kinds.includes("ours")) execFileSync("npm", ["run", "build", "--silent"], { cwd: REPO_ROOT, stdio: "inherit" });
  log(`load ${loadavg().map((l) => l.toFixed(1)).join(" ")}; sizes ${sizes.join(", ")} (${sizes.map(modelFor).join(", ")} engine model); repeat ${repeat}; open files limit ${openFilesLimit()}`);
  const all: Record<string, Record<Kind, Figures[]>> = {};
  for (const n of sizes) {
    all[n] = { ours: [], upstream: [] };
    for (let r = 0; r < repeat; r++) {
      const order = r % 2 === 0 ? kinds : [...kinds].reverse();
      for (const kind of order) all[n]![kind].push(await measure(kind, n));
    }
  }
  const out: string[] = [];
  for (const n of sizes) {
    out.push(`\nN = ${n}, ${modelFor(n)} engine model (${repeat} run${repeat > 1 ? "s" : ""}, medians; load now ${loadavg()[0]!.toFixed(1)})`);
    out.push(`| figure | ours | upstream | ours/upstream |`, `|---|---:|---:|---:|`);
    for (const [key, label] of FIGURES) {
      const ours = all[n]!.ours.length ? summarise(all[n]!.ours.map((f) => f[key] ?? "–")) : undefined;
      const up = all[n]!.upstream.length ? summarise(all[n]!.upstream.map((f) => f[key] ?? "–")) : undefined;
      const ratio = typeof ours === "number" && typeof up === "number" && up !== 0 ? `${(ours / up).toFixed(2)}×` : "–";
      out.push(`| ${label} | ${fmt(ours)} | ${fmt(up)} | ${ratio} |`);
    }
    for (const kind of kinds) {
      const lt = all[n]![kind].map((f) => f.lost_tasks).filter(Boolean);
      if (lt.length) out.push(`${kind} lost tasks: ${lt.join(" / ")}`);
      const rc = all[n]![kind].map((f) => f.reg_cpu).filter(Boolean);
      if (rc.length) out.push(`${kind} CPU until registered: ${rc.join(" / ")}`);
    }
  }
  process.stdout.write(`${out.join("\n")}\n`);
  if (opts.json) writeFileSync(opts.json, JSON.stringify(all, null, 2));
}

await main();
