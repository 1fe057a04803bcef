/**
 * Launch and supervise N ipengines under one local `mpiexec`, and stop the whole process tree.
 *
 * mpiexec runs in its own process group. Every process whose parent chain leads to it (ranks,
 * Open MPI daemons, and each engine's nanny, which runs in a session of its own and re-parents to
 * init when its engine dies) is recorded by (pid, start time) while the group runs, so `stop()`
 * can signal each one by PID: SIGTERM, then SIGKILL after a grace period, until none is alive.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { Logger } from "../util/log.ts";
import { buildEngineCommand, type EngineCommand, type EngineCommandOptions } from "./command.ts";
import { descendants, isLive, readProc, readProcTable, type ProcInfo } from "./proctree.ts";

export interface LaunchOptions extends EngineCommandOptions {
  /** environment of mpiexec (defaults to this process's), IPP_CONNECTION_INFO is added */
  baseEnv?: NodeJS.ProcessEnv;
  cwd?: string;
  /** how often the process tree is re-read (ms) */
  trackIntervalMs?: number;
  /** how much of mpiexec's combined stdout/stderr to keep for error reports (bytes) */
  outputTailBytes?: number;
}

export interface TrackedProcess {
  pid: number;
  start: number;
  comm: string;
  /** "launcher" for mpiexec itself, "tree" for everything found under it */
  role: "launcher" | "tree";
}

export interface LauncherExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StopReport {
  /** processes that got SIGTERM */
  terminated: number[];
  /** processes still alive after the grace period, which got SIGKILL */
  killed: number[];
  /** processes still alive at the end (should be empty) */
  survivors: number[];
}

export interface EngineGroup {
  readonly pid: number;
  readonly command: EngineCommand;
  /** resolves when mpiexec exits (on its own or because of stop()) */
  readonly exited: Promise<LauncherExit>;
  /** every process seen in the tree so far */
  tracked(): TrackedProcess[];
  /** the last bytes mpiexec and the engines wrote to stdout/stderr */
  outputTail(): string;
  stop(opts?: { graceMs?: number }): Promise<StopReport>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size - (this.chunks[0]?.length ?? 0) >= this.max && this.chunks.length > 1) {
      this.size -= (this.chunks.shift() as Buffer).length;
    }
  }
  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.max)).toString("utf8");
  }
}

export function launchEngines(opts: LaunchOptions, deps: { logger: Logger }): EngineGroup {
  const log = deps.logger.with({ component: "local-engines" });
  const command = buildEngineCommand(opts);
  const child: ChildProcess = spawn(command.file, command.args, {
    cwd: opts.cwd,
    env: { ...(opts.baseEnv ?? process.env), ...command.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // own process group: a terminal's Ctrl-C reaches us, and we stop engines in order
  });
  const tail = new Tail(opts.outputTailBytes ?? 16 * 1024);
  const onOutput = (stream: string) => (b: Buffer) => {
    tail.push(b);
    if (log.level === "debug") log.debug("engine output", { stream, text: b.toString("utf8").trimEnd() });
  };
  child.stdout?.on("data", onOutput("stdout"));
  child.stderr?.on("data", onOutput("stderr"));

  const exited = new Promise<LauncherExit>((resolve) => {
    child.once("exit", (code, signal) => {
      log.info("mpiexec exited", { pid: child.pid, code, signal });
      resolve({ code, signal });
    });
    child.once("error", (err) => {
      log.error("mpiexec failed to start", err, { file: command.file });
      resolve({ code: 127, signal: null });
    });
  });

  const pid = child.pid ?? -1;
  const tracked = new Map<string, TrackedProcess>();
  const self = pid > 0 ? readProc(pid) : undefined;
  if (self) tracked.set(`${pid}:${self.start}`, { pid, start: self.start, comm: self.comm, role: "launcher" });
  log.info("mpiexec started", { pid, engines: opts.engines, file: command.file, args: command.args.join(" ") });

  const refresh = (table: Map<number, ProcInfo>) => {
    if (pid <= 0) return;
    for (const p of descendants(table, pid)) {
      const key = `${p.pid}:${p.start}`;
      if (!tracked.has(key) && p.state !== "Z") {
        tracked.set(key, { pid: p.pid, start: p.start, comm: p.comm, role: "tree" });
        log.debug("tracking process", { pid: p.pid, ppid: p.ppid, comm: p.comm });
      }
    }
  };
  const timer = setInterval(() => {
    try {
      refresh(readProcTable());
    } catch (err) {
      log.warn("reading the process table failed", { error: String(err) });
    }
  }, opts.trackIntervalMs ?? 300);
  timer.unref();

  const liveTracked = (table: Map<number, ProcInfo>) =>
    [...tracked.values()].filter((p) => isLive(table, p.pid, p.start));

  const signal = (p: TrackedProcess, sig: NodeJS.Signals): boolean => {
    try {
      process.kill(p.pid, sig);
      return true;
    } catch {
      return false; // already gone
    }
  };

  let stopping: Promise<StopReport> | undefined;
  const stop = (stopOpts: { graceMs?: number } = {}): Promise<StopReport> => {
    stopping ??= (async () => {
      const graceMs = stopOpts.graceMs ?? 5000;
      let table = readProcTable();
      refresh(table);
      clearInterval(timer);
      const terminated: number[] = [];
      // the launcher first (it forwards the signal to its ranks), then every process by PID
      const order = liveTracked(table).sort((a, b) => (a.role === "launcher" ? -1 : b.role === "launcher" ? 1 : 0));
      for (const p of order) if (signal(p, "SIGTERM")) terminated.push(p.pid);
      log.info("stopping engines", { terminated: terminated.length, graceMs });
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline) {
        table = readProcTable();
        refresh(table); // a process forked during shutdown is tracked too
        if (liveTracked(table).length === 0) break;
        await sleep(100);
      }
      const killed: number[] = [];
      for (const p of liveTracked(readProcTable())) if (signal(p, "SIGKILL")) killed.push(p.pid);
      if (killed.length > 0) log.warn("killed processes that outlived the grace period", { pids: killed.join(",") });
      let survivors: number[] = [];
      const killDeadline = Date.now() + 3000;
      for (;;) {
        survivors = liveTracked(readProcTable()).map((p) => p.pid);
        if (survivors.length === 0 || Date.now() > killDeadline) break;
        await sleep(50);
      }
      if (survivors.length > 0) log.error("processes survived SIGKILL", undefined, { pids: survivors.join(",") });
      if (child.exitCode === null && child.signalCode === null) await Promise.race([exited, sleep(1000)]);
      return { terminated, killed, survivors };
    })();
    return stopping;
  };

  return {
    pid,
    command,
    exited,
    tracked: () => [...tracked.values()],
    outputTail: () => tail.text(),
    stop,
  };
}
