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

/** The scheduler's pending reason of the cluster's live engine job, as a single token. */
function schedulerReason(status: EngineClusterStatus): string | undefined {
  const jobs = status.pbs?.jobs ?? [];
  const live = [...jobs].reverse().find((j) => j.role === "engines" && j.reason !== undefined && j.reason !== "");
  const token = live?.reason?.replace(/[()]/g, "").trim().split(/[\s,;]+/)[0];
  return token !== undefined && token !== "" ? token : undefined;
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
