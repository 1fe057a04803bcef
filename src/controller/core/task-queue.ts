/**
 * The load-balanced task scheduler as a pure state machine (ipyparallel's TaskScheduler semantics):
 * engines in LRU order with their loads, a high-water mark, `after`/`follow` dependencies,
 * `targets`, retries, timeouts and a per-job blacklist for engines that answered
 * dependencies_met=false. Methods take events and return the actions the I/O adapter performs.
 * `P` is the adapter's opaque payload (the frames to forward).
 *
 * A task without `targets`, `follow` or a blacklist (what `LoadBalancedView.map` and `apply`
 * submit) is placed in O(log N) for the leastload, lru, plainrandom and twobin schemes (see
 * engine-order.ts); the choices are the same as a pass over the engines in line would make.
 * Constrained tasks and the weighted scheme look at the candidates one by one.
 */
import { CHOOSERS, randint, type Chooser, type Random, type TaskScheme } from "./choosers.ts";
import { Dependency, MET, type IdSet } from "./dependency.ts";
import { EngineOrder, type EngineEntry } from "./engine-order.ts";
import { RecentMap } from "./recent.ts";

/** How a finished task ended, and where it ran (null: failed by the scheduler itself). */
interface DoneTask {
  readonly ok: boolean;
  readonly engine: string | null;
}

/** Finished tasks remembered for dependencies by default (`doneHistory`). */
export const DEFAULT_DONE_HISTORY = 65_536;

export interface TaskJob<P> {
  readonly msgId: string;
  readonly payload: P;
  targets: Set<string> | null;
  after: Dependency;
  readonly follow: Dependency;
  readonly timeoutMs: number | null;
  retries: number;
  readonly blacklist: Set<string>;
  /** Submission order (stable sort key). */
  readonly seq: number;
  removed: boolean;
  timeoutToken: number;
}

export type SchedulerErrorName = "ImpossibleDependency" | "InvalidDependency" | "TaskTimeout";

export type TaskAction<P> =
  | { kind: "send"; engine: string; job: TaskJob<P> }
  /** `detail`: why, when the error name alone does not say it. */
  | { kind: "fail"; job: TaskJob<P>; ename: SchedulerErrorName; detail?: string }
  | { kind: "timer"; job: TaskJob<P>; ms: number; token: number };

export interface TaskSubmission<P> {
  msgId: string;
  payload: P;
  /** Task metadata: `targets` (uuids), `after`, `follow`, `timeout` (seconds), `retries`. */
  metadata: Record<string, unknown>;
}

export type ResultOutcome<P> =
  /** Final: relay the reply to the client. */
  | { kind: "final"; job: TaskJob<P>; actions: TaskAction<P>[] }
  /** Swallowed (retry or unmet dependency); the job was rescheduled or failed. */
  | { kind: "rescheduled"; job: TaskJob<P>; actions: TaskAction<P>[] }
  /** Not a task we have pending on that engine (late or foreign reply). */
  | { kind: "unknown"; actions: TaskAction<P>[] };

export interface TaskQueueOptions {
  scheme?: TaskScheme;
  /** Max outstanding tasks per engine; 0 = unlimited. Default 1. */
  hwm?: number;
  random?: Random;
  /**
   * Finished tasks remembered (outcome and engine) for `after`/`follow` dependencies. Upstream
   * remembers every task ever run; a dependency on a task older than this history is unknown
   * and fails with InvalidDependency. Default DEFAULT_DONE_HISTORY.
   */
  doneHistory?: number;
}

/**
 * The pick of a chooser over the available engines in line, made without listing them (the
 * weighted scheme needs every load and has none).
 */
type FastPick = (order: EngineOrder, random: Random) => EngineEntry | undefined;
const FAST_PICKS: Partial<Record<TaskScheme, FastPick>> = {
  leastload: (order) => order.leastLoaded(),
  lru: (order) => order.nthAvailable(0),
  plainrandom: (order, random) => order.nthAvailable(randint(order.availableCount, random)),
  twobin: (order, random) => {
    const n = order.availableCount;
    return order.nthAvailable(Math.min(randint(n, random), randint(n, random)));
  },
};

