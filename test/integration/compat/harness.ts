/**
 * Shared pieces of the ipcluster / ipp.Cluster compatibility tests: a throw-away IPython profile
 * whose ipcluster_config.py points the controller launcher at bin/ipp-operator (or leaves upstream
 * ipcontroller), the Python driver (test/python/compat/cluster_driver.py) run from a venv, and
 * clean-up of every process a run started, by PID (checked against its start time), never by name.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CACHE_DIR, REPO_ROOT, python, venvBin, type IppMajor } from "../../support/paths.ts";

export const BIN = join(REPO_ROOT, "bin", "ipp-operator");
export const DRIVER = join(REPO_ROOT, "test", "python", "compat", "cluster_driver.py");

export function requireMpiexec(): string {
  const p = "/usr/bin/mpiexec";
  if (!existsSync(p)) throw new Error(`${p} missing: run scripts/setup/system.sh (Open MPI)`);
  return p;
}

/** Environment for every Python/MPI child: root-friendly Open MPI, no user site, quiet engines. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    OMPI_ALLOW_RUN_AS_ROOT: "1",
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1",
    OMPI_MCA_rmaps_base_oversubscribe: "1",
    PYTHONNOUSERSITE: "1",
    IPP_NONINTERACTIVE: "1",
    ...extra,
  };
}

export interface Profile {
  root: string;
  dir: string;
  security: string;
  cleanup(): Promise<void>;
}

/**
 * A profile directory whose ipcluster_config.py makes ipyparallel's launchers start our controller
 * (the one line users add), or upstream ipcontroller when `ours` is false.
 */
export async function makeProfile(opts: { ours: boolean; extraConfig?: string[] }): Promise<Profile> {
  const root = await mkdtemp(join(tmpdir(), "ipp-compat-"));
  const dir = join(root, "profile_compat");
  await mkdir(dir, { recursive: true });
  const lines = [
    ...(opts.ours ? [`c.LocalControllerLauncher.controller_cmd = [${JSON.stringify(BIN)}, "controller"]`] : []),
    `c.MPIEngineSetLauncher.mpi_args = ["--allow-run-as-root", "--oversubscribe"]`,
    `c.MPIEngineSetLauncher.engine_args = ["--log-level=WARN"]`,
    `c.LocalEngineSetLauncher.engine_args = ["--log-level=WARN"]`,
    ...(opts.extraConfig ?? []),
  ];
  await writeFile(join(dir, "ipcluster_config.py"), lines.join("\n") + "\n");
  return { root, dir, security: join(dir, "security"), cleanup: () => rm(root, { recursive: true, force: true }) };
}

export type Line = Record<string, unknown> & { step?: string; ok?: boolean; done?: boolean; pids?: Array<[number, number]> };

export interface DriverRun {
  code: number | null;
  lines: Line[];
  stderr: string;
  /** The line for a step (fails the test with the driver's error if missing or not ok). */
  step(name: string): Line;
  pids: Array<[number, number]>;
}

/** Seconds since boot → start time as psutil reports it (epoch seconds). */
function startTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[19]);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1]);
    return btime + ticks / 100;
  } catch {
    return undefined;
  }
}

function aliveAs(pid: number, created: number): boolean {
  const t = startTime(pid);
  if (t === undefined) return false;
  try {
    if (/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))) return false;
  } catch {
    return false;
  }
  return Math.abs(t - created) < 2;
}

/** Wait for the recorded processes to exit on their own, then SIGKILL the rest (by PID). */
export async function reap(pids: Array<[number, number]>, graceMs = 15_000): Promise<number[]> {
  const deadline = Date.now() + graceMs;
  let left = pids.filter(([p, t]) => aliveAs(p, t));
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    left = left.filter(([p, t]) => aliveAs(p, t));
  }
  for (const [p] of left) {
    try { process.kill(p, "SIGKILL"); } catch { /* gone */ }
  }
  return left.map(([p]) => p);
}

/** Every descendant of `root` (walks /proc), as [pid, start time]. */
export function descendants(root: number): Array<[number, number]> {
  const children = new Map<number, number[]>();
  for (const d of readdirSafe("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch { /* raced */ }
  }
  const out: Array<[number, number]> = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      const t = startTime(c);
      if (t !== undefined) out.push([c, t]);
      walk(c);
    }
  };
  walk(root);
  return out;
}

function readdirSafe(p: string): string[] {
  try {
    return readdirSync(p);
  } catch {
    return [];
  }
}

/** Run the Python driver; on timeout, kill it and everything it started. */
export async function runDriver(major: IppMajor, command: string, params: Record<string, unknown>, timeoutMs: number): Promise<DriverRun> {
  const child: ChildProcess = spawn(python(major), [DRIVER, command, JSON.stringify(params)], {
    env: childEnv({ PATH: `${join(CACHE_DIR, "venv", `ipp${major}`, "bin")}:${process.env.PATH ?? ""}` }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
  child.stderr!.on("data", (d: Buffer) => { err += d.toString(); });
  const seen = new Map<number, number>();
  const poll = setInterval(() => { for (const [p, t] of descendants(child.pid!)) seen.set(p, t); }, 500);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    for (const [p, t] of descendants(child.pid!)) seen.set(p, t);
    child.kill("SIGKILL");
  }, timeoutMs);
  const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  clearTimeout(timer);
  clearInterval(poll);
  const lines: Line[] = out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Line);
  for (const l of lines) for (const [p, t] of l.pids ?? []) seen.set(p, t);
  const pids = [...seen.entries()];
  if (timedOut) {
    await reap(pids, 0);
    throw new Error(`driver ${command} timed out after ${timeoutMs} ms\nstdout:\n${out}\nstderr (tail):\n${err.slice(-4000)}`);
  }
  return {
    code, lines, stderr: err, pids,
    step(name: string): Line {
      const l = lines.find((x) => x.step === name);
      if (!l) throw new Error(`driver ${command}: no step ${name}\nstdout:\n${out}\nstderr (tail):\n${err.slice(-4000)}`);
      if (!l.ok) throw new Error(`driver ${command}: step ${name} failed:\n${String(l.error)}\nstderr (tail):\n${err.slice(-3000)}`);
      return l;
    },
  };
}

export { venvBin, python, type IppMajor };
