/**
 * `status.reason`: one short word for `kubectl get ec` saying why a cluster is not Ready — the
 * Ready condition's reason (WaitingForWorkers, ImagePullFailed, ControllerNotAvailable,
 * EnginesRegistering, ...), and for a queued or held PBS job the scheduler's own pending reason
 * after it (`JobQueued:Priority`, `JobQueued:Resources`). Absent while the cluster is Ready; the
 * full sentence stays in the condition's message (`kubectl describe ec`).
 */
import type { EngineClusterStatus } from "../../api/engine-cluster.ts";

/** Longest reason shown (the column stays readable; the message has the rest). */
export const MAX_REASON_LENGTH = 64;

/**
 * The scheduler's pending reason of the cluster's live engine job, as one token: Slurm's reason
 * codes are one already (Priority, Resources, ReqNodeNotAvail); a PBS Pro comment such as "Not
 * Running: Insufficient amount of resource: ncpus (R: 8 A: 4 T: 4)" becomes
 * InsufficientAmountOfResource.
 */
function schedulerReason(status: EngineClusterStatus): string | undefined {
  const jobs = status.pbs?.jobs ?? [];
  const live = [...jobs].reverse().find((j) => j.role === "engines" && j.reason !== undefined && j.reason.trim() !== "");
  if (live?.reason === undefined) return undefined;
  const phrase = live.reason.trim().replace(/^\(|\)$/g, "").replace(/^not running:\s*/i, "").split(/[:(]/)[0]!;
  const words = phrase.split(/[^A-Za-z0-9_]+/).filter((w) => w !== "");
  const token = words.length === 1 ? words[0]! : words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
  return token !== "" ? token.slice(0, 40) : undefined;
}

export function shortReason(status: EngineClusterStatus): string | undefined {
  const ready = status.conditions?.find((c) => c.type === "Ready");
  if (ready === undefined || ready.status === "True") return undefined;
  let reason = ready.reason;
  if (reason === "JobQueued" || reason === "JobHeld") {
    const why = schedulerReason(status);
    if (why !== undefined) reason = `${reason}:${why}`;
  }
  return reason.slice(0, MAX_REASON_LENGTH);
}

/** `status` with `reason` set from its conditions (or removed when Ready). */
export function withShortReason(status: EngineClusterStatus): EngineClusterStatus {
  const { reason: _old, ...rest } = status;
  const reason = shortReason(status);
  return reason === undefined ? rest : { ...rest, reason };
}
