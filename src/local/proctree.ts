/**
 * The process table from /proc, and the pure helpers that walk it. Used to follow everything a
 * local `mpiexec` starts (ranks, Open MPI daemons, engine nannies that re-parent to init because
 * they run in their own session) so it can all be stopped by PID.
 */
import { readdirSync, readFileSync } from "node:fs";

export interface ProcInfo {
  pid: number;
  ppid: number;
  /** one-letter state from /proc/<pid>/stat (Z = zombie: exited, not yet reaped) */
  state: string;
  /** start time in clock ticks since boot: (pid, start) identifies a process despite PID reuse */
  start: number;
  comm: string;
}

/** Parse one /proc/<pid>/stat line; `comm` may contain spaces and parentheses. */
export function parseStat(line: string): ProcInfo | undefined {
  const open = line.indexOf("(");
  const close = line.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const pid = Number(line.slice(0, open).trim());
  const rest = line.slice(close + 2).split(" ");
  // fields after comm: state(3) ppid(4) ... starttime(22) → rest[0], rest[1], rest[19]
  const state = rest[0];
  const ppid = Number(rest[1]);
  const start = Number(rest[19]);
  if (!Number.isInteger(pid) || state === undefined || !Number.isInteger(ppid) || !Number.isFinite(start)) {
    return undefined;
  }
  return { pid, ppid, state, start, comm: line.slice(open + 1, close) };
}

/** A snapshot of every process visible in /proc. */
export function readProcTable(procDir = "/proc"): Map<number, ProcInfo> {
  const table = new Map<number, ProcInfo>();
  for (const name of readdirSync(procDir)) {
    if (!/^\d+$/.test(name)) continue;
    let line: string;
    try {
      line = readFileSync(`${procDir}/${name}/stat`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    const info = parseStat(line);
    if (info) table.set(info.pid, info);
  }
  return table;
}

/** Every process whose parent chain leads to `root` (root excluded), in breadth-first order. */
export function descendants(table: Map<number, ProcInfo>, root: number): ProcInfo[] {
  const children = new Map<number, ProcInfo[]>();
  for (const p of table.values()) {
    const list = children.get(p.ppid);
    if (list) list.push(p);
    else children.set(p.ppid, [p]);
  }
  const out: ProcInfo[] = [];
  const queue = [root];
  const seen = new Set<number>([root]);
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    for (const c of children.get(pid) ?? []) {
      if (seen.has(c.pid)) continue;
      seen.add(c.pid);
      out.push(c);
      queue.push(c.pid);
    }
  }
  return out;
}

/** true when (pid, start) is still a live (non-zombie) process in `table` */
export function isLive(table: Map<number, ProcInfo>, pid: number, start: number): boolean {
  const p = table.get(pid);
  return p !== undefined && p.start === start && p.state !== "Z" && p.state !== "X";
}

/** Read one process's stat; undefined when it does not exist. */
export function readProc(pid: number, procDir = "/proc"): ProcInfo | undefined {
  try {
    return parseStat(readFileSync(`${procDir}/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}
