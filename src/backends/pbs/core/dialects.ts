/**
 * Scheduler dialects as data: how to submit, poll, parse and delete on PBS Pro, Torque and Slurm's
 * PBS wrappers (slurm-wlm-torque). Pure: command lines in, parsed jobs out; the SSH adapter runs
 * the commands.
 *
 * Differences that matter (see docs/pbs.md):
 * - job ids: PBS Pro / Torque print `123.server`, Slurm's wrapper a bare `123`;
 * - status: PBS Pro `qstat -f -F dsv -x` (without `-x` a finished job is never listed, so a
 *   walltime kill would go unseen; `-F json` prints only the first of several job ids, observed on
 *   OpenPBS 23.06, so the one-line-per-job DSV form is read); Torque `qstat -f` text (4-space
 *   indents, wrapped values);
 *   Slurm's wrapper `qstat -f` text with TAB indents, `mtime` = start, `ctime` = end, no exit
 *   status, states only Q/R/S/C, and an empty queue exits 153 with no output (PBS: 0);
 * - pending reasons: PBS Pro and Torque put them in `comment`; Slurm's wrapper has none, so the
 *   slurm poll appends one `squeue` listing of reasons to the same remote command;
 * - qdel of a job that is already gone: PBS 153 (unknown id) / 35 (finished, history) / 170 (bad
 *   state); Slurm's wrapper exits 1 with no message;
 * - the Slurm wrapper ignores `#PBS -o/-e/-j` in the script (it always passes its own on the sbatch
 *   line), so output options are always given on the qsub command line.
 *
 * Polling asks only for the login user's jobs, in one remote command per host: the ids come from
 * `qselect -u <user>` (PBS Pro, Torque) or `squeue -u <user> -t all` (Slurm), plus on PBS the ids
 * the clusters have recorded (finished jobs, which qselect does not list, are read from the job
 * history with `-x`); `qstat -f` then gets that id list, never the whole site. The shell runs with
 * globbing off (`set -f`): array ids like `12[]` are words, not patterns.
 */
import { shJoin, shQuote } from "./quote.ts";

export type DialectName = "pbspro" | "torque" | "slurm";
export const DIALECTS: readonly DialectName[] = ["pbspro", "torque", "slurm"];

/** A job's state, normalised across dialects. */
export type JobPhase = "queued" | "held" | "running" | "exiting" | "suspended" | "completed" | "unknown";

export interface QstatJob {
  id: string;
  name: string;
  /** the user part of Job_Owner */
  owner?: string;
  /** the scheduler's own state letter (Q, R, H, C, F, ...) */
  state: string;
  phase: JobPhase;
  queue?: string;
  submittedAt?: string;
  startedAt?: string;
  endedAt?: string;
  exitStatus?: number;
  walltimeLimitSec?: number;
  walltimeUsedSec?: number;
  /** the scheduler's comment or pending reason */
  reason?: string;
}

export type PollResult = { ok: true; jobs: QstatJob[] } | { ok: false; error: string };

/** What one poll asks for: the login user's jobs, and jobs known by id (recorded in status). */
export interface PollScope {
  user: string;
  ids: readonly string[];
}

/** Thrown for a user or id that is not a plain word: it never goes onto a command line. */
export class PollScopeError extends Error {
  readonly code = "invalid_poll_scope";
}

const SCOPE_WORD = /^[A-Za-z0-9_.@%+=:,[\]-]+$/;
function scopeWords(scope: PollScope): { user: string; ids: string[] } {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(scope.user)) throw new PollScopeError(`login user ${JSON.stringify(scope.user)} is not a plain user name`);
  for (const id of scope.ids) if (!SCOPE_WORD.test(id)) throw new PollScopeError(`job id ${JSON.stringify(id)} is not a plain word`);
  return { user: scope.user, ids: [...new Set(scope.ids)] };
}

/**
 * `set -f; ids=$(<list>) || exit; set -- $ids <tracked ids>; [ $# -gt 0 ] && <qstat> "$@"`: the
 * user's job ids and the tracked ones, in one qstat; nothing at all (not the whole site) when both
 * are empty. `empty` is printed instead of qstat's output then.
 */
