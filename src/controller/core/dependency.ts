/**
 * msg_id dependencies of load-balanced tasks (`after` = time deps, `follow` = location deps), as
 * ipyparallel's Dependency: `all` (every id vs any), `success` / `failure` (which outcomes count).
 */
/** Membership is all a dependency check needs; the scheduler's bounded history answers it. */
export interface IdSet {
  has(id: string): boolean;
}

export class Dependency {
  readonly ids: ReadonlySet<string>;
  readonly all: boolean;
  readonly success: boolean;
  readonly failure: boolean;

  constructor(ids: Iterable<string> = [], opts: { all?: boolean; success?: boolean; failure?: boolean } = {}) {
    this.ids = new Set(ids);
    this.all = opts.all ?? true;
    this.success = opts.success ?? true;
    this.failure = opts.failure ?? false;
  }

  get size(): number {
    return this.ids.size;
  }

  /** From task metadata: null/undefined, a list of msg_ids, a single id, or `{dependencies, all, success, failure}`. */
  static fromWire(v: unknown): Dependency {
    if (v === null || v === undefined || v === "") return MET;
    if (typeof v === "string") return new Dependency([v]);
    if (Array.isArray(v)) return new Dependency(v.filter((x): x is string => typeof x === "string"));
    if (typeof v === "object") {
      const o = v as Record<string, unknown>;
      const deps = Array.isArray(o.dependencies) ? o.dependencies.filter((x): x is string => typeof x === "string") : [];
      return new Dependency(deps, {
        all: o.all === undefined ? true : Boolean(o.all),
        success: o.success === undefined ? true : Boolean(o.success),
        failure: o.failure === undefined ? false : Boolean(o.failure),
      });
    }
    throw new TypeError("invalid dependency");
  }

  /** A copy without the given ids (same flags). */
  without(done: IdSet): Dependency {
    return new Dependency([...this.ids].filter((id) => !done.has(id)), this);
  }

  /** Have the dependencies been met? */
  check(completed: IdSet, failed: IdSet): boolean {
    if (this.ids.size === 0) return true;
    const counts = (id: string) => (this.success && completed.has(id)) || (this.failure && failed.has(id));
    if (this.all) {
      for (const id of this.ids) if (!counts(id)) return false;
      return true;
    }
    for (const id of this.ids) if (counts(id)) return true;
    return false;
  }

  /** Can they never be met any more? */
  unreachable(completed: IdSet, failed: IdSet): boolean {
    if (this.ids.size === 0) return false;
    const blocks = (id: string) => (!this.success && completed.has(id)) || (!this.failure && failed.has(id));
    if (this.all) {
      for (const id of this.ids) if (blocks(id)) return true;
      return false;
    }
    for (const id of this.ids) if (!blocks(id)) return false;
    return true;
  }
}

export const MET = new Dependency([]);
