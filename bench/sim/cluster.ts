/**
 * Launch N simulated engines (engine.ts) against a controller's engine connection file, as
 * `mpiexec -n N ipengine --mpi` would: rank r requests id r, and with `staggerMs` the ranks ≥
 * `staggerAbove` wait rank × staggerMs before registering (ipyparallel's
 * `IPEngine.mpi_registration_delay`, 0.02 s above rank 100 by default).
 *
 * Engines are spread over worker processes (worker.ts). Each engine needs 14 file descriptors
 * (6 ZeroMQ sockets, 8 TCP connections); a process may open as many as its RLIMIT_NOFILE allows
 * (Node raises the soft limit to the hard one at start; run `ulimit -Hn` to see it), so the
 * processes are sized to that limit, and never hold more than `perProcess` engines.
 */
import { fork, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { EngineConnection } from "./engine.ts";
import type { WorkerCommand, WorkerEvent } from "./worker.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, "../..");

/** File descriptors one simulated engine holds: 6 sockets' mailboxes + 8 TCP connections. */
export const FDS_PER_ENGINE = 14;

/** The open-files limit this process (and its children) run under. */
export function openFilesLimit(): number {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const soft = line?.split(/\s{2,}/)[1];
    if (soft && soft !== "unlimited") return Number(soft);
  } catch { /* not Linux */ }
  return 1024;
}

export interface SimClusterOptions {
  /**
   * Where the controller is. A function is called once every simulator process has loaded (Node
   * and the modules take seconds on a busy machine): start the controller there, so that
   * "controller start → registered" does not count the simulator's own start-up.
   */
  conn: EngineConnection | (() => Promise<EngineConnection>);
  engines: number;
  /** Most engines one process hosts (default: what the descriptor limit allows, at most 1024). */
  perProcess?: number;
  staggerMs?: number;
  staggerAbove?: number;
  /** ipengine's registration timeout (5 s). */
  registrationTimeoutMs?: number;
  /** Request the MPI rank as engine id (default true, as `ipengine --mpi`). */
  requestRank?: boolean;
  /** The lean connection model: 4 connections per engine at the controller instead of 8 (engine.ts). */
  lean?: boolean;
}

/** `at`: when the registration reply arrived; `sentAt`: when the request went out (epoch ms). */
export interface RegisteredEngine { rank: number; id: number; uuid: string; at: number; sentAt: number }