export class TaskQueue<P> {
  private readonly chooser: Chooser;
  private readonly fastPick: FastPick | undefined;
  private readonly hwm: number;
  private readonly random: Random;
  private seq = 0;
  private out: TaskAction<P>[] = [];

  /** The engines in line (least recently used first) with their loads. */
  private readonly order: EngineOrder;
  private queue: TaskJob<P>[] = [];
  private queueHead = 0;
  private readonly queueMap = new Map<string, TaskJob<P>>();
  private readonly graph = new Map<string, Set<string>>();
  private readonly pending = new Map<string, Map<string, TaskJob<P>>>();
  /** Engines added and not yet forgotten. */
  private readonly engines = new Set<string>();
  /** Submitted and not finished (waiting or running). */
  private readonly live = new Set<string>();
  /** The most recent finished tasks: upstream's all_done, all_completed, all_failed and destinations, bounded. */
  private readonly done: RecentMap<string, DoneTask>;
  /** Outcomes by engine (null: failed by the scheduler), shared by every finished task of that engine. */
  private readonly outcomes = new Map<string | null, [DoneTask, DoneTask]>();
  readonly allCompleted: IdSet = { has: (id) => this.done.get(id)?.ok === true };
  readonly allFailed: IdSet = { has: (id) => this.done.get(id)?.ok === false };
  readonly allDone: IdSet = { has: (id) => this.done.has(id) };

  constructor(opts: TaskQueueOptions = {}) {
    const scheme = opts.scheme ?? "leastload";
    this.chooser = CHOOSERS[scheme];
    if (!this.chooser) throw new Error(`unknown task scheme ${String(opts.scheme)}`);
    this.fastPick = FAST_PICKS[scheme];
    this.hwm = opts.hwm ?? 1;
    this.order = new EngineOrder(this.hwm);
    this.random = opts.random ?? Math.random;
    this.done = new RecentMap(opts.doneHistory ?? DEFAULT_DONE_HISTORY);
  }

  /** Engine uuids in line, least recently used first (O(N): for tests and diagnostics). */
  get targets(): string[] {
    return [...this.order.inOrder()].map((e) => e.uuid);
  }

  /** The loads of `targets`, in the same order. */
  get loads(): number[] {
    return [...this.order.inOrder()].map((e) => e.load);
  }

  /** Finished tasks currently remembered (at most `doneHistory`). */
  get remembered(): number {
    return this.done.size;
  }

  /** Tasks submitted and not yet finished. */
  get unfinished(): number {
    return this.live.size;
  }

  /** Has this task been submitted (and, if finished, is it still remembered)? */
  private known(id: string): boolean {
    return this.live.has(id) || this.done.has(id);
  }

  private finish(msgId: string, ok: boolean, engine: string | null): void {
    this.live.delete(msgId);
    this.done.set(msgId, this.outcome(ok, engine));
  }

  /** The shared outcome object for `engine`: the history holds no object of its own per task. */
  private outcome(ok: boolean, engine: string | null): DoneTask {
    let pair = this.outcomes.get(engine);
    if (!pair) this.outcomes.set(engine, (pair = [{ ok: true, engine }, { ok: false, engine }]));
    return pair[ok ? 0 : 1];
  }

  /** Tasks that finished successfully on `engine` (for `follow` dependencies). */
  private completedOn(engine: string): IdSet {
    return { has: (id) => { const d = this.done.get(id); return d !== undefined && d.ok && d.engine === engine; } };
  }

  private failedOn(engine: string): IdSet {
    return { has: (id) => { const d = this.done.get(id); return d !== undefined && !d.ok && d.engine === engine; } };
  }

  private drain(): TaskAction<P>[] {
    const a = this.out;
    this.out = [];
    return a;
  }

  /** Jobs waiting (not yet sent to an engine). */
  get waiting(): number {
    return this.queueMap.size;
  }

  /** Outstanding jobs per engine uuid. */
  pendingOn(engine: string): number {
    return this.pending.get(engine)?.size ?? 0;
  }

