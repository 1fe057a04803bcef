/**
 * The registry of engines: registrations in progress (accepted, waiting for the first heartbeat),
 * registered engines, and what happens when one goes away: the unregistration notification, and
 * its pending work failed after a grace period (late results may still arrive until then).
 */
import type { EventEmitter } from "node:events";
import type { HeartMonitor } from "./core/heartbeat.ts";
import { errorContent, pyRepr } from "./core/errors.ts";
import { Registrations } from "./core/registrations.ts";
import { notify, type ControllerContext } from "./context.ts";

export interface EngineState {
  id: number;
  uuid: string;
  ident: Buffer;
  registeredAt: Date;
  /** Pending mux msg_ids, with when each was received (Date.now(), for the latency histogram). */
  queue: Map<string, number>;
  /** Pending task msg_ids. */
  tasks: Set<string>;
  /** Requests this engine has answered (the ids themselves: HubRecords.completedOn, recent ones only). */
  completedCount: number;
  /** This engine's queue-depth gauge child. */
  depthGauge: { set(v: number): void };
}

export interface EngineSummary {
  id: number;
  uuid: string;
  alive: boolean;
  registeredAt: Date;
  queueDepth: number;
  missedBeats: number;
}

/**
 * Beats a restored engine may miss before its heart first answers: ipengine's default
 * max_heartbeat_misses, the time an engine itself waits for a silent controller. A controller in a
 * new pod is reached only once the Service routes to it (pod Ready, endpoints, kube-proxy).
 */
export const RESTORED_FIRST_ANSWER_MISSES = 50;

/** The schedulers' side of an engine's arrival and departure (wired in controller.ts). */
export interface EngineWork {
  /** A registration completed: the engine can take load-balanced tasks. */
  engineAdded(uuid: string): void;
  /** An engine is gone: returns what to do once the grace period for late results is over. */
  engineRemoved(e: EngineState): () => void;
}

export class EngineRegistry {
  readonly byId = new Map<number, EngineState>();
  readonly byUuid = new Map<string, EngineState>();
  /** Registrations in progress, and the recently purged ones a late heart may still complete. */
  private readonly incoming: Registrations;
  /** The one timer that purges stalled registrations, armed for the earliest deadline. */
  private purgeTimer: NodeJS.Timeout | undefined;
  private idCounter = 0;
  private firstEngineSeen = false;
  /** Restored engines whose heart has not answered this controller yet: not alive until it does. */
  private readonly unheard = new Set<string>();

  constructor(
    private readonly ctx: ControllerContext,
    private readonly heart: HeartMonitor,
    private readonly events: EventEmitter,
    private readonly work: EngineWork,
  ) {
    this.incoming = new Registrations(ctx.config.purgedRegistrationsKept);
  }

  get pendingRegistrations(): number {
    return this.incoming.size;
  }

  isRegistering(uuid: string): boolean {
    return this.incoming.has(uuid);
  }

  /** Whether a registration for `uuid` would clash with a registered or registering engine. */
  uuidInUse(uuid: string): boolean {
    return this.byUuid.has(uuid) || this.incoming.has(uuid);
  }

  /** The requested id if free, else the next unused one. */
  newEngineId(requested: unknown): number {
    if (typeof requested === "number" && Number.isInteger(requested) && requested >= 0) {
      const holder = this.byId.get(requested);
      if (holder !== undefined && this.unheard.has(holder.uuid)) {
        // A restored engine that has not answered this controller, and a new process asking for
        // its id: ids are asked for by MPI rank, and a rank registers again only in a relaunched
        // world, so the restored process is gone. Without this the new world's engines would get
        // new ids while the restored ones wait out their patience.
        this.ctx.log.info("a new engine takes the id of a restored engine that never answered", { id: requested, uuid: holder.uuid });
        this.unregister(requested, "replaced");
      }
      const inUse = this.byId.has(requested) || this.incoming.hasId(requested);
      if (!inUse) {
        this.idCounter = Math.max(requested + 1, this.idCounter);
        return requested;
      }
      this.ctx.log.warn("requested engine id in use", { requested });
    }
    return this.idCounter++;
  }

