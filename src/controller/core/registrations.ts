/**
 * Registrations in progress (accepted, the engine has its reply, its heart has not answered yet)
 * and a bounded memory of the ones purged for a missing first heartbeat.
 *
 * Purging: each registration has a deadline; the caller keeps a single timer for the earliest
 * one (`nextDeadline`) and calls `expire` when it fires, instead of a timer per registration
 * (cancelling thousands of timers during a burst showed in profiles). Deadlines are kept in
 * acceptance order (a deadline earlier than the one before is raised to it), so the earliest is
 * always the first in line.
 *
 * Late hearts: on a loaded node an engine may get its reply and start its heart only after the
 * registration timeout (128 Python start-ups on 2 cores took longer than 30 s). Its engine process
 * is alive and connected, and would stay outside for good, since ipyparallel engines never register
 * again. So a purged registration is remembered (uuid → id, the most recent `purgedLimit` of them)
 * and completed after all when its heart answers, if its id is still free. If another engine took
 * the id meanwhile (one that asked for it, as an MPI engine asks for its rank), the late engine is
 * left out, as upstream leaves out a heart it does not know: the engine was told its id in the
 * registration reply, and two engines under one id would mix up results and output.
 */

export interface Registration {
  id: number;
  uuid: string;
  /** Purged at this time unless the heart answered (ms, the caller's clock). */
  deadline: number;
}

export type LateHeart =
  /** The heart is not of a recently purged registration. */
  | { kind: "unknown" }
  /** The purged registration can complete now, under its id. */
  | { kind: "complete"; id: number }
  /** Its id was taken by another engine since the purge: the engine stays out. */
  | { kind: "id-taken"; id: number };

export class Registrations {
  private readonly pending = new Map<string, Registration>();
  private readonly pendingIds = new Set<number>();
  /** Purged registrations, oldest first: uuid → id. */
  private readonly purged = new Map<string, number>();
  private lastDeadline = -Infinity;

  constructor(private readonly purgedLimit = 8192) {}

  /** Registrations in progress. */
  get size(): number {
    return this.pending.size;
  }

  /** Purged registrations still remembered. */
  get purgedSize(): number {
    return this.purged.size;
  }

  has(uuid: string): boolean {
    return this.pending.has(uuid);
  }

  hasId(id: number): boolean {
    return this.pendingIds.has(id);
  }

  /** A registration was accepted. A purged one of the same uuid is forgotten: this one replaces it. */
  accept(uuid: string, id: number, deadline: number): void {
    this.lastDeadline = Math.max(this.lastDeadline, deadline);
    this.purged.delete(uuid);
    this.pending.set(uuid, { id, uuid, deadline: this.lastDeadline });
    this.pendingIds.add(id);
  }

  /** The heart answered in time: the registration leaves the line; returns its id. */
  complete(uuid: string): number | undefined {
    const r = this.pending.get(uuid);
    if (!r) return undefined;
    this.pending.delete(uuid);
    this.pendingIds.delete(r.id);
    return r.id;
  }

  /** Cancel what is known under engine id `id`: registrations in progress and purged ones (the engine said it is leaving). Returns the uuids of the registrations in progress. */
  cancelId(id: number): string[] {
    const cancelled: string[] = [];
    if (this.pendingIds.delete(id)) {
      for (const [uuid, r] of this.pending) {
        if (r.id === id) {
          this.pending.delete(uuid);
          cancelled.push(uuid);
        }
      }
    }
    for (const [uuid, pid] of this.purged) if (pid === id) this.purged.delete(uuid);
    return cancelled;
  }

  /** When the earliest registration in progress is due, if any. */
  nextDeadline(): number | undefined {
    for (const r of this.pending.values()) return r.deadline;
    return undefined;
  }

  /** Purge every registration whose deadline is `now` or earlier; they are remembered for a late heart. */
  expire(now: number): Registration[] {
    const out: Registration[] = [];
    for (const r of this.pending.values()) {
      if (r.deadline > now) break;
      out.push(r);
    }
    for (const r of out) {
      this.pending.delete(r.uuid);
      this.pendingIds.delete(r.id);
      this.purged.delete(r.uuid);
      this.purged.set(r.uuid, r.id);
    }
    while (this.purged.size > this.purgedLimit) {
      const oldest = this.purged.keys().next().value as string;
      this.purged.delete(oldest);
    }
    return out;
  }

  /**
   * A heart that is neither registered nor registering answered. `idInUse` says whether a
   * registered engine holds an id (registrations in progress are checked here). Either way the
   * purged registration is forgotten: decided once.
   */
  lateHeart(uuid: string, idInUse: (id: number) => boolean): LateHeart {
    const id = this.purged.get(uuid);
    if (id === undefined) return { kind: "unknown" };
    this.purged.delete(uuid);
    if (idInUse(id) || this.pendingIds.has(id)) return { kind: "id-taken", id };
    return { kind: "complete", id };
  }
}