  pendingIds(engine: string): string[] {
    return [...(this.pending.get(engine)?.keys() ?? [])];
  }

  waitingIds(): string[] {
    return [...this.queueMap.keys()];
  }

  hasEngine(uuid: string): boolean {
    return this.pending.has(uuid) && this.order.has(uuid);
  }

  addEngine(uuid: string): TaskAction<P>[] {
    if (this.order.has(uuid)) return [];
    this.order.addFront(uuid);
    this.engines.add(uuid);
    if (!this.pending.has(uuid)) this.pending.set(uuid, new Map());
    this.updateGraph(null, true);
    return this.drain();
  }

  /**
   * The engine is gone: it receives no more work. Returns the jobs that were running on it; the
   * adapter later answers each with an EngineError through `result(engine, msgId, {success:false})`
   * (which retries them when they have retries left), then calls `forgetEngine`.
   */
  removeEngine(uuid: string): TaskJob<P>[] {
    this.order.remove(uuid);
    return [...(this.pending.get(uuid)?.values() ?? [])];
  }

  forgetEngine(uuid: string): void {
    if ((this.pending.get(uuid)?.size ?? 0) === 0) this.pending.delete(uuid);
    this.engines.delete(uuid);
    this.outcomes.delete(uuid); // the history's entries keep theirs
  }

  submit(sub: TaskSubmission<P>): TaskAction<P>[] {
    const md = sub.metadata;
    const msgId = sub.msgId;
    this.live.add(msgId);
    const rawTargets = Array.isArray(md.targets) ? md.targets.filter((t): t is string => typeof t === "string") : [];
    let after: Dependency;
    let follow: Dependency;
    try {
      after = Dependency.fromWire(md.after);
      follow = Dependency.fromWire(md.follow);
    } catch {
      const job = this.makeJob(sub, rawTargets, MET, MET);
      this.queueMap.set(msgId, job);
      this.failUnreachable(msgId, "InvalidDependency");
      return this.drain();
    }
    if (after.size > 0 && after.all) {
      if (after.success) after = after.without(this.allCompleted);
      if (after.failure) after = after.without(this.allFailed);
    }
    if (after.check(this.allCompleted, this.allFailed)) after = MET;
    const job = this.makeJob(sub, rawTargets, after, follow);

    for (const dep of [after, follow]) {
      if (dep.size === 0) continue;
      let invalid: string | undefined = dep.ids.has(msgId) ? "a task cannot depend on itself" : undefined;
      if (!invalid) {
        for (const id of dep.ids) {
          if (!this.known(id)) {
            invalid = `dependency ${id} is not a known task (the scheduler remembers the ${this.done.capacity} most recently finished tasks)`;
            break;
          }
        }
      }
      if (invalid) {
        this.queueMap.set(msgId, job);
        this.failUnreachable(msgId, "InvalidDependency", invalid);
        return this.drain();
      }
      if (dep.unreachable(this.allCompleted, this.allFailed)) {
        this.queueMap.set(msgId, job);
        this.failUnreachable(msgId, "ImpossibleDependency");
        return this.drain();
      }
    }
    if (after.check(this.allCompleted, this.allFailed)) {
      if (!this.maybeRun(job) && !this.allFailed.has(msgId)) this.saveUnmet(job);
    } else {
      this.saveUnmet(job);
    }
    return this.drain();
  }

  private makeJob(sub: TaskSubmission<P>, targets: string[], after: Dependency, follow: Dependency): TaskJob<P> {
    const md = sub.metadata;
    const t = Number(md.timeout);
    const r = Number(md.retries);
    return {
      msgId: sub.msgId,
      payload: sub.payload,
      targets: targets.length > 0 ? new Set(targets) : null,
      after,
      follow,
      timeoutMs: md.timeout && Number.isFinite(t) && t > 0 ? t * 1000 : null,
      retries: Number.isFinite(r) && r > 0 ? Math.floor(r) : 0,
      blacklist: new Set(),
      seq: this.seq++,
      removed: false,
      timeoutToken: 0,
    };
  }