  /** A registration was accepted: it completes at the engine's first heartbeat, or is purged after a timeout. */
  accept(uuid: string, eid: number, timeoutMs: number): void {
    this.incoming.accept(uuid, eid, performance.now() + timeoutMs);
    this.armPurge();
  }

  private armPurge(): void {
    if (this.purgeTimer) return;
    const due = this.incoming.nextDeadline();
    if (due === undefined) return;
    this.purgeTimer = this.ctx.timers.later(Math.max(0, due - performance.now()), () => {
      this.purgeTimer = undefined;
      for (const r of this.incoming.expire(performance.now())) {
        this.ctx.metrics.registrations.labels("stalled").inc();
        this.ctx.log.warn("purging stalled registration (a later first heartbeat still completes it)", { id: r.id, uuid: r.uuid });
      }
      this.armPurge();
    });
  }

  /** The engine's heart beat for the first time: it is registered. */
  finishRegistration(uuid: string): void {
    const eid = this.incoming.complete(uuid);
    if (eid === undefined) return;
    this.ctx.metrics.registrations.labels("ok").inc();
    this.addEngine(uuid, eid);
  }

  /**
   * A heart answered that is neither registered nor registering: if its registration was purged
   * for a missing first heartbeat (core/registrations.ts), complete it now when its id is still
   * free. Returns whether the engine is registered now.
   */
  lateHeart(uuid: string): boolean {
    const late = this.incoming.lateHeart(uuid, (id) => this.byId.has(id));
    if (late.kind === "unknown") return false;
    const { metrics, log } = this.ctx;
    if (late.kind === "id-taken") {
      metrics.lateRegistrations.labels("id_taken").inc();
      log.warn("a purged registration's heart answered, but its id was taken meanwhile: the engine stays out", { id: late.id, uuid, holder: this.byId.get(late.id)?.uuid });
      return false;
    }
    metrics.lateRegistrations.labels("completed").inc();
    log.info("completing a purged registration: its heart answered after the registration timeout", { id: late.id, uuid });
    this.addEngine(uuid, late.id);
    return true;
  }

  /** A new engine's state, listed under its id and uuid (a registration completed, or a restore). */
  private insertEngine(uuid: string, eid: number): EngineState {
    const e: EngineState = {
      id: eid, uuid, ident: Buffer.from(uuid, "utf8"), registeredAt: this.ctx.clock(), queue: new Map(), tasks: new Set(), completedCount: 0,
      depthGauge: this.ctx.metrics.queueDepth.labels(String(eid)),
    };
    this.byId.set(eid, e);
    this.byUuid.set(uuid, e);
    return e;
  }

  private addEngine(uuid: string, eid: number): void {
    const { metrics, log } = this.ctx;
    const e = this.insertEngine(uuid, eid);
    if (!this.firstEngineSeen) {
      this.firstEngineSeen = true;
      metrics.timeToFirstEngine.set((Date.now() - this.ctx.startedAt) / 1000);
    }
    this.setDepth(e);
    this.ctx.metrics.enginesRegistered.set(this.byId.size);
    notify(this.ctx, "registration_notification", { id: e.id, uuid });
    this.work.engineAdded(uuid);
    log.info("engine registered", { id: e.id, uuid });
    this.events.emit("engine-registered", this.summary(e));
  }

