/**
 * Broadcast target splitting, as ipyparallel's BroadcastScheduler tree does it: with
 * `depth` levels there are 2**depth leaves, and an engine id's leaf is chosen by the binary path of
 * `id % 2**depth`. Engines connect their shell to `broadcast[id % leaves]`, which is the same leaf.
 */
export type BroadcastTarget = [uuid: string, id: number];

export function leafCount(depth: number): number {
  return 2 ** depth;
}

/** Index of the leaf serving engine `id`. */
export function leafFor(id: number, depth: number): number {
  const n = leafCount(depth);
  return ((id % n) + n) % n;
}

/** Targets grouped per leaf, in leaf order; each group keeps the request's order. */
export function splitTargets(targets: readonly BroadcastTarget[], depth: number): BroadcastTarget[][] {
  const groups: BroadcastTarget[][] = Array.from({ length: leafCount(depth) }, () => []);
  for (const t of targets) groups[leafFor(t[1], depth)]!.push(t);
  return groups;
}

/** Parse `metadata.targets` of a broadcast request: `[[uuid, id], ...]`. */
export function parseBroadcastTargets(v: unknown): BroadcastTarget[] | null {
  if (!Array.isArray(v)) return null;
  const out: BroadcastTarget[] = [];
  for (const t of v) {
    if (!Array.isArray(t) || typeof t[0] !== "string" || typeof t[1] !== "number") return null;
    out.push([t[0], t[1]]);
  }
  return out;
}

/** msg_id the engine sees for its copy of a broadcast request. */
export const broadcastMsgId = (original: string, uuid: string) => `${original}_${uuid}`;
