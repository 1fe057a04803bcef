/**
 * Real engines through our controller: `bin/ipp-operator local --engines N` (the controller
 * in-process, N `ipengine --mpi` under `mpiexec --oversubscribe`), then the seed notebook's flow
 * (test/python/workflow.py: MPI size, scatter np.arange(32.), psum by MPI Allreduce on every engine).
 *
 *   npx tsx bench/real/mpi-engines.ts --engines 128 --no-stagger [--python PY] [--timeout 900]
 *
 * --no-stagger writes `c.IPEngine.mpi_registration_delay = 0` into the profile's
 * ipengine_config.py (IPYTHONDIR is a fresh directory), so every rank registers at once instead of
 * rank × 20 ms after start-up. Prints one JSON object: seconds from start until each count of
 * registered engines, stalled (purged) and late-completed registrations, the psum on every engine,
 * and `uptime` at the start, when all registered, and at the end. Run heavy benches one at a time
 * (the machine has 2 cores): `flock /tmp/heavy.lock npx tsx bench/real/mpi-engines.ts ...`.
 */
import { spawn, execFile, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT, python as venvPython } from "../../test/support/paths.ts";

const { values: a } = parseArgs({
  options: {
    engines: { type: "string", default: "128" },
    "no-stagger": { type: "boolean", default: false },
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
if (a["no-stagger"]) writeFileSync(join(profile, "ipengine_config.py"), "c.IPEngine.mpi_registration_delay = 0\n");
const sec = join(dir, "sec");

const result: Record<string, unknown> = { engines: N, stagger: !a["no-stagger"], uptimeStart: uptime() };
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
let allAt: number | undefined;
let gaveUp: string | undefined;
let buf = "";
let onAll: () => void = () => {};
const allRegistered = new Promise<void>((r) => (onAll = r));
local.stderr.on("data", (d: Buffer) => {
  buf += d.toString();
  let nl;
  while ((nl = buf.indexOf("\n")) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    const m = /^engines (\d+)\/\d+ registered/.exec(line);
    if (m) counts.push([since(), Number(m[1])]);
    if (line.includes("purging stalled registration")) stalled++;
    if (line.includes("completing a purged registration")) late++;
    if (line.includes("its id was taken meanwhile")) lateIdTaken++;
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
result.stalled = stalled;
result.lateCompleted = late;
result.lateIdTaken = lateIdTaken;
result.uptimeEnd = uptime();

try {
  process.kill(-local.pid!, "SIGTERM");
} catch { /* gone */ }
await new Promise((r) => (local.exitCode !== null || local.signalCode !== null ? r(null) : local.once("exit", r)));
if (!a.keep) rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify(result, null, 1));