export interface SimCluster {
  /** Epoch ms the simulated job started (staggers count from here). */
  readonly startedAt: number;
  readonly processes: number;
  readonly registered: Map<number, RegisteredEngine>;
  readonly failed: Map<number, string>;
  /** Resolves when `n` engines have their registration reply (or throws after timeoutMs). */
  waitRegistered(n: number, timeoutMs: number): Promise<void>;
  /** Close every socket of these ranks at once (as SIGKILL would). */
  kill(ranks: number[]): Promise<void>;
  /** Requests the engines answered, by msg_type. */
  stats(): Promise<{ handled: Record<string, number>; registered: number }>;
  /** Worker pids (to measure their CPU). */
  pids(): number[];
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function readEngineConnection(path: string): EngineConnection {
  return JSON.parse(readFileSync(path, "utf8")) as EngineConnection;
}

export async function startSimCluster(opts: SimClusterOptions): Promise<SimCluster> {
  const limit = openFilesLimit();
  const fit = Math.floor((limit - 256) / FDS_PER_ENGINE);
  const perProcess = Math.max(1, Math.min(opts.perProcess ?? 1024, fit));
  const processes = Math.max(1, Math.ceil(opts.engines / perProcess));
  let startedAt = Date.now();
  const registered = new Map<number, RegisteredEngine>();
  const failed = new Map<number, string>();
  const workers: ChildProcess[] = [];
  const waiters: Array<() => void> = [];
  const statsReplies: Array<(e: Extract<WorkerEvent, { ev: "stats" }>) => void> = [];
  const killAcks: Array<() => void> = [];
  let loaded = 0;

  const onEvent = (e: WorkerEvent) => {
    if (e.ev === "registered") for (const i of e.items) registered.set(i.rank, i);
    else if (e.ev === "failed") for (const i of e.items) failed.set(i.rank, i.why);
    else if (e.ev === "stats") statsReplies.shift()?.(e);
    else if (e.ev === "killed") killAcks.shift()?.();
    else if (e.ev === "loaded") loaded++;
    for (const w of waiters.splice(0)) w();
  };

  for (let p = 0; p < processes; p++) {
    const child = fork(join(HERE, "worker.ts"), [], {
      execArgv: ["--import", join(REPO_ROOT, "node_modules/tsx/dist/loader.mjs")],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    child.on("message", onEvent);
    workers.push(child);
  }
  const loadDeadline = Date.now() + 120_000;
  while (loaded < processes) {
    if (Date.now() > loadDeadline) {
      for (const w of workers) w.kill("SIGKILL");
      throw new Error(`only ${loaded}/${processes} simulator processes started`);
    }
    await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(200)]);
  }
  const conn = typeof opts.conn === "function" ? await opts.conn() : opts.conn;
  startedAt = Date.now();
  let first = 0;
  for (let p = 0; p < processes; p++) {
    const count = Math.ceil((opts.engines - first) / (processes - p));
    const cmd: WorkerCommand = {
      cmd: "start", conn, first, count, staggerMs: opts.staggerMs ?? 0, staggerAbove: opts.staggerAbove ?? 100,
      startedAt, registrationTimeoutMs: opts.registrationTimeoutMs ?? 5_000, requestRank: opts.requestRank ?? true, lean: opts.lean ?? false,
    };
    workers[p]!.send(cmd);
    first += count;
  }

  const rankOwner = (rank: number): ChildProcess => {
    let f = 0;
    for (let p = 0; p < processes; p++) {
      const count = Math.ceil((opts.engines - f) / (processes - p));
      if (rank < f + count) return workers[p]!;
      f += count;
    }
    return workers[processes - 1]!;
  };

  return {
    startedAt, processes, registered, failed,
    async waitRegistered(n, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (registered.size < n) {
        if (registered.size + failed.size >= opts.engines) throw new Error(`${failed.size} engines failed to register: ${[...failed.values()][0]}`);
        if (Date.now() > deadline) throw new Error(`only ${registered.size}/${n} engines registered after ${timeoutMs} ms`);
        await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(500)]);
      }
    },
    async kill(ranks) {
      const byOwner = new Map<ChildProcess, number[]>();
      for (const r of ranks) {
        const w = rankOwner(r);
        byOwner.set(w, [...(byOwner.get(w) ?? []), r]);
      }
      await Promise.all([...byOwner].map(([w, rs]) => new Promise<void>((resolve) => {
        killAcks.push(resolve);
        w.send({ cmd: "kill", ranks: rs } satisfies WorkerCommand);
      })));
    },
    async stats() {
      const all = await Promise.all(workers.map((w) => new Promise<Extract<WorkerEvent, { ev: "stats" }>>((resolve) => {
        statsReplies.push(resolve);
        w.send({ cmd: "stats" } satisfies WorkerCommand);
      })));
      const handled: Record<string, number> = {};
      let reg = 0;
      for (const s of all) {
        reg += s.registered;
        for (const [k, v] of Object.entries(s.handled)) handled[k] = (handled[k] ?? 0) + v;
      }
      return { handled, registered: reg };
    },
    pids: () => workers.map((w) => w.pid ?? -1),
    async stop() {
      await Promise.all(workers.map((w) => new Promise<void>((resolve) => {
        if (w.exitCode !== null || w.signalCode !== null) return resolve();
        w.once("exit", () => resolve());
        try {
          w.send({ cmd: "stop" } satisfies WorkerCommand);
        } catch {
          w.kill("SIGKILL");
        }
        setTimeout(() => w.kill("SIGKILL"), 5_000).unref();
      })));
    },
  };
}
