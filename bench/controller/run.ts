/**
 * Controller benchmark: the same Python client workload (workload.py), the same ipyparallel
 * version and the same 8 MPI engines, against our controller and against upstream `ipcontroller`,
 * in one run on one machine. Prints every figure and the ratio ours/upstream.
 *
 *   npx tsx bench/controller/run.ts [--ipp 9|8] [--engines 8] [--quick] [--only ours|upstream]
 *                                   [--repeat N] [--cpu] [--node-flags="--cpu-prof ..."] [--no-build]
 *                                   [--phases lb,direct,latency,data]
 *
 * Our controller runs as bin/ipp-operator runs it: `npm run build` first, then the compiled CLI from
 * dist/; with --no-build it runs from source through tsx (node --import tsx src/cli.ts).
 *
 * --repeat N runs each controller N times (order alternated) and prints medians. --cpu adds, per
 * phase, the CPU time per task (or per MiB) of the controller tree, the engines, the client and
 * everything else on the machine, and the controller's peak RSS in that phase.
 *
 * Both controllers are started the way ipyparallel's launchers start them (`<cmd> --profile-dir=D
 * --ip=127.0.0.1`), so this also exercises our controller as a drop-in.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT, venvBin, type IppMajor } from "../../test/support/paths.ts";

const { values: opts } = parseArgs({
  options: {
    ipp: { type: "string", default: "9" },
    engines: { type: "string", default: "8" },
    quick: { type: "boolean", default: false },
    // also report CPU time per task / per MiB of controller, engines, client and the rest
    cpu: { type: "boolean", default: false },
    repeat: { type: "string", default: "1" },
    // run only some phases of the workload: lb,direct,latency,data
    phases: { type: "string" },
    // measure our controller run from source through tsx (default: `npm run build` first, run dist/)
    "no-build": { type: "boolean", default: false },
    only: { type: "string" },
    // node flags for our controller (runs node directly instead of bin/ipp-operator), e.g.
    // --node-flags="--cpu-prof --cpu-prof-dir=/tmp/prof"
    "node-flags": { type: "string" },
  },
});
const major = Number(opts.ipp) as IppMajor;
const engines = Number(opts.engines);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const BUILT_CLI = join(REPO_ROOT, "dist/src/cli.js");

/** True when bin/ipp-operator would run the compiled CLI (built, and no source newer than it). */
function builtIsCurrent(): boolean {
  if (!existsSync(BUILT_CLI) || !existsSync(join(REPO_ROOT, "dist/package.json"))) return false;
  const builtAt = statSync(BUILT_CLI).mtimeMs;
  const newer = (dir: string): boolean => readdirSync(dir, { withFileTypes: true }).some((d) =>
    d.isDirectory() ? newer(join(dir, d.name)) : d.name.endsWith(".ts") && statSync(join(dir, d.name)).mtimeMs > builtAt);
  return !newer(join(REPO_ROOT, "src"));
}

/** node arguments that run the CLI: compiled, or from source through tsx. */
const cliEntry = () => (opts["no-build"]
  ? ["--import", join(REPO_ROOT, "node_modules/tsx/dist/loader.mjs"), join(REPO_ROOT, "src/cli.ts")]
  : [BUILT_CLI]);

interface Figures { [name: string]: number }

/** Every descendant of `root` (inclusive), from /proc. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch { /* exited meanwhile */ }
  }
  const out: number[] = [];
  const walk = (pid: number) => { out.push(pid); for (const c of children.get(pid) ?? []) walk(c); };
  walk(root);
  return out;
}

function statusKb(pid: number, field: "VmRSS" | "VmHWM"): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

