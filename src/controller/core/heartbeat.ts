/**
 * Heartbeat bookkeeping (ipyparallel's HeartMonitor): each beat publishes the monitor's lifetime
 * as a decimal string; engines echo it. A pong equal to the current or the previous ping counts.
 * At each beat, hearts that did not answer go on probation; more than `maxMisses` consecutive
 * misses and the heart is declared dead.
 */
export type PongResult = "new" | "ok" | "stale";

export interface BeatResult {
  /** The frame to publish now. */
  ping: Buffer;
  /** Hearts that answered for the first time during the last period. */
  newHearts: string[];
  /** Hearts over the miss limit: now removed. */
  failures: string[];
}

export class HeartMonitor {
  private readonly hearts = new Set<string>();
  private responses = new Set<string>();
  private readonly probation = new Map<string, number>();
  private current = "";
  private last = "";
  readonly maxMisses: number;

  constructor(opts: { maxMisses?: number } = {}) {
    this.maxMisses = opts.maxMisses ?? 10;
  }

  static formatLifetime(seconds: number): string {
    const s = String(seconds);
    return s.includes(".") || s.includes("e") ? s : `${s}.0`;
  }

  /** Called every period with the seconds since the monitor started. */
  beat(lifetimeSeconds: number): BeatResult {
    const newHearts: string[] = [];
    for (const h of this.responses) if (!this.hearts.has(h)) newHearts.push(h);
    for (const h of newHearts) this.hearts.add(h);
    const failures: string[] = [];
    for (const h of this.hearts) {
      if (this.responses.has(h)) {
        this.probation.delete(h);
        continue;
      }
      if (newHearts.includes(h)) continue;
      const n = (this.probation.get(h) ?? 0) + 1;
      if (n > this.maxMisses) failures.push(h);
      else this.probation.set(h, n);
    }
    for (const h of failures) this.remove(h);
    this.responses = new Set();
    this.last = this.current;
    this.current = HeartMonitor.formatLifetime(lifetimeSeconds);
    return { ping: Buffer.from(this.current, "ascii"), newHearts, failures };
  }

  /**
   * An engine echoed a ping. "new" = a heart not yet known answered correctly (the hub may finish
   * its registration right away); "ok" = a known heart; "stale" = neither current nor previous ping.
   */
  pong(heart: string, payload: Buffer): PongResult {
    const p = payload.toString("ascii");
    if (p === "" || (p !== this.current && p !== this.last)) return "stale";
    this.responses.add(heart);
    if (!this.hearts.has(heart)) {
      this.hearts.add(heart);
      return "new";
    }
    return "ok";
  }

  /** Expect a heart that has not answered yet (an engine restored after a controller restart): it fails like any other if it stays silent. */
  track(heart: string): void {
    this.hearts.add(heart);
  }

  has(heart: string): boolean {
    return this.hearts.has(heart);
  }

  remove(heart: string): void {
    this.hearts.delete(heart);
    this.probation.delete(heart);
    this.responses.delete(heart);
  }

  /** Consecutive missed beats of a heart. */
  missed(heart: string): number {
    return this.probation.get(heart) ?? 0;
  }
}
