/**
 * Shared rig for controller integration tests: our controller in-process, N real `ipengine --mpi`
 * under `mpiexec`, Python drivers run with the venv's interpreter (they print one JSON object).
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { createLogger, type Logger } from "../../../src/util/log.ts";
import { startController, type ControllerConfig, type ControllerHandle } from "../../../src/controller/controller.ts";
import { writeConnectionFiles, engineConnectionEnv } from "../../../src/controller/connection-files.ts";
import { REPO_ROOT, venvBin, python, type IppMajor } from "../../support/paths.ts";

export const MPIEXEC = "/usr/bin/mpiexec";

export interface Rig {
  major: IppMajor;
  controller: ControllerHandle;
  registry: Registry;
  dir: string;
  clientFile: string;
  engineFile: string;
  mpi: ChildProcess | null;
  logs: string[];
  startEngines(n: number, opts?: { viaEnv?: boolean }): Promise<void>;
  waitForEngines(n: number, timeoutMs?: number): Promise<void>;
  /** Run test/python/<script> with the client file; returns its parsed JSON output. */
  driver(script: string, args?: string[], timeoutMs?: number): Promise<Record<string, unknown>>;
  enginePids(): Promise<number[]>;
  stop(): Promise<void>;
}

export async function startRig(major: IppMajor, overrides: Partial<ControllerConfig> = {}, logger?: Logger): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), `ipp-ctl-${major}-`));
  const logs: string[] = [];
  const log = logger ?? createLogger({ level: "info", sink: (l) => { logs.push(l); if (logs.length > 5000) logs.shift(); } });
  const registry = new Registry();
  const controller = await startController({
    ip: "127.0.0.1", key: `test-${process.pid}-${Date.now()}`, heartbeatPeriodMs: 1000, taskScheme: "leastload",
    maxHeartbeatMisses: 3, strandedTaskDelayMs: 1000, shutdownDelayMs: -1, ...overrides,
  }, { logger: log, registry });
  const files = await writeConnectionFiles(dir, controller.clientConnection, controller.engineConnection);
  const env = { ...process.env, IPYTHONDIR: join(dir, "ipython"), OMPI_ALLOW_RUN_AS_ROOT: "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1", OMPI_MCA_btl: "self,vader,tcp", PYTHONUNBUFFERED: "1" };
  const rig: Rig = {
    major, controller, registry, dir, clientFile: files.client, engineFile: files.engine, mpi: null, logs,
    async startEngines(n, opts = {}) {
      const args = ["--oversubscribe", "--allow-run-as-root", "--mca", "orte_abort_on_non_zero_status", "0", "-n", String(n), venvBin(major, "ipengine"), "--mpi", "--log-level=WARN"];
      const e: NodeJS.ProcessEnv = { ...env };
      if (opts.viaEnv) e.IPP_CONNECTION_INFO = engineConnectionEnv(controller.engineConnection);
      else args.push(`--file=${files.engine}`);
      const child = spawn(MPIEXEC, args, { env: e, stdio: ["ignore", "ignore", "pipe"], detached: true });
      child.stderr!.on("data", (d: Buffer) => { logs.push(`[mpi] ${d.toString().slice(0, 500)}`); });
      rig.mpi = child;
    },
    async waitForEngines(n, timeoutMs = 90_000) {
      const t0 = Date.now();
      while (controller.engines().length < n) {
        if (Date.now() - t0 > timeoutMs) throw new Error(`only ${controller.engines().length}/${n} engines registered after ${timeoutMs} ms:\n${logs.slice(-30).join("\n")}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    driver(script, args = [], timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        execFile(python(major), [join(REPO_ROOT, "test/python", script), files.client, ...args], { env, timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
          const lines = stdout.trim().split("\n");
          const last = lines[lines.length - 1] ?? "";
          try {
            const parsed = JSON.parse(last) as Record<string, unknown>;
            if (err && !("error" in parsed)) parsed.error = String(err);
            resolve(parsed);
          } catch {
            reject(new Error(`driver ${script} failed (${String(err)}):\nstdout:${stdout.slice(-3000)}\nstderr:${stderr.slice(-5000)}`));
          }
        });
      });
    },
    async enginePids() {
      if (!rig.mpi?.pid) return [];
      return descendants(rig.mpi.pid);
    },
    async stop() {
      const pids = rig.mpi?.pid ? [rig.mpi.pid, ...(await descendants(rig.mpi.pid))] : [];
      for (const pid of pids) {
        try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
      }
      await controller.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return rig;
}

/** All descendant pids of `pid` (from /proc via ps). */
export function descendants(pid: number): Promise<number[]> {
  return new Promise((resolve) => {
    execFile("ps", ["-e", "-o", "pid=,ppid="], (err, stdout) => {
      if (err) return resolve([]);
      const children = new Map<number, number[]>();
      for (const line of stdout.trim().split("\n")) {
        const [p, pp] = line.trim().split(/\s+/).map(Number);
        if (!children.has(pp!)) children.set(pp!, []);
        children.get(pp!)!.push(p!);
      }
      const outList: number[] = [];
      const walk = (x: number) => { for (const c of children.get(x) ?? []) { outList.push(c); walk(c); } };
      walk(pid);
      resolve(outList);
    });
  });
}

/** Pids of the `ipengine` kernels (not their nannies), by engine id, from the process tree. */
export async function engineProcesses(rig: Rig): Promise<number[]> {
  const pids = await rig.enginePids();
  return pids;
}