async function killTree(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null) return;
  const pids = processTree(child.pid);
  for (const pid of pids) { try { process.kill(pid, "SIGTERM"); } catch { /* gone */ } }
  for (let i = 0; i < 50 && pids.some((p) => existsSync(`/proc/${p}`)); i++) await sleep(100);
  for (const pid of pids) { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = ""; let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err.slice(-2000)}`))));
  });
}

async function measure(name: "ours" | "upstream"): Promise<Figures> {
  const profile = mkdtempSync(join(tmpdir(), `ipp-bench-${name}-`));
  const python = venvBin(major, "python");
  const controllerCmd = name === "ours"
    ? (opts["node-flags"] || opts["no-build"]
      ? ["node", ...(opts["node-flags"] ?? "").split(/\s+/).filter(Boolean), ...cliEntry(), "controller"]
      : [join(REPO_ROOT, "bin/ipp-operator"), "controller"])
    : [venvBin(major, "ipcontroller")];
  const started = performance.now();
  const controller = spawn(controllerCmd[0]!, [...controllerCmd.slice(1), `--profile-dir=${profile}`, "--ip=127.0.0.1", "--log-level=WARN"],
    { stdio: ["ignore", "ignore", "pipe"] });
  let controllerErr = "";
  controller.stderr!.on("data", (d) => (controllerErr = (controllerErr + d).slice(-4000)));
  let engineProc: ChildProcess | undefined;
  let peakTreeRssKb = 0;
  const sampler = setInterval(() => {
    if (controller.pid === undefined) return;
    const kb = processTree(controller.pid).reduce((s, p) => s + statusKb(p, "VmRSS"), 0);
    peakTreeRssKb = Math.max(peakTreeRssKb, kb);
  }, 100);
  try {
    const engineFile = join(profile, "security", "ipcontroller-engine.json");
    const clientFile = join(profile, "security", "ipcontroller-client.json");
    for (let i = 0; !existsSync(clientFile) || !existsSync(engineFile); i++) {
      if (controller.exitCode !== null) throw new Error(`${name} controller exited ${controller.exitCode}: ${controllerErr}`);
      if (i > 600) throw new Error(`${name} controller wrote no connection files in 60 s`);
      await sleep(100);
    }
    engineProc = spawn("mpiexec", ["-n", String(engines), "--oversubscribe", "--allow-run-as-root",
      venvBin(major, "ipengine"), "--mpi", `--file=${engineFile}`, "--log-level=WARN"],
      { stdio: ["ignore", "ignore", "ignore"] });
    await run(python, ["-c",
      `import ipyparallel as ipp, sys; rc = ipp.Client(sys.argv[1], timeout=60); rc.wait_for_engines(${engines}, timeout=300); rc.close()`,
      clientFile]);
    const registeredS = (performance.now() - started) / 1000;
    const workload = JSON.parse(await run(python, [join(REPO_ROOT, "bench/controller/workload.py"), clientFile, String(engines),
      ...(opts.quick ? ["--quick"] : []),
      ...(opts.phases ? ["--phases", opts.phases] : []),
      ...(opts.cpu && controller.pid && engineProc.pid ? ["--cpu", `controller=${controller.pid}`, "--cpu", `engines=${engineProc.pid}`] : [])])) as Figures;
    const hwmKb = controller.pid ? processTree(controller.pid).reduce((s, p) => s + statusKb(p, "VmHWM"), 0) : 0;
    return { ...workload, registered_all_s: registeredS, controller_peak_rss_MB: Math.max(peakTreeRssKb, hwmKb) / 1024 };
  } finally {
    clearInterval(sampler);
    if (engineProc) await killTree(engineProc);
    await killTree(controller);
    rmSync(profile, { recursive: true, force: true });
  }
}

const LOWER_IS_BETTER = new Set(["apply_sync_p50_ms", "apply_sync_p99_ms", "registered_all_s", "controller_peak_rss_MB"]);
const TARGETS: Record<string, string> = {
  lb_tasks_per_s: "≥ 2×", direct_tasks_per_s: "≥ 2×", apply_sync_p50_ms: "≤ 0.7×",
  controller_peak_rss_MB: "≤ 100 MB",
};
for (const k of ["scatter", "gather"]) for (const m of [8, 64, 256]) TARGETS[`${k}_${m}MiB_MBps`] = "≥ 1.2×";

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const which = opts.only ? [opts.only as "ours" | "upstream"] : (["ours", "upstream"] as const);
  if (which.includes("ours") && !opts["no-build"]) {
    process.stderr.write("bench: npm run build\n");
    // tsc emits even when it reports type errors (possibly in files that are not ours to measure)
    await run("npm", ["run", "--silent", "build"]).catch((err: Error) => process.stderr.write(`bench: build reported errors: ${err.message.slice(0, 500)}\n`));
    if (!builtIsCurrent()) throw new Error("the build did not produce a current dist/src/cli.js");
  }
  if (which.includes("ours")) {
    process.stderr.write(`bench: our controller runs ${opts["no-build"] ? "from source, through tsx" : "compiled, from dist/"}\n`);
  }
  const runs: Record<"ours" | "upstream", Figures[]> = { ours: [], upstream: [] };
  const repeat = Number(opts.repeat);
  for (let r = 0; r < repeat; r++) {
    // alternate the order so neither controller always runs first
    const order = r % 2 === 0 ? [...which] : [...which].reverse();
    for (const name of order) {
      process.stderr.write(`bench: run ${r + 1}/${repeat}: ${name} controller, ipyparallel ${major}, ${engines} MPI engines, load ${loadavg()[0]!.toFixed(2)}\n`);
      runs[name].push(await measure(name));
    }
  }
  const results: Partial<Record<"ours" | "upstream", Figures>> = {};
  for (const name of which) {
    const keys = Object.keys(runs[name][0] ?? {});
    results[name] = Object.fromEntries(keys.map((k) => [k, median(runs[name].map((f) => f[k] ?? NaN))]));
  }
  const keys = Object.keys(results.ours ?? results.upstream ?? {}).filter((k) => k !== "engines");
  const fmt = (v: number | undefined) => (v === undefined ? "-" : v >= 100 ? v.toFixed(0) : v.toFixed(2));
  if (repeat > 1) console.log(`median of ${repeat} runs (order alternated)`);
  console.log(`figure                       ours      upstream  ours/upstream  target`);
  for (const k of keys) {
    const o = results.ours?.[k]; const u = results.upstream?.[k];
    const ratio = o !== undefined && u !== undefined && u !== 0 ? (o / u).toFixed(2) + "×" : "-";
    console.log(`${k.padEnd(28)} ${fmt(o).padStart(9)} ${fmt(u).padStart(9)}  ${ratio.padStart(12)}  ${TARGETS[k] ?? ""}${LOWER_IS_BETTER.has(k) ? " (lower is better)" : ""}`);
  }
  if (repeat > 1) {
    for (const name of which) console.log(`${name} runs: ${JSON.stringify(runs[name].map((f) => Object.fromEntries(Object.entries(f).filter(([k]) => TARGETS[k] || LOWER_IS_BETTER.has(k)).map(([k, v]) => [k, Number(v.toPrecision(4))]))))}`);
  }
}

await main();