function scopedQstat(list: string[], tracked: readonly string[], qstat: string[], empty: string): string {
  // a tracked id the listing already has is not asked for twice (PBS answers each id separately)
  const extra = tracked.length === 0 ? "" : `for t in ${shJoin(tracked)}; do case " $(echo $ids) " in *" $t "*) ;; *) set -- "$@" "$t" ;; esac; done; `;
  return `set -f; ids=$(${shJoin(list)}) || exit $?; set -- $ids; ${extra}`
    + `if [ $# -gt 0 ]; then ${shJoin(qstat)} "$@"; else printf '%s' ${shQuote(empty)}; fi`;
}

export interface Dialect {
  readonly name: DialectName;
  /** qsub reading the script from stdin; output and error joined into `output` (relative to $HOME). */
  submitArgv(output: string): string[];
  /** The job id in qsub's stdout, or undefined. */
  parseJobId(stdout: string): string | undefined;
  /** One remote command line listing the login user's jobs and the tracked ids (one call per poll, never per job). */
  pollCommand(scope: PollScope): string;
  parsePoll(stdout: string, exitCode: number): PollResult;
  qdelArgv(ids: readonly string[]): string[];
  /** qdel's exit code (with its output) means every listed job was already gone. */
  qdelGone(exitCode: number, output: string): boolean;
  /** The resource directive for `engines` ranks when the spec sets neither select nor nodes/ppn. */
  defaultResources(engines: number): string;
  /** Exit statuses this scheduler gives a job it killed at its walltime. */
  readonly walltimeExitStatuses: readonly number[];
}

// ---------------------------------------------------------------------------------------------
// shared parsing helpers

const MONTHS: Record<string, number> = { Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11 };

/**
 * qstat's ctime(3) dates (`Thu Nov 26 12:00:13 2026`), read as UTC (the login host's clock zone is
 * not known here; schedulers commonly run in UTC). PBS Pro's JSON may carry epoch seconds instead.
 */
export function parseQstatDate(s: string | number | undefined): string | undefined {
  if (s === undefined) return undefined;
  if (typeof s === "number" || /^\d+$/.test(s)) {
    const n = Number(s);
    return Number.isFinite(n) && n > 0 ? new Date(n * 1000).toISOString().replace(/\.\d{3}Z$/, "Z") : undefined;
  }
  const m = /^\s*\w{3}\s+(\w{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(\d{4})\s*$/.exec(s);
  if (m === null) return undefined;
  const month = MONTHS[m[1]!];
  if (month === undefined) return undefined;
  const d = new Date(Date.UTC(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])));
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** `HH:MM:SS`, `MM:SS` or seconds → seconds. */
export function parseDuration(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const t = s.trim();
  if (!/^\d+(:\d+){0,2}$/.test(t)) return undefined;
  return t.split(":").map(Number).reduce((acc, v) => acc * 60 + v, 0);
}

function phaseOf(letter: string, dialect: DialectName): JobPhase {
  switch (letter) {
    case "Q": case "W": case "T": return "queued";
    case "H": return "held";
    case "R": case "B": return "running";
    case "E": return dialect === "slurm" ? "unknown" : "exiting";
    case "S": case "U": return letter === "S" ? "suspended" : "unknown";
    case "C": case "F": case "X": return "completed";
    default: return "unknown";
  }
}

const ownerUser = (owner: string | undefined): string | undefined => owner?.split("@")[0];

/**
 * `qstat -f` text (Torque and Slurm's wrapper): `Job Id: <id>` blocks of `key = value` lines,
 * indented with spaces or a TAB; Torque wraps long values onto lines that begin with a TAB and have
 * no ` = `.
 */
export function parseQstatFText(text: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  let lastKey: string | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    const head = /^Job Id:\s*(\S+)\s*$/.exec(line);
    if (head !== null) {
      cur = {};
      out.set(head[1]!, cur);
      lastKey = undefined;
      continue;
    }
    if (cur === undefined || line.trim() === "") continue;
    const kv = /^\s+([A-Za-z_][\w.]*) = (.*)$/.exec(line);
    if (kv !== null) {
      lastKey = kv[1]!;
      cur[lastKey] = kv[2]!;
    } else if (lastKey !== undefined && /^\s/.test(line)) {
      cur[lastKey] += line.trim(); // Torque's wrapped continuation
    }
  }
  return out;
}

