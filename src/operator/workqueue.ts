/**
 * A per-key work queue with client-go's semantics:
 * - deduplicated: a key waiting in the queue is queued once, however often it is added;
 * - one item in flight per key: a key added while it is being processed is queued again only when
 *   the worker calls done(key), so one object is never reconciled by two workers at once;
 * - rate-limited retry: addRateLimited(key) waits base * 2^failures (capped) before re-adding;
 *   forget(key) clears the failure count;
 * - delayed add (requeue-after): addAfter(key, ms) keeps only the earliest pending delay per key.
 * Different keys are processed in parallel by the workers of `runWorkers`.
 */
import { realClock, type Clock, type TimerHandle } from "./clock.ts";

export interface WorkQueueOptions {
  clock?: Clock;
  /** Rate-limited retry delay: baseDelayMs * 2^(failures-1), at most maxDelayMs. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Called with the number of keys waiting (not in flight) whenever it changes. */
  onDepth?: (depth: number) => void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; timer: TimerHandle }>();
  private readonly waiters: Array<(key: string | undefined) => void> = [];
  private readonly drainWaiters: Array<() => void> = [];
  private shuttingDown = false;
  private readonly clock: Clock;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly onDepth: (depth: number) => void;

  constructor(opts: WorkQueueOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.baseDelayMs = opts.baseDelayMs ?? 5;
    this.maxDelayMs = opts.maxDelayMs ?? 300_000;
    this.onDepth = opts.onDepth ?? (() => {});
  }

  /** Keys waiting to be processed (the depth metric). */
  get length(): number { return this.queue.length; }
  get inFlight(): number { return this.processing.size; }
  get isShuttingDown(): boolean { return this.shuttingDown; }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds `key` after `ms`; a later request for a key already waiting longer replaces it. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = this.clock.now() + ms;
    const existing = this.delayed.get(key);
    if (existing && existing.at <= at) return;
    existing?.timer.cancel();
    const timer = this.clock.setTimer(ms, () => { this.delayed.delete(key); this.add(key); });
    this.delayed.set(key, { at, timer });
  }

  /**
   * Drops `key`'s pending delayed add, if any. A reconcile's requeue decision replaces the one an
   * earlier reconcile of the same key made: it saw newer state (level-based), and the earlier timer
   * would only run one more reconcile of an unchanged object.
   */
  cancelDelayed(key: string): void {
    this.delayed.get(key)?.timer.cancel();
    this.delayed.delete(key);
  }

  /** Re-adds `key` after its exponential backoff delay; returns that delay in ms. */
  addRateLimited(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const delay = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(n - 1, 52));
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears `key`'s failure count (after a success, or when giving up on it). */
  forget(key: string): void { this.failures.delete(key); }

  numRequeues(key: string): number { return this.failures.get(key) ?? 0; }

  /** The next key to process, marked in flight; undefined once the queue is shut down and empty. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) return Promise.resolve(this.take(key));
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks `key` finished; if it was added meanwhile it goes back in the queue. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) this.push(key);
    if (this.processing.size === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  /**
   * Stops accepting keys, drops delayed ones and wakes idle workers. With `drain`, resolves once
   * the keys in flight are done (keys still waiting are dropped: the next leader relists them).
   */
  async shutDown(drain = true): Promise<void> {
    this.shuttingDown = true;
    for (const d of this.delayed.values()) d.timer.cancel();
    this.delayed.clear();
    for (const k of this.queue.splice(0)) this.dirty.delete(k);
    this.onDepth(0);
    for (const w of this.waiters.splice(0)) w(undefined);
    if (drain && this.processing.size > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
  }

  private push(key: string): void {
    const waiter = this.waiters.shift();
    if (waiter) { waiter(this.take(key)); return; }
    this.queue.push(key);
    this.onDepth(this.queue.length);
  }

  private take(key: string): string {
    this.dirty.delete(key);
    this.processing.add(key);
    this.onDepth(this.queue.length);
    return key;
  }
}

/**
 * Runs `workers` loops that take keys from `queue` and call `handle`, always marking the key done.
 * Resolves when the queue is shut down and every worker has returned.
 */
export async function runWorkers(queue: WorkQueue, workers: number, handle: (key: string) => Promise<void>): Promise<void> {
  const loop = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try { await handle(key); } finally { queue.done(key); }
    }
  };
  await Promise.all(Array.from({ length: workers }, loop));
}