  /**
   * --restore: an engine the previous controller had, registered again without a round trip and
   * without a registration notification (as upstream's _load_engine_state). Its heart is expected:
   * if it does not beat within the miss limit, it is unregistered like any silent engine.
   */
  restore(eid: number, uuid: string, nextId: number): void {
    this.idCounter = Math.max(this.idCounter, nextId, eid + 1);
    if (this.byId.has(eid) || this.uuidInUse(uuid)) return;
    const e = this.insertEngine(uuid, eid);
    // as long as the engine itself waits for a silent controller (ipengine's max_heartbeat_misses, 50)
    this.heart.track(uuid, RESTORED_FIRST_ANSWER_MISSES);
    this.unheard.add(uuid);
    this.setDepth(e);
    this.refreshGauges();
    this.work.engineAdded(uuid);
    this.ctx.log.info("engine restored", { id: eid, uuid });
    this.events.emit("engine-registered", this.summary(e));
  }

  /** The id the next new engine gets unless it asks for a free one (upstream's next_id). */
  get nextId(): number {
    return this.idCounter;
  }

  /** Unregister an engine (or cancel its registration in progress). */
  unregister(eid: number, reason: string): void {
    const { metrics, log, records } = this.ctx;
    const e = this.byId.get(eid);
    if (!e) {
      for (const uuid of this.incoming.cancelId(eid)) log.info("canceling registration", { id: eid, uuid });
      return;
    }
    this.byId.delete(eid);
    this.byUuid.delete(e.uuid);
    this.unheard.delete(e.uuid);
    this.heart.remove(e.uuid);
    metrics.unregistrations.labels(reason).inc();
    metrics.forgetEngine(String(eid));
    metrics.enginesRegistered.set(this.byId.size);
    notify(this.ctx, "unregistration_notification", { id: eid, uuid: e.uuid });
    log.warn("engine unregistered", { id: eid, uuid: e.uuid, reason });

    const afterGrace = this.work.engineRemoved(e);
    this.ctx.timers.later(this.ctx.config.strandedTaskDelayMs ?? 5000, () => {
      afterGrace();
      // mux requests: clients fail them on the notification; the hub records the error
      for (const msgId of e.queue.keys()) {
        records.complete(msgId, e.uuid);
        const content = errorContent("EngineError", `Engine ${eid} died while running task ${pyRepr(msgId)}`);
        if (records.db.has(msgId)) {
          records.db.update(msgId, { result_content: content, result_header: { engine: e.uuid, date: this.ctx.now() }, result_buffers: [], completed: this.ctx.now(), engine_uuid: e.uuid });
        }
        metrics.tasksFailed.labels("mux", "engine_died").inc();
      }
      e.queue.clear();
      records.touched();
    });
    this.events.emit("engine-unregistered", { ...this.summary(e), alive: false });
  }

  /** A heart answered: a restored engine is attached again from now on. */
  heard(uuid: string): void {
    if (this.unheard.size > 0 && this.unheard.delete(uuid)) this.ctx.log.info("restored engine's heart answered", { id: this.byUuid.get(uuid)?.id, uuid });
  }

  /** Alive: its heart answered this controller and has missed no beat since. */
  private alive(uuid: string): boolean {
    return this.heart.missed(uuid) === 0 && !this.unheard.has(uuid);
  }

  summary(e: EngineState): EngineSummary {
    return {
      id: e.id, uuid: e.uuid, alive: this.alive(e.uuid), registeredAt: e.registeredAt,
      queueDepth: e.queue.size + e.tasks.size, missedBeats: this.heart.missed(e.uuid),
    };
  }

  summaries(): EngineSummary[] {
    return [...this.byId.values()].sort((x, y) => x.id - y.id).map((e) => this.summary(e));
  }

  setDepth(e: EngineState): void {
    e.depthGauge.set(e.queue.size + e.tasks.size);
  }

  /** Recount the engine gauges: O(engines), so once per heartbeat (registrations only set the count). */
  refreshGauges(): void {
    this.ctx.metrics.enginesRegistered.set(this.byId.size);
    let alive = 0;
    for (const e of this.byId.values()) if (this.alive(e.uuid)) alive++;
    this.ctx.metrics.enginesAlive.set(alive);
  }
}