function jobFromText(id: string, a: Record<string, string>, dialect: DialectName): QstatJob {
  const state = (a.job_state ?? "U").trim();
  const job: QstatJob = { id, name: a.Job_Name ?? "", state, phase: phaseOf(state, dialect) };
  const owner = ownerUser(a.Job_Owner);
  if (owner !== undefined) job.owner = owner;
  if (a.queue !== undefined) job.queue = a.queue;
  const submitted = parseQstatDate(a.qtime);
  if (submitted !== undefined) job.submittedAt = submitted;
  const limit = parseDuration(a["Resource_List.walltime"]);
  if (limit !== undefined) job.walltimeLimitSec = limit;
  if (a.comment !== undefined) job.reason = a.comment;
  if (dialect === "slurm") {
    // the wrapper's mtime is the start, ctime the end (a projection while running)
    const started = parseQstatDate(a.mtime);
    if (started !== undefined) job.startedAt = started;
    if (job.phase === "completed") {
      const ended = parseQstatDate(a.ctime);
      if (ended !== undefined) job.endedAt = ended;
      if (started !== undefined && ended !== undefined) job.walltimeUsedSec = (Date.parse(ended) - Date.parse(started)) / 1000;
    }
  } else {
    const started = parseQstatDate(a.start_time ?? a.stime);
    if (started !== undefined) job.startedAt = started;
    const ended = parseQstatDate(a.comp_time ?? a.obittime);
    if (ended !== undefined) job.endedAt = ended;
    const used = parseDuration(a["resources_used.walltime"]);
    if (used !== undefined) job.walltimeUsedSec = used;
    const exit = a.exit_status ?? a.Exit_status;
    if (exit !== undefined && /^-?\d+$/.test(exit.trim())) job.exitStatus = Number(exit.trim());
  }
  return job;
}

/**
 * PBS Pro `qstat -f -F dsv`: one line per job, `Job Id: <id>|key=value|key=value...`, the
 * delimiter escaped with a backslash inside values; nested resources as `Resource_List.walltime`.
 */
export function parseQstatDsv(text: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (!line.startsWith("Job Id:")) continue;
    const fields: string[] = [];
    let cur = "";
    for (let i = 0; i < line.length; i++) {
      const ch = line[i]!;
      if (ch === "\\" && i + 1 < line.length) { cur += line[++i]; continue; }
      if (ch === "|") { fields.push(cur); cur = ""; continue; }
      cur += ch;
    }
    fields.push(cur);
    const id = fields[0]!.slice("Job Id:".length).trim();
    if (id === "") continue;
    const attrs: Record<string, string> = {};
    for (const f of fields.slice(1)) {
      const eq = f.indexOf("=");
      if (eq > 0) attrs[f.slice(0, eq)] = f.slice(eq + 1);
    }
    out.set(id, attrs);
  }
  return out;
}

