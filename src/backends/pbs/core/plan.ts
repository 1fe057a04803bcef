/**
 * The pure pbs planner step: (spec-derived job, jobs seen by one batched qstat, job ids recorded in
 * status) → scheduler actions + `status.pbs.jobs` + the Submitted condition and a phase.
 *
 * Rules:
 * - jobs of the cluster are the login user's jobs whose name starts with `ipp-<tag>-`, plus any job
 *   whose id is recorded in status;
 * - submit only when no live job carries the current name: an operator that crashed after qsub
 *   finds its job by name and adopts it instead of submitting twice;
 * - live jobs with another name belong to an older spec (scale change, new queue, …): qdel them;
 *   two live jobs with the current name: keep the oldest, qdel the others;
 * - a job of the current spec that ended at its walltime is resubmitted unless
 *   `resubmitOnWalltime: false`; one that ended otherwise is not (phase Failed) until the spec
 *   changes (a new metadata.generation forgets the jobs that ended before it);
 * - on deletion: qdel every live job; done when none is left;
 * - when qstat could not be read nothing is submitted or deleted (the caller reports why).
 */
import type { PbsBackend } from "../../../api/engine-cluster.ts";
import type { Dialect, QstatJob } from "./dialects.ts";
import { jobPrefix } from "./script.ts";

export interface PbsJobRecord {
  id: string;
  role: "engines" | "controller";
  state: string;
  queue?: string;
  submittedAt?: string;
  startedAt?: string;
  reason?: string;
}

export interface PbsStepInput {
  pbs: Pick<PbsBackend, "user" | "walltime" | "resubmitOnWalltime">;
  dialect: Dialect;
  tag: string;
  /** the current job name (jobName()) */
  name: string;
  /** the batched qstat of the login host, or why it could not be read */
  observed: QstatJob[] | { error: string };
  recorded: readonly PbsJobRecord[];
  /** metadata.generation and status.observedGeneration: a spec change forgets ended jobs */
  generation: number;
  observedGeneration?: number;
  deleting: boolean;
  now: Date;
}

export type PbsAction =
  | { type: "submit"; name: string }
  | { type: "qdel"; ids: string[]; why: "deleting" | "specChanged" | "duplicate" };

export interface PbsCondition { type: "Submitted"; status: "True" | "False" | "Unknown"; reason: string; message: string }

export type PbsPhase = "Submitting" | "Queued" | "Starting" | "Failed" | "Terminating";

export interface PbsEvent { eventType: "Normal" | "Warning"; reason: string; message: string }

export interface PbsStep {
  actions: PbsAction[];
  jobs: PbsJobRecord[];
  submitted: PbsCondition;
  phase: PbsPhase | undefined;
  /** the live job of the current spec, when there is one */
  current?: QstatJob;
  /** deletion: no live job left */
  done: boolean;
  events: PbsEvent[];
}

/** Ended jobs kept in status (most recent first), besides the live ones. */
export const KEEP_ENDED = 4;
/** A job that vanished this close to its walltime is taken as killed at its walltime (seconds). */
export const WALLTIME_SLACK_SEC = 5;

const live = (j: QstatJob): boolean => j.phase !== "completed";

/** Numeric-aware id order: `9` before `10`, `9.srv` before `10.srv`. */
export function compareIds(a: string, b: string): number {
  const na = Number.parseInt(a, 10);
  const nb = Number.parseInt(b, 10);
  if (Number.isFinite(na) && Number.isFinite(nb) && na !== nb) return na - nb;
  return a.localeCompare(b);
}

export function endedByWalltime(j: QstatJob, dialect: Dialect): boolean {
  if (j.exitStatus !== undefined && dialect.walltimeExitStatuses.includes(j.exitStatus)) return true;
  return j.walltimeLimitSec !== undefined && j.walltimeUsedSec !== undefined && j.walltimeUsedSec >= j.walltimeLimitSec - 1;
}

function record(j: QstatJob, prev: PbsJobRecord | undefined, dialect: Dialect): PbsJobRecord {
  const r: PbsJobRecord = { id: j.id, role: prev?.role ?? "engines", state: j.state };
  const queue = j.queue ?? prev?.queue;
  if (queue !== undefined) r.queue = queue;
  const submittedAt = j.submittedAt ?? prev?.submittedAt;
  if (submittedAt !== undefined) r.submittedAt = submittedAt;
  const startedAt = j.startedAt ?? prev?.startedAt;
  if (startedAt !== undefined) r.startedAt = startedAt;
  let reason: string | undefined;
  if (j.phase === "completed") {
    reason = endedByWalltime(j, dialect) ? "walltime" : j.exitStatus !== undefined ? `exited ${j.exitStatus}` : "ended";
  } else reason = j.reason;
  if (reason !== undefined && reason !== "") r.reason = reason.slice(0, 1024);
  return r;
}

const isEnded = (r: PbsJobRecord): boolean => r.state === "C" || r.state === "F" || r.state === "X" || r.state === "Gone";

