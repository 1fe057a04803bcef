/**
 * Controllers and engines as separate processes for the hub-parity tests: upstream `ipcontroller`
 * from a venv or `ipp-operator controller`, on one profile directory; `ipengine --mpi` under
 * mpiexec; Python drivers from test/python that print one JSON object. Everything started here is
 * stopped by PID.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, python, venvBin, type IppMajor } from "../../support/paths.ts";
import { BIN, childEnv, descendants, requireMpiexec } from "./harness.ts";

export interface Proc {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  /** Signal the process (and, for mpiexec, its whole tree) and wait for it to exit. */
  stop(sig?: NodeJS.Signals): Promise<number | null>;
}

function track(child: ChildProcess, tree: boolean): Proc {
  let out = "";
  child.stdout?.on("data", (d: Buffer) => { out = (out + d.toString()).slice(-200_000); });
  child.stderr?.on("data", (d: Buffer) => { out = (out + d.toString()).slice(-200_000); });
  const exited = new Promise<number | null>((r) => child.on("exit", (c, s) => r(c ?? (s ? 128 : null))));
  return {
    child, exited, output: () => out,
    async stop(sig = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      const pids = tree && child.pid ? descendants(child.pid).map(([p]) => p) : [];
      try { child.kill(sig); } catch { /* gone */ }
      const t = setTimeout(() => {
        for (const p of [child.pid!, ...pids]) {
          try { process.kill(p, "SIGKILL"); } catch { /* gone */ }
        }
      }, 15_000);
      const code = await exited;
      clearTimeout(t);
      for (const p of pids) {
        try { process.kill(p, "SIGKILL"); } catch { /* gone */ }
      }
      return code;
    },
  };
}

export const connectionFiles = (profileDir: string, clusterId: string) => ({
  client: join(profileDir, "security", `ipcontroller-${clusterId}-client.json`),
  engine: join(profileDir, "security", `ipcontroller-${clusterId}-engine.json`),
});

/** Start a controller on `profileDir` with `--cluster-id`; resolves once its connection files exist. */
export async function startController(kind: "ours" | "upstream", major: IppMajor, profileDir: string, clusterId: string, args: string[] = [], env: Record<string, string> = {}): Promise<Proc> {
  const cmd = kind === "ours" ? BIN : venvBin(major, "ipcontroller");
  const argv = [...(kind === "ours" ? ["controller"] : []), `--profile-dir=${profileDir}`, `--cluster-id=${clusterId}`, "--ip=127.0.0.1", ...args];
  const p = track(spawn(cmd, argv, { env: childEnv({ IPP_CONTROLLER_PYTHON: python(major), ...env }), stdio: ["ignore", "pipe", "pipe"] }), false);
  const f = connectionFiles(profileDir, clusterId);
  await waitUntil(() => existsSync(f.client) && existsSync(f.engine) && /controller ready|Heartmonitor beating/.test(p.output()), 60_000,
    `${kind} controller`, p);
  return p;
}

export async function waitUntil(cond: () => boolean, ms: number, what: string, p?: Proc): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (p && p.child.exitCode !== null) throw new Error(`${what}: exited with ${p.child.exitCode}:\n${p.output().slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${p ? `\n${p.output().slice(-4000)}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `n` MPI engines (one MPI world) on the engine connection file. */
export function startEngines(major: IppMajor, engineFile: string, n: number, extraArgs: string[] = []): Proc {
  const args = ["--oversubscribe", "--allow-run-as-root", "--mca", "orte_abort_on_non_zero_status", "0", "-n", String(n),
    venvBin(major, "ipengine"), "--mpi", "--log-level=WARN", `--file=${engineFile}`, ...extraArgs];
  return track(spawn(requireMpiexec(), args, { env: childEnv({ OMPI_MCA_btl: "self,vader,tcp", PYTHONUNBUFFERED: "1" }), stdio: ["ignore", "pipe", "pipe"], detached: true }), true);
}

/** Run test/python/<script> CLIENT_JSON ...args; the last stdout line parsed as JSON. */
export function runPython(major: IppMajor, script: string, args: string[], timeoutMs = 180_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(python(major), [join(REPO_ROOT, "test/python", script), ...args], { env: childEnv(), timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const last = stdout.trim().split("\n").pop() ?? "";
      try {
        const parsed = JSON.parse(last) as Record<string, unknown>;
        if (err) parsed.exit_error = String(err);
        resolve(parsed);
      } catch {
        reject(new Error(`${script} failed (${String(err)}):\nstdout:${stdout.slice(-3000)}\nstderr:${stderr.slice(-5000)}`));
      }
    });
  });
}