/** PBS Pro `qstat -f -F json`: `{ "Jobs": { "<id>": { ... } } }` (no Jobs key when the queue is empty). */
export function parseQstatJson(text: string): PollResult {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `qstat -F json output is not JSON: ${(e as Error).message}` };
  }
  if (typeof doc !== "object" || doc === null) return { ok: false, error: "qstat -F json output is not an object" };
  const jobsObj = (doc as { Jobs?: unknown }).Jobs;
  const jobs: QstatJob[] = [];
  if (typeof jobsObj === "object" && jobsObj !== null) {
    for (const [id, v] of Object.entries(jobsObj as Record<string, Record<string, unknown>>)) {
      const str = (k: string): string | undefined => (typeof v[k] === "string" ? (v[k] as string) : typeof v[k] === "number" ? String(v[k]) : undefined);
      const state = str("job_state") ?? "U";
      const job: QstatJob = { id, name: str("Job_Name") ?? "", state, phase: phaseOf(state, "pbspro") };
      const owner = ownerUser(str("Job_Owner"));
      if (owner !== undefined) job.owner = owner;
      const queue = str("queue");
      if (queue !== undefined) job.queue = queue;
      const submitted = parseQstatDate(str("qtime"));
      if (submitted !== undefined) job.submittedAt = submitted;
      const started = parseQstatDate(str("stime"));
      if (started !== undefined) job.startedAt = started;
      const ended = parseQstatDate(str("obittime"));
      if (ended !== undefined) job.endedAt = ended;
      const rl = (typeof v.Resource_List === "object" && v.Resource_List !== null ? v.Resource_List : {}) as Record<string, unknown>;
      const ru = (typeof v.resources_used === "object" && v.resources_used !== null ? v.resources_used : {}) as Record<string, unknown>;
      const limit = parseDuration(typeof rl.walltime === "string" ? rl.walltime : undefined);
      if (limit !== undefined) job.walltimeLimitSec = limit;
      const used = parseDuration(typeof ru.walltime === "string" ? ru.walltime : undefined);
      if (used !== undefined) job.walltimeUsedSec = used;
      const exit = v.Exit_status;
      if (typeof exit === "number") job.exitStatus = exit;
      const comment = str("comment");
      if (comment !== undefined) job.reason = comment;
      jobs.push(job);
    }
  }
  return { ok: true, jobs };
}

// ---------------------------------------------------------------------------------------------
// the dialects

const ID_WITH_SERVER = /^\s*(\d+(?:\[\d*\])?(?:\.[A-Za-z0-9][A-Za-z0-9.-]*)?)\s*$/m;

/** qstat's "no such job / nothing to list" exit code (PBSE_UNKJOBID % 256). */
export const QSTAT_UNKNOWN_JOB = 153;

function textPoll(dialect: DialectName) {
  return (stdout: string, exitCode: number): PollResult => {
    // 153: an id asked for is unknown (ended and forgotten between the listing and qstat); the
    // others are still printed
    if (exitCode !== 0 && exitCode !== QSTAT_UNKNOWN_JOB) {
      return { ok: false, error: `qstat -f exited ${exitCode}: ${stdout.trim().slice(0, 500)}` };
    }
    return { ok: true, jobs: [...parseQstatFText(stdout)].map(([id, a]) => jobFromText(id, a, dialect)) };
  };
}

const pbspro: Dialect = {
  name: "pbspro",
  // PBS Pro and Torque read the script from stdin when no file is named
  submitArgv: (output) => ["qsub", "-j", "oe", "-o", output],
  parseJobId: (stdout) => ID_WITH_SERVER.exec(stdout)?.[1],
  // -x: finished jobs too (from the job history), or a walltime kill is never seen; DSV because
  // `-F json` with several ids prints only the first job (OpenPBS 23.06)
  pollCommand: (scope) => {
    const { user, ids } = scopeWords(scope);
    return scopedQstat(["qselect", "-u", user], ids, ["qstat", "-f", "-F", "dsv", "-x"], "");
  },
  parsePoll: (stdout, exitCode) => {
    // a tracked id that left the history makes qstat exit 153 ("Unknown Job Id" on stderr) while
    // it still prints the others
    if (exitCode !== 0 && exitCode !== QSTAT_UNKNOWN_JOB) {
      return { ok: false, error: `qstat -f -F dsv -x exited ${exitCode}: ${stdout.trim().slice(0, 500)}` };
    }
    return { ok: true, jobs: [...parseQstatDsv(stdout)].map(([id, a]) => jobFromText(id, a, "pbspro")) };
  },
  qdelArgv: (ids) => ["qdel", ...ids],
  qdelGone: (code) => code === 153 || code === 35 || code === 170,
  defaultResources: (n) => `select=1:ncpus=${n}:mpiprocs=${n}`,
  // JOB_EXEC_KILL_WALLTIME
  walltimeExitStatuses: [-29],
};