export function planPbs(input: PbsStepInput): PbsStep {
  const { dialect, name, now } = input;
  const recordedById = new Map(input.recorded.map((r) => [r.id, r]));

  if (!Array.isArray(input.observed)) {
    const error = input.observed.error;
    return {
      actions: [], jobs: [...input.recorded], done: false, events: [], phase: undefined,
      submitted: { type: "Submitted", status: "Unknown", reason: "SchedulerUnreachable", message: `qstat could not be read: ${error}` },
    };
  }

  const prefix = jobPrefix(input.tag);
  const mine = input.observed.filter((j) => recordedById.has(j.id) || (j.name.startsWith(prefix) && (j.owner === undefined || j.owner === input.pbs.user)));
  const seen = new Set(mine.map((j) => j.id));
  const liveJobs = mine.filter(live).sort((a, b) => compareIds(a.id, b.id));

  // records: observed jobs, then recorded jobs that qstat no longer lists
  const specChanged = input.observedGeneration !== undefined && input.observedGeneration !== input.generation;
  const records: PbsJobRecord[] = mine.map((j) => record(j, recordedById.get(j.id), dialect));
  for (const r of input.recorded) {
    if (seen.has(r.id)) continue;
    const gone: PbsJobRecord = { ...r, state: isEnded(r) ? r.state : "Gone" };
    if (!isEnded(r)) {
      const limit = input.pbs.walltime !== undefined ? (input.pbs.walltime.split(":").map(Number).reduce((a, v) => a * 60 + v, 0)) : undefined;
      const ranFor = r.startedAt !== undefined ? (now.getTime() - Date.parse(r.startedAt)) / 1000 : undefined;
      gone.reason = limit !== undefined && ranFor !== undefined && ranFor >= limit - WALLTIME_SLACK_SEC ? "walltime" : "gone from qstat";
    }
    records.push(gone);
  }
  const events: PbsEvent[] = [];
  const actions: PbsAction[] = [];

  if (input.deleting) {
    const ids = liveJobs.map((j) => j.id);
    if (ids.length > 0) actions.push({ type: "qdel", ids, why: "deleting" });
    return {
      actions, jobs: trim(records), done: ids.length === 0, events, phase: "Terminating",
      submitted: ids.length > 0
        ? { type: "Submitted", status: "True", reason: "Deleting", message: `deleting job(s) ${ids.join(", ")}` }
        : { type: "Submitted", status: "False", reason: "Deleted", message: "no job left" },
    };
  }

  const current = liveJobs.filter((j) => j.name === name);
  const stale = liveJobs.filter((j) => j.name !== name && j.name.startsWith(prefix));
  if (stale.length > 0) {
    actions.push({ type: "qdel", ids: stale.map((j) => j.id), why: "specChanged" });
    events.push({ eventType: "Normal", reason: "Resubmitting", message: `the job's shape changed (engines, resources or controller): deleting job(s) ${stale.map((j) => j.id).join(", ")}, submitting ${name}` });
  }
  if (current.length > 1) actions.push({ type: "qdel", ids: current.slice(1).map((j) => j.id), why: "duplicate" });

  const keep = current[0];
  if (keep !== undefined) {
    const adopted = !recordedById.has(keep.id);
    if (adopted) events.push({ eventType: "Normal", reason: "JobAdopted", message: `found job ${keep.id} (${name}) in qstat: adopting it instead of submitting again` });
    const queued = keep.phase === "queued" || keep.phase === "held";
    const why = keep.reason !== undefined && keep.reason !== "" ? `: ${keep.reason}` : "";
    return {
      actions, jobs: trim(records), done: false, events, current: keep,
      phase: queued ? "Queued" : "Starting",
      submitted: queued
        ? { type: "Submitted", status: "True", reason: keep.phase === "held" ? "JobHeld" : "JobQueued", message: `job ${keep.id} (${name}) is ${keep.phase} in ${keep.queue ?? "the default queue"}${why}` }
        : { type: "Submitted", status: "True", reason: "JobRunning", message: `job ${keep.id} (${name}) is ${keep.phase === "running" ? "running" : `${keep.phase} (state ${keep.state})`}` },
    };
  }

  // no live job of the current spec: did one end under this generation?
  const endedCurrent = specChanged ? [] : records.filter((r) => isEnded(r) && r.role === "engines")
    .filter((r) => {
      const o = mine.find((j) => j.id === r.id);
      return o === undefined || o.name === name; // vanished jobs have no name any more: they count
    })
    .sort((a, b) => compareIds(b.id, a.id));
  const last = endedCurrent[0];
  if (last !== undefined && !(last.reason === "walltime" && input.pbs.resubmitOnWalltime)) {
    const wall = last.reason === "walltime";
    return {
      actions, jobs: trim(records), done: false, events, phase: "Failed",
      submitted: {
        type: "Submitted", status: "False", reason: wall ? "WalltimeReached" : "JobEnded",
        message: wall
          ? `job ${last.id} reached its walltime and resubmitOnWalltime is false; change the spec to submit again`
          : `job ${last.id} ended (${last.reason ?? last.state}); change the spec to submit again`,
      },
    };
  }
  if (last !== undefined) events.push({ eventType: "Normal", reason: "WalltimeResubmit", message: `job ${last.id} reached its walltime: submitting ${name} again` });
  actions.push({ type: "submit", name });
  return {
    actions, jobs: trim(specChanged ? records.filter((r) => !isEnded(r)) : records), done: false, events, phase: "Submitting",
    submitted: { type: "Submitted", status: "False", reason: "Submitting", message: `submitting job ${name}` },
  };
}

/** Live jobs first (by id), then at most KEEP_ENDED ended ones, newest first. */
function trim(records: PbsJobRecord[]): PbsJobRecord[] {
  const liveR = records.filter((r) => !isEnded(r)).sort((a, b) => compareIds(a.id, b.id));
  const ended = records.filter(isEnded).sort((a, b) => compareIds(b.id, a.id)).slice(0, KEEP_ENDED);
  return [...liveR, ...ended];
}

/** The record of a job qsub just accepted (the runtime appends it to the step's jobs). */
export function submittedRecord(id: string, queue: string | undefined, now: Date): PbsJobRecord {
  const r: PbsJobRecord = { id, role: "engines", state: "Q", submittedAt: now.toISOString().replace(/\.\d{3}Z$/, "Z") };
  if (queue !== undefined) r.queue = queue;
  return r;
}