  /** A timer set by a `timer` action fired. */
  timeout(msgId: string, token: number): TaskAction<P>[] {
    const job = this.queueMap.get(msgId);
    if (job && job.timeoutToken === token) this.failUnreachable(msgId, "TaskTimeout");
    return this.drain();
  }

  /** An engine answered (or, for a dead engine, the adapter synthesised an EngineError). */
  result(engine: string, msgId: string, r: { success: boolean; dependenciesMet?: boolean }): ResultOutcome<P> {
    const entry = this.order.get(engine);
    const job = this.pending.get(engine)?.get(msgId);
    if (!job) return { kind: "unknown", actions: this.drain() };
    if (entry) this.order.setLoad(entry, entry.load - 1);
    if (r.dependenciesMet ?? true) {
      // a failure with retries left goes back to the queue, blacklisted here, as upstream: it waits
      // for an engine it has not failed on (a new one) or for its timeout
      if (!r.success && job.retries > 0) {
        job.retries -= 1;
        this.handleUnmet(engine, job);
        return { kind: "rescheduled", job, actions: this.drain() };
      }
      this.pending.get(engine)!.delete(msgId);
      if (!this.order.has(engine) && this.pending.get(engine)!.size === 0 && !this.engines.has(engine)) {
        this.pending.delete(engine);
      }
      this.finish(msgId, r.success, engine);
      this.updateGraph(msgId, r.success);
      return { kind: "final", job, actions: this.drain() };
    }
    this.handleUnmet(engine, job);
    return { kind: "rescheduled", job, actions: this.drain() };
  }

  private handleUnmet(engine: string, job: TaskJob<P>): void {
    this.pending.get(engine)?.delete(job.msgId);
    job.blacklist.add(engine);
    // upstream gives up only when the blacklist covers the job's explicit targets; otherwise the job
    // waits in the queue (until a new engine or its timeout) even if no live engine may take it now
    const allBlacklisted = job.targets && [...job.targets].every((t) => job.blacklist.has(t));
    if (allBlacklisted) {
      this.queueMap.set(job.msgId, job);
      this.failUnreachable(job.msgId, "ImpossibleDependency");
    } else if (!this.maybeRun(job)) {
      if (!this.allFailed.has(job.msgId)) this.saveUnmet(job);
    }
    if (this.hwm) {
      const entry = this.order.get(engine);
      if (entry && entry.load === this.hwm - 1) this.updateGraph(null, true);
    }
  }

  private failUnreachable(msgId: string, why: SchedulerErrorName, detail?: string): void {
    const job = this.queueMap.get(msgId);
    if (!job) return;
    this.queueMap.delete(msgId);
    job.removed = true;
    for (const dep of [...job.after.ids, ...job.follow.ids]) this.graph.get(dep)?.delete(msgId);
    this.finish(msgId, false, null);
    this.out.push(detail === undefined ? { kind: "fail", job, ename: why } : { kind: "fail", job, ename: why, detail });
    this.updateGraph(msgId, false);
  }

  private availableCount(): number {
    return this.order.availableCount;
  }

  /** The engines that may take this constrained job, in line. */
  private candidates(job: TaskJob<P>): EngineEntry[] {
    const accepts = (e: EngineEntry) => this.order.isAvailable(e) && !job.blacklist.has(e.uuid)
      && job.follow.check(this.completedOn(e.uuid), this.failedOn(e.uuid));
    if (job.targets) {
      // only the targets can take it: look at them, not at every engine
      const out: EngineEntry[] = [];
      for (const t of job.targets) {
        const e = this.order.get(t);
        if (e && accepts(e)) out.push(e);
      }
      return out.sort((a, b) => a.place - b.place);
    }
    const out: EngineEntry[] = [];
    for (const e of this.order.inOrder()) if (accepts(e)) out.push(e);
    return out;
  }

