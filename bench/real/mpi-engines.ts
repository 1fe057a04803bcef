/**
 * Real engines through our controller: `bin/ipp-operator local --engines N` (the controller
 * in-process, N `ipengine --mpi` under `mpiexec --oversubscribe`), then the seed notebook's flow
 * (test/python/workflow.py: MPI size, scatter np.arange(32.), psum by MPI Allreduce on every engine).
 *
 *   npx tsx bench/real/mpi-engines.ts --engines 128 --no-stagger [--python PY] [--timeout 900]
 *
 * --no-stagger writes `c.IPEngine.mpi_registration_delay = 0` into the profile's
 * ipengine_config.py (IPYTHONDIR is a fresh directory), so every rank registers at once instead of
 * rank × 20 ms after start-up (for ranks from 100); --engine-timeout S sets `c.IPEngine.timeout`
 * (how long an engine waits for its registration reply before giving up; 5 s by default). Prints
 * one JSON object: seconds from start until half, 90 % and all registered, stalled (purged),
 * late-completed and engine-cancelled registrations, the controller's registration counters, the
 * psum on every engine, and `uptime` at the start, when all registered (or the give-up) and at the
 * end. --keep keeps the directory with local's log. Run heavy benches one at a time
 * (the machine has 2 cores): `flock /tmp/heavy.lock npx tsx bench/real/mpi-engines.ts ...`.
 */
import { spawn, execFile, execFileSync } from "node:child_process";
import { createWriteStream, mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT, python as venvPython } from "../../test/support/paths.ts";

const { values: a } = parseArgs({
  options: {
    engines: { type: "string", default: "128" },
    "no-stagger": { type: "boolean", default: false },
    "engine-timeout": { type: "string" },
    python: { type: "string" },
    timeout: { type: "string", default: "900" },
    keep: { type: "boolean", default: false },
  },
});
const N = Number(a.engines);
const py = a.python ?? venvPython(9);
const uptime = () => execFileSync("uptime", { encoding: "utf8" }).trim();

const dir = mkdtempSync(join(tmpdir(), `ipp-real-${N}-`));
const profile = join(dir, "profile_default");
mkdirSync(profile, { recursive: true });
const engineConfig: string[] = [];
if (a["no-stagger"]) engineConfig.push("c.IPEngine.mpi_registration_delay = 0");
if (a["engine-timeout"]) engineConfig.push(`c.IPEngine.timeout = ${Number(a["engine-timeout"])}`);
if (engineConfig.length) writeFileSync(join(profile, "ipengine_config.py"), engineConfig.map((l) => `${l}\n`).join(""));
const sec = join(dir, "sec");

const result: Record<string, unknown> = { engines: N, ipengineConfig: engineConfig, uptimeStart: uptime() };
const t0 = Date.now();
const since = () => (Date.now() - t0) / 1000;
const args = ["local", "--engines", String(N), "--python", py, "--out", sec, "--log-level", "info", "--timeout", a.timeout];
result.command = `IPYTHONDIR=${dir} bin/ipp-operator ${args.join(" ")}`;
const local = spawn(join(REPO_ROOT, "bin/ipp-operator"), args, {
  cwd: REPO_ROOT, env: { ...process.env, IPYTHONDIR: dir }, stdio: ["ignore", "pipe", "pipe"], detached: true,
});

const counts: Array<[number, number]> = [];
let stalled = 0;
let late = 0;
let lateIdTaken = 0;
/** Registrations the engine itself gave up (its unregistration_request came before its heart: ipengine's reply timeout). */
let cancelled = 0;
let allAt: number | undefined;
let gaveUp: string | undefined;
let metricsUrl: string | undefined;
const logFile = join(dir, "local.log");
const log = createWriteStream(logFile);
let buf = "";
let onAll: () => void = () => {};
const allRegistered = new Promise<void>((r) => (onAll = r));
local.stderr.on("data", (d: Buffer) => {
  log.write(d);
  buf += d.toString();
  let nl;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    const m = /^engines (\d+)\/\d+ registered/.exec(line);
    if (m) counts.push([since(), Number(m[1])]);
    const u = /^metrics: (http:\S+\/metrics)/.exec(line);
    if (u) metricsUrl = u[1];
    if (line.includes("purging stalled registration")) stalled++;
    if (line.includes("completing a purged registration")) late++;
    if (line.includes("its id was taken meanwhile")) lateIdTaken++;
    if (line.includes("canceling registration")) cancelled++;
    if (/^all \d+ engines registered/.test(line)) {
      allAt = since();
      onAll();
    }
    if (/^only \d+\/\d+ engines registered|^mpiexec ended/.test(line)) {
      gaveUp = line;
      onAll();
    }
  }
});
local.on("exit", () => onAll());

/** The controller's registration counters, scraped every 5 s (the last scrape before it stops counts). */
let counters: string[] = [];
const scrape = async () => {
  if (!metricsUrl) return;
  try {
    const text = await (await fetch(metricsUrl)).text();
    counters = text.split("\n").filter((l) => /^ipp_controller_(registrations|unregistrations|late_registrations)_total\{/.test(l));
  } catch { /* stopped */ }
};
const scraping = setInterval(() => void scrape(), 5000);

await allRegistered;
result.uptimeAllRegistered = uptime();
result.allRegisteredSeconds = allAt ?? null;
result.gaveUp = gaveUp ?? null;
// the count when half, 90 % and all were first reached
const firstAt = (k: number) => counts.find(([, c]) => c >= k)?.[0] ?? null;
result.registeredAt = { half: firstAt(Math.ceil(N / 2)), ninetyPercent: firstAt(Math.ceil(0.9 * N)), all: firstAt(N) };
result.maxRegistered = Math.max(0, ...counts.map(([, c]) => c));

if (allAt !== undefined) {
  const t1 = Date.now();
  const out = await new Promise<Record<string, unknown>>((resolve) => {
    execFile(py, [join(REPO_ROOT, "test/python/workflow.py"), join(sec, "ipcontroller-client.json"), String(N)], { timeout: 600_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const last = stdout.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(last) as Record<string, unknown>);
      } catch {
        resolve({ error: `${String(err)}\n${stderr.slice(-3000)}` });
      }
    });
  });
  result.seedSeconds = (Date.now() - t1) / 1000;
  const sums = (out.px_totalsum as string[] | undefined) ?? [];
  const distinct = [...new Set(sums)];
  result.psum = { engines: sums.length, distinct, all496: sums.length === N && distinct.length === 1 && distinct[0] === "array(496.)" };
  result.mpiSize = [...new Set((out.size as number[] | undefined) ?? [])];
  result.seedErrors = out.errors ?? out.error ?? null;
  result.seedDurations = out.durations ?? null;
}
clearInterval(scraping);
await scrape();
result.metrics = counters;
result.timeline = counts.filter(([, c], i) => i === counts.length - 1 || c % 16 === 0).map(([t, c]) => `${t.toFixed(1)}s:${c}`);
result.stalled = stalled;
result.lateCompleted = late;
result.lateIdTaken = lateIdTaken;
result.cancelledByEngine = cancelled;
result.uptimeEnd = uptime();

try {
  process.kill(-local.pid!, "SIGTERM");
} catch { /* gone */ }
await new Promise((r) => (local.exitCode !== null || local.signalCode !== null ? r(null) : local.once("exit", r)));
log.end();
if (a.keep) result.log = logFile;
else rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify(result, null, 1));
