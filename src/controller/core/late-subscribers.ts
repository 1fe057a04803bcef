/**
 * Registration notifications for clients that subscribe late. An ipyparallel Client asks the hub for
 * the engine list (connection_request), and only once it has the reply does it connect and subscribe
 * to the notification PUB; until its subscription reaches the controller, the PUB drops every
 * notification for it. Engines that register or go away in between are never known to that client
 * (its `rc.ids` stays short for good) — with thousands of engines registering while a client
 * connects (an MPI job starting as `ipp.Cluster` connects its client), that window loses engines.
 *
 * So the hub remembers when it answered connection requests, and which engines came or went since,
 * and when a subscription arrives it publishes again, for every engine that changed since the oldest
 * connection reply of the last `windowMs`, the notification of its present state: registered (id,
 * uuid) or gone. Clients already subscribed see such a notification twice; ipyparallel's handlers
 * are idempotent (a known id is not added again, an unknown one not removed).
 */
export class LateSubscribers {
  /** When connection replies were sent (ascending), within the window. */
  private replies: number[] = [];
  /** Engines that changed, with when and their uuid (in change order: a Map keeps insertion order). */
  private readonly changed = new Map<number, { at: number; uuid: string }>();

  constructor(readonly windowMs = 30_000) {}

  connectionReplied(nowMs: number): void {
    this.prune(nowMs);
    this.replies.push(nowMs);
  }

  engineChanged(id: number, uuid: string, nowMs: number): void {
    this.prune(nowMs);
    if (this.replies.length === 0) return; // no client is between its reply and its subscription
    this.changed.delete(id);
    this.changed.set(id, { at: nowMs, uuid });
  }

  /** A subscription arrived: the engines (id, last uuid) to notify again, oldest change first. */
  subscribed(nowMs: number): Array<{ id: number; uuid: string }> {
    this.prune(nowMs);
    const since = this.replies[0];
    if (since === undefined) return [];
    const out: Array<{ id: number; uuid: string }> = [];
    for (const [id, c] of this.changed) if (c.at >= since) out.push({ id, uuid: c.uuid });
    return out;
  }

  /** Engines remembered (for tests: bounded by the engines that changed within the window). */
  get size(): number {
    return this.changed.size;
  }

  private prune(nowMs: number): void {
    const cutoff = nowMs - this.windowMs;
    let drop = 0;
    while (drop < this.replies.length && this.replies[drop]! < cutoff) drop++;
    if (drop) this.replies = this.replies.slice(drop);
    const since = this.replies[0];
    // changes older than every reply in the window are known to every client still connecting
    for (const [id, c] of this.changed) {
      if (since !== undefined && c.at >= since) break;
      this.changed.delete(id);
    }
  }
}
