/**
 * Status comparison for "write status once, only when it changed": a deep equality that ignores
 * key order, and a guard that keeps a condition's lastTransitionTime when nothing else about the
 * condition changed, so an operator restart (a fresh `now`) never makes status flap.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((v, i) => deepEqual(v, bb[i]));
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const ak = Object.keys(ao).filter((k) => ao[k] !== undefined);
  const bk = Object.keys(bo).filter((k) => bo[k] !== undefined);
  return ak.length === bk.length && ak.every((k) => Object.prototype.hasOwnProperty.call(bo, k) && deepEqual(ao[k], bo[k]));
}

interface Condition { type?: string; status?: string; reason?: string; message?: string; observedGeneration?: number; lastTransitionTime?: string }

/**
 * Returns `next` with each condition's lastTransitionTime taken from `prev` when the condition's
 * status is unchanged (Kubernetes' meaning of the field: when the status last flipped).
 */
export function keepTransitionTimes<T>(prev: unknown, next: T): T {
  const pc = (prev as { conditions?: Condition[] } | undefined)?.conditions;
  const nc = (next as { conditions?: Condition[] } | undefined)?.conditions;
  if (!Array.isArray(pc) || !Array.isArray(nc)) return next;
  const byType = new Map(pc.map((c) => [c.type, c]));
  return {
    ...next,
    conditions: nc.map((c) => {
      const old = byType.get(c.type);
      return old && old.status === c.status && old.lastTransitionTime ? { ...c, lastTransitionTime: old.lastTransitionTime } : c;
    }),
  };
}