const torque: Dialect = {
  name: "torque",
  submitArgv: (output) => ["qsub", "-j", "oe", "-o", output],
  parseJobId: (stdout) => ID_WITH_SERVER.exec(stdout)?.[1],
  pollCommand: (scope) => {
    const { user, ids } = scopeWords(scope);
    return scopedQstat(["qselect", "-u", user], ids, ["qstat", "-f"], "");
  },
  parsePoll: textPoll("torque"),
  qdelArgv: (ids) => ["qdel", ...ids],
  qdelGone: (code) => code === 153 || code === 170,
  defaultResources: (n) => `nodes=1:ppn=${n}`,
  // JOB_EXEC_OVERLIMIT_WT (Torque ≥ 4); older servers report 271 (SIGTERM) and are caught by the time used
  walltimeExitStatuses: [-11],
};

/** Marker between qstat's and squeue's output in the slurm poll. */
export const SLURM_REASONS_MARK = "@@ipp-squeue-reasons";

const slurm: Dialect = {
  name: "slurm",
  // the wrapper with no file prints its usage; `-` is passed to sbatch as a file name
  submitArgv: (output) => ["qsub", "-j", "oe", "-o", output, "/dev/stdin"],
  parseJobId: (stdout) => /^\s*(\d+)\s*$/m.exec(stdout)?.[1],
  // one remote command: the user's job ids and pending reasons from squeue (the wrapper shows no
  // reasons; `-t all` keeps finished jobs while slurmctld remembers them), then the wrapper's
  // qstat -f for exactly those ids
  pollCommand: (scope) => {
    const { user } = scopeWords(scope);
    return `set -f; reasons=$(${shJoin(["squeue", "-h", "-u", user, "-t", "all", "-o", "%i|%r"])}) || exit $?; `
      + `set -- $(printf '%s\n' "$reasons" | cut -d'|' -f1); `
      + `if [ $# -gt 0 ]; then ${shJoin(["qstat", "-f"])} "$@"; fi; echo ${shQuote(SLURM_REASONS_MARK)} "$?"; printf '%s\n' "$reasons"`;
  },
  parsePoll: (stdout, exitCode) => {
    const at = stdout.lastIndexOf(SLURM_REASONS_MARK);
    if (at < 0) return textPoll("slurm")(stdout, exitCode);
    const qstatOut = stdout.slice(0, at);
    const rest = stdout.slice(at + SLURM_REASONS_MARK.length);
    const nl = rest.indexOf("\n");
    const qstatCode = Number((nl < 0 ? rest : rest.slice(0, nl)).trim());
    const parsed = textPoll("slurm")(qstatOut, Number.isFinite(qstatCode) ? qstatCode : exitCode);
    if (!parsed.ok) return parsed;
    const reasons = new Map<string, string>();
    for (const line of (nl < 0 ? "" : rest.slice(nl + 1)).split("\n")) {
      const m = /^(\d+)\|(.+)$/.exec(line.trim());
      if (m !== null && m[2] !== "None") reasons.set(m[1]!, m[2]!);
    }
    for (const j of parsed.jobs) {
      const r = reasons.get(j.id);
      if (r !== undefined && j.phase !== "completed") j.reason = r;
    }
    return parsed;
  },
  qdelArgv: (ids) => ["qdel", ...ids],
  qdelGone: (code, output) => code === 1 && output.trim() === "",
  defaultResources: (n) => `nodes=1:ppn=${n}`,
  walltimeExitStatuses: [],
};

export const dialects: Record<DialectName, Dialect> = { pbspro, torque, slurm };

/**
 * Dialect detection for `dialect: auto`: one remote command whose output names the scheduler.
 * The `qstat` first on the login user's PATH decides: PBS Pro prints `pbs_version = …`, Torque
 * `Version: …`; Slurm's wrapper has no `qstat --version` (usage, rc 2), so sbatch's presence
 * decides only when qstat named neither (a login host can have Slurm installed next to PBS: the
 * rig does).
 */
export const DETECT_COMMAND = "qstat --version 2>&1 | head -n 3; if command -v sbatch >/dev/null 2>&1; then echo dialect=slurm; fi";

export function parseDetect(stdout: string): DialectName | undefined {
  if (/pbs_version\s*=/.test(stdout)) return "pbspro";
  if (/^Version:\s*\d/m.test(stdout)) return "torque";
  if (/^dialect=slurm$/m.test(stdout)) return "slurm";
  return undefined;
}
