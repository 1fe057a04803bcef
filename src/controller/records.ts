/**
 * The hub's view of every request: the task records kept for queries (HubDb) and which msg_ids
 * are pending, completed, or waiting for an engine. Shared by the hub, the relays and the schedulers.
 */
import { HubDb } from "./core/hub-db.ts";
import type { ControllerMetrics } from "../metrics/controller.ts";

export class HubRecords {
  readonly db: HubDb;
  readonly pending = new Set<string>();
  readonly completed = new Set<string>();
  /** Load-balanced tasks not yet sent to an engine. */
  readonly unassigned = new Set<string>();
  private culledSeen = 0;

  constructor(private readonly metrics: ControllerMetrics, limits: { recordLimit?: number; sizeLimitBytes: number }) {
    this.db = new HubDb(limits);
  }

  /** A pending request was answered: pending → completed. Returns false (and changes nothing) if it was not pending. */
  completeIfPending(msgId: string): boolean {
    if (!this.pending.delete(msgId)) return false;
    this.completed.add(msgId);
    return true;
  }

  /** A request is answered (or failed) whether or not it was pending. */
  complete(msgId: string): void {
    this.pending.delete(msgId);
    this.completed.add(msgId);
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
