/**
 * Heartbeat bookkeeping (ipyparallel's HeartMonitor): each beat publishes the monitor's lifetime
 * as a decimal string; engines echo it. A pong equal to the current or the previous ping counts.
 * At each beat, hearts that did not answer go on probation; more than `maxMisses` consecutive
 * misses and the heart is declared dead.
 *
 * A heart whose connection closed (the pong ROUTER's disconnect notice: the engine's process is
 * gone, its kernel closed the socket) is declared dead sooner: at the first beat at least
 * `disconnectGraceMs` after the notice, unless it answered again meanwhile (a live engine whose
 * connection dropped reconnects and pongs). An engine that vanishes without closing its
 * connections (a crashed node, a partition) is still found by missed beats.
 */
export type PongResult = "new" | "ok" | "stale";

export interface BeatResult {
  /** The frame to publish now. */
  ping: Buffer;
  /** Hearts that answered for the first time during the last period. */
  newHearts: string[];
  /** Hearts over the miss limit: now removed. */
  failures: string[];
  /** Hearts whose connection closed and that did not answer since: now removed. */
  disconnected: string[];
}

export class HeartMonitor {
  private readonly hearts = new Set<string>();
  private responses = new Set<string>();
  private readonly probation = new Map<string, number>();
  /** Hearts expected without having answered yet (restored engines), with the misses each may have until it first answers. */
  private readonly patience = new Map<string, number>();
  /** When each heart's connection closed (cleared by its next pong). */
  private readonly disconnectedAt = new Map<string, number>();
  private current = "";
  private last = "";
  readonly maxMisses: number;
  readonly disconnectGraceMs: number;

  constructor(opts: { maxMisses?: number; disconnectGraceMs?: number } = {}) {
    this.maxMisses = opts.maxMisses ?? 10;
    this.disconnectGraceMs = opts.disconnectGraceMs ?? 1500;
  }

  static formatLifetime(seconds: number): string {
    const s = String(seconds);
    return s.includes(".") || s.includes("e") ? s : `${s}.0`;
  }

  /** Called every period with the seconds since the monitor started (and the time now, in ms). */
  beat(lifetimeSeconds: number, nowMs = Date.now()): BeatResult {
    const newHearts = new Set<string>();
    for (const h of this.responses) if (!this.hearts.has(h)) newHearts.add(h);
    for (const h of newHearts) this.hearts.add(h);
    const failures: string[] = [];
    for (const h of this.hearts) {
      if (this.responses.has(h)) {
        this.probation.delete(h);
        this.patience.delete(h);
        continue;
      }
      if (newHearts.has(h)) continue;
      const n = (this.probation.get(h) ?? 0) + 1;
      if (n > (this.patience.get(h) ?? this.maxMisses)) failures.push(h);
      else this.probation.set(h, n);
    }
    for (const h of failures) this.remove(h);
    const disconnected: string[] = [];
    for (const [h, at] of this.disconnectedAt) if (nowMs - at >= this.disconnectGraceMs) disconnected.push(h);
    for (const h of disconnected) this.remove(h);
    this.responses = new Set();
    this.last = this.current;
    this.current = HeartMonitor.formatLifetime(lifetimeSeconds);
    return { ping: Buffer.from(this.current, "ascii"), newHearts: [...newHearts], failures, disconnected };
  }

  /**
   * An engine echoed a ping. "new" = a heart not yet known answered correctly (the hub may finish
   * its registration right away); "ok" = a known heart; "stale" = neither current nor previous ping.
   */
  pong(heart: string, payload: Buffer): PongResult {
    const p = payload.toString("ascii");
    if (p === "" || (p !== this.current && p !== this.last)) return "stale";
    this.responses.add(heart);
    this.disconnectedAt.delete(heart);
    if (!this.hearts.has(heart)) {
      this.hearts.add(heart);
      return "new";
    }
    return "ok";
  }

  /**
   * Expect a heart that has not answered yet (an engine restored after a controller restart): it
   * fails like any other if it stays silent, after `maxMisses` beats, or `firstAnswerMisses` when
   * given (a controller in a new pod is reachable only once the Service routes to it, which can
   * take longer than the usual miss limit; the engines themselves wait 50 missed pings).
   */
  track(heart: string, firstAnswerMisses?: number): void {
    this.hearts.add(heart);
    if (firstAnswerMisses !== undefined && firstAnswerMisses > this.maxMisses) this.patience.set(heart, firstAnswerMisses);
  }

  /** The heart's connection closed at `nowMs` (ignored for hearts not known). */
  disconnected(heart: string, nowMs: number): void {
    if (this.hearts.has(heart)) this.disconnectedAt.set(heart, nowMs);
  }

  has(heart: string): boolean {
    return this.hearts.has(heart);
  }

  remove(heart: string): void {
    this.hearts.delete(heart);
    this.patience.delete(heart);
    this.probation.delete(heart);
    this.responses.delete(heart);
    this.disconnectedAt.delete(heart);
  }

  /** Consecutive missed beats of a heart. */
  missed(heart: string): number {
    return this.probation.get(heart) ?? 0;
  }
}
