/**
 * Heartbeat I/O over core/heartbeat.ts: a ping every period on hb_ping, pongs read from hb_pong.
 * A registration completes at the engine's first pong; an engine that misses too many beats is
 * unregistered.
 */
import type { HeartMonitor } from "./core/heartbeat.ts";
import type { ControllerContext } from "./context.ts";
import type { EngineRegistry } from "./engines.ts";
import type { Frames } from "./socket-io.ts";
import { countIn } from "./traffic.ts";

/** The most extra pongs a second the repeated registration pings may draw from registered engines. */
export const FAST_PONGS_PER_SECOND = 2000;

export class Heart {
  private lastPing: Buffer = Buffer.alloc(0);
  private beatTimer: NodeJS.Timeout | undefined;
  private fastPingTimer: NodeJS.Timeout | undefined;
  private fastPingUntil = 0;
  private readonly period: number;
  private readonly fastPingMs: number;

  constructor(private readonly ctx: ControllerContext, private readonly monitor: HeartMonitor, private readonly engines: EngineRegistry) {
    this.period = ctx.config.heartbeatPeriodMs;
    this.fastPingMs = Math.max(10, Math.min(100, this.period / 10));
  }

  /** Beat now and every period from now on. */
  start(): void {
    this.beatTimer = setInterval(() => {
      if (!this.ctx.timers.stopped) this.beat();
    }, this.period);
    this.beat();
  }

  stop(): void {
    clearInterval(this.beatTimer);
    clearTimeout(this.fastPingTimer);
  }

  /**
   * An engine starts its heart only after its registration_reply, and the registration completes
   * at the heart's first pong; waiting for the next periodic beat would add up to a whole period
   * (3 s by default) to every engine's registration. So while registrations are pending, repeat
   * the current ping every period/10 (at most 100 ms) for up to two periods. Hearts echo it like
   * any ping; a pong to the current ping counts once per period either way.
   *
   * Every heart answers every repeat too, so the repeats are spaced to keep those extra pongs
   * under FAST_PONGS_PER_SECOND: with 8 engines a repeat every 100 ms, with 4,096 one every 2 s. Without that bound a burst of thousands of registrations drowned the controller in pongs
   * (40,000 a second at 4,096 engines) and the registrations queued behind them timed out.
   */
  pingSoon(): void {
    this.fastPingUntil = Date.now() + 2 * this.period;
    if (this.fastPingTimer) return;
    const tick = () => {
      if (this.ctx.timers.stopped || this.engines.pendingRegistrations === 0 || Date.now() > this.fastPingUntil) {
        this.fastPingTimer = undefined;
        return;
      }
      this.ctx.out.hbPing.send([this.lastPing]);
      this.fastPingTimer = setTimeout(tick, this.fastPingInterval());
    };
    this.fastPingTimer = setTimeout(tick, this.fastPingInterval());
  }

  /**
   * The spacing of repeated pings: period/10, or wider so the hearts answer at most
   * FAST_PONGS_PER_SECOND. Every heart that may answer counts: the registered ones and those of
   * registrations in progress (whose engines have their reply and echo every ping, the first
   * of which completes their registration). Counting only the registered ones let a burst of
   * thousands of new engines draw ten pings a second, each answered by every heart that had its
   * reply, while few registrations had completed yet.
   */
  private fastPingInterval(): number {
    const hearts = this.engines.byId.size + this.engines.pendingRegistrations;
    return Math.max(this.fastPingMs, (hearts * 1000) / FAST_PONGS_PER_SECOND);
  }

  /**
   * Someone other than the engine's own registration socket says the engine is gone: believe its
   * heart. It is treated as disconnected and pinged at once; a live heart answers within the
   * disconnect grace and stays, a dead one is unregistered at the next beat after the grace.
   */
  suspect(engineId: number): void {
    const e = this.engines.byId.get(engineId);
    if (!e) return;
    this.monitor.disconnected(e.uuid, Date.now());
    if (this.lastPing.length > 0) this.ctx.out.hbPing.send([this.lastPing]);
  }

  readonly onPong = (frames: Frames): void => {
    countIn(this.ctx.traffic.heartbeat, frames);
    if (frames.length !== 2) return this.ctx.bad.drop("hb_pong", "truncated", `pong with ${frames.length} frames`);
    const uuid = frames[0]!.toString("utf8");
    if (frames[1]!.length === 0) {
      // the pong ROUTER's disconnect notice (ZMQ_ROUTER_NOTIFY): the heart's connection closed
      this.monitor.disconnected(uuid, Date.now());
      return;
    }
    const r = this.monitor.pong(uuid, frames[1]!);
    if (r === "ok") this.engines.heard(uuid);
    if (r === "new") {
      // complete the registration at the first pong instead of the next beat
      if (this.engines.isRegistering(uuid)) this.engines.finishRegistration(uuid);
      // a heart the registry does not know is forgotten again, unless it completes a purged registration
      else if (!this.engines.byUuid.has(uuid) && !this.engines.lateHeart(uuid)) this.monitor.remove(uuid);
    }
  };

  private beat(): void {
    const { metrics } = this.ctx;
    const now = Date.now();
    const r = this.monitor.beat((now - this.ctx.startedAt) / 1000, now);
    for (const h of r.newHearts) if (this.engines.isRegistering(h)) this.engines.finishRegistration(h);
    for (const e of this.engines.byId.values()) {
      if (this.monitor.missed(e.uuid) > 0) metrics.heartbeatMisses.labels(String(e.id)).inc();
    }
    for (const h of r.failures) {
      const e = this.engines.byUuid.get(h);
      if (e) this.engines.unregister(e.id, "heartbeat");
    }
    for (const h of r.disconnected) {
      const e = this.engines.byUuid.get(h);
      if (e) this.engines.unregister(e.id, "heart_disconnected");
    }
    this.engines.refreshGauges();
    this.lastPing = r.ping;
    this.ctx.out.hbPing.send([r.ping]);
  }
}
