/**
 * The hub's view of every request: the task records kept for queries (a RecordStore) and which
 * msg_ids are pending, recently completed, or waiting for an engine. Shared by the hub, the relays
 * and the schedulers. Pending and unassigned hold only unfinished requests; `completed` remembers
 * the most recent `completedHistory` finished ones (upstream's all_completed, which it never
 * culls), so none of these grows with the number of requests ever made.
 */
import { HubDb, type RecordStore } from "./core/hub-db.ts";
import { RecentMap } from "./core/recent.ts";
import type { ControllerMetrics } from "../metrics/controller.ts";

/** Finished requests remembered by default (for result_request status and queue_request). */
export const DEFAULT_COMPLETED_HISTORY = 65_536;

export class HubRecords {
  readonly db: RecordStore;
  readonly pending = new Set<string>();
  /** The most recently finished requests: msg_id → the engine that answered (null: none did). */
  readonly completed: RecentMap<string, string | null>;
  /** Load-balanced tasks not yet sent to an engine. */
  readonly unassigned = new Set<string>();
  private culledSeen = 0;

  /** `store`: records kept elsewhere (the SQLite store) instead of the bounded in-memory HubDb. */
  constructor(private readonly metrics: ControllerMetrics, limits: { recordLimit?: number; sizeLimitBytes: number; completedHistory?: number }, store?: RecordStore) {
    this.db = store ?? new HubDb(limits);
    this.completed = new RecentMap(limits.completedHistory ?? DEFAULT_COMPLETED_HISTORY);
  }

  /** A pending request was answered: pending → completed. Returns false (and changes nothing) if it was not pending. */
  completeIfPending(msgId: string, engine: string | null): boolean {
    if (!this.pending.delete(msgId)) return false;
    this.completed.set(msgId, engine);
    return true;
  }

  /** A request is answered (or failed) whether or not it was pending. */
  complete(msgId: string, engine: string | null): void {
    this.pending.delete(msgId);
    this.completed.set(msgId, engine);
  }

  /** The remembered completed requests that `engine` answered, oldest first. */
  completedOn(engine: string): string[] {
    const out: string[] = [];
    for (const [id, e] of this.completed.entries()) if (e === engine) out.push(id);
    return out;
  }

  /** After any db change: refresh the record gauge and count records culled since last time. */
  touched(): void {
    this.metrics.dbRecords.set(this.db.size);
    if (this.db.culled > this.culledSeen) {
      this.metrics.dbCulled.inc(this.db.culled - this.culledSeen);
      this.culledSeen = this.db.culled;
    }
  }
}