  private maybeRun(job: TaskJob<P>): boolean {
    if (this.order.availableCount === 0) return false;
    const constrained = job.follow.size > 0 || job.targets !== null || job.blacklist.size > 0;
    if (!constrained && this.fastPick) {
      this.submitTo(job, this.fastPick(this.order, this.random)!);
      return true;
    }
    const candidates = constrained ? this.candidates(job) : [...this.order.inOrder()].filter((e) => this.order.isAvailable(e));
    if (candidates.length === 0) {
      if (job.follow.all && job.follow.size > 0) {
        const dests = new Set<string>();
        for (const m of job.follow.ids) {
          const d = this.done.get(m);
          const relevant = d !== undefined && ((job.follow.success && d.ok) || (job.follow.failure && !d.ok));
          if (relevant && d.engine !== null) dests.add(d.engine);
        }
        if (dests.size > 1) {
          this.queueMap.set(job.msgId, job);
          this.failUnreachable(job.msgId, "ImpossibleDependency");
          return false;
        }
      }
      if (job.targets) {
        for (const b of job.blacklist) job.targets.delete(b);
        if (job.targets.size === 0 || ![...job.targets].some((t) => this.order.has(t))) {
          this.queueMap.set(job.msgId, job);
          this.failUnreachable(job.msgId, "ImpossibleDependency");
          return false;
        }
      }
      return false;
    }
    this.submitTo(job, candidates[this.chooser(candidates.map((e) => e.load), this.random)]!);
    return true;
  }

  private submitTo(job: TaskJob<P>, engine: EngineEntry): void {
    this.order.setLoad(engine, engine.load + 1);
    this.order.moveToBack(engine);
    let p = this.pending.get(engine.uuid);
    if (!p) this.pending.set(engine.uuid, (p = new Map()));
    p.set(job.msgId, job);
    this.out.push({ kind: "send", engine: engine.uuid, job });
  }

  private saveUnmet(job: TaskJob<P>): void {
    job.removed = false;
    this.queueMap.set(job.msgId, job);
    this.queue.push(job);
    for (const dep of [...job.after.ids, ...job.follow.ids]) {
      if (this.done.has(dep)) continue;
      let s = this.graph.get(dep);
      if (!s) this.graph.set(dep, (s = new Set()));
      s.add(job.msgId);
    }
    if (job.timeoutMs !== null) {
      job.timeoutToken += 1;
      this.out.push({ kind: "timer", job, ms: job.timeoutMs, token: job.timeoutToken });
    }
  }

  private updateGraph(depId: string | null, _success: boolean): void {
    const dependents = depId === null ? undefined : this.graph.get(depId);
    if (depId !== null) this.graph.delete(depId);
    const fullScan = depId === null || (this.hwm > 0 && this.order.countWithLoad(this.hwm - 1) > 0);
    let jobs: TaskJob<P>[];
    let start = 0;
    let end: number;
    if (fullScan) {
      jobs = this.queue;
      start = this.queueHead;
      end = this.queue.length;
    } else {
      jobs = [...(dependents ?? [])]
        .map((id) => this.queueMap.get(id))
        .filter((j): j is TaskJob<P> => j !== undefined)
        .sort((a, b) => a.seq - b.seq);
      end = jobs.length;
    }
    for (let i = start; i < end; i++) {
      const job = jobs[i]!;
      if (job.removed || this.queueMap.get(job.msgId) !== job) continue;
      if (job.after.unreachable(this.allCompleted, this.allFailed) || job.follow.unreachable(this.allCompleted, this.allFailed)) {
        this.failUnreachable(job.msgId, "ImpossibleDependency");
      } else if (job.after.check(this.allCompleted, this.allFailed)) {
        // take it out of the waiting set before trying, so a failure inside maybeRun is final
        if (this.maybeRun(job)) {
          this.queueMap.delete(job.msgId);
          job.removed = true;
          for (const dep of [...job.after.ids, ...job.follow.ids]) this.graph.get(dep)?.delete(job.msgId);
          if (this.availableCount() === 0) break;
        }
      }
    }
    this.compact();
  }

  private compact(): void {
    while (this.queueHead < this.queue.length && this.queue[this.queueHead]!.removed) this.queueHead++;
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead).filter((j) => !j.removed);
      this.queueHead = 0;
    }
  }
}
