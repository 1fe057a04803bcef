/**
 * A login host: its SSH link, its scheduler dialect, one batched qstat shared by every EngineCluster
 * on the host (single flight, cached for `pollIntervalMs`), and qsub/qdel; the operator's pbs
 * runtime (runtime.ts) drives it. The qstat asks only for
 * the login user's jobs plus the ids the clusters track (their recorded jobs, so finished ones are
 * read from the history); a cluster whose ids the cached answer did not cover polls afresh.
 */
import { createHash } from "node:crypto";
import type { PbsBackend } from "../../api/engine-cluster.ts";
import type { PbsMetrics } from "../../metrics/operator.ts";
import { DETECT_COMMAND, dialects, parseDetect, type Dialect, type DialectName, type PollResult } from "./core/dialects.ts";
import { shJoin } from "./core/quote.ts";
import { outputFile } from "./core/script.ts";
import { SshLink, linkKey, type SshLinkOptions, type SshTarget } from "./ssh.ts";

export class PbsCommandError extends Error {
  readonly code = "pbs_command_failed";
}

/**
 * Job ids and names that go onto qsub/qdel command lines must be plain words even though they are
 * quoted: Slurm's Perl qsub wrapper pastes its arguments into an sbatch command line that a shell
 * runs again (observed on the rig: `-o 'x$(touch f).log'` ran the substitution).
 */
const PLAIN_WORD = /^[A-Za-z0-9_.@%+=:,/[\]-]+$/;
function plain(what: string, value: string): string {
  if (!PLAIN_WORD.test(value)) throw new PbsCommandError(`refusing ${what} ${JSON.stringify(value)}: not a plain word (the scheduler's wrappers may pass it through a shell again)`);
  return value;
}

export interface PbsHostOptions extends SshLinkOptions {
  pollIntervalMs?: number;
  commandTimeoutMs?: number;
  clock?: () => Date;
}

export class PbsHost {
  readonly link: SshLink;
  private dialectP: Promise<Dialect> | undefined;
  private pollP: Promise<PollResult> | undefined;
  private pollAt = 0;
  private lastPoll: PollResult | undefined;
  /** the ids the cached answer asked for */
  private lastPollIds = new Set<string>();
  /** job ids each cluster (by key) wants polled besides the user's live jobs */
  private readonly tracked = new Map<string, readonly string[]>();
  /** how many qstat commands ran (one per poll interval, whatever the number of clusters) */
  polls = 0;
  /** bytes of qstat output parsed by the last poll */
  lastPollBytes = 0;
  private readonly clock: () => Date;

  constructor(readonly target: SshTarget, private readonly opts: PbsHostOptions) {
    this.link = new SshLink(target, opts);
    this.clock = opts.clock ?? (() => new Date());
  }

  get key(): string { return this.link.key; }
  private get metrics(): PbsMetrics | undefined { return this.opts.metrics; }
  private get timeout(): number { return this.opts.commandTimeoutMs ?? 30_000; }

  dialect(name: PbsBackend["dialect"]): Promise<Dialect> {
    if (name !== "auto") return Promise.resolve(dialects[name]);
    this.dialectP ??= this.link.exec(DETECT_COMMAND, { timeoutMs: this.timeout, label: "detect" }).then((r) => {
      const d = parseDetect(r.stdout);
      if (d === undefined) throw new PbsCommandError(`could not tell the scheduler on ${this.key} (qstat --version said: ${r.stdout.trim().slice(0, 200)}); set spec.backend.pbs.dialect`);
      return dialects[d as DialectName];
    }).catch((e: unknown) => { this.dialectP = undefined; throw e; });
    return this.dialectP;
  }

  /** `owner` (a cluster) wants these job ids polled too (its recorded jobs); [] forgets them. */
  track(owner: string, ids: readonly string[]): void {
    if (ids.length === 0) this.tracked.delete(owner);
    else this.tracked.set(owner, [...ids]);
  }

  private trackedIds(): string[] {
    const all = new Set<string>();
    for (const ids of this.tracked.values()) for (const id of ids) all.add(id);
    return [...all].sort();
  }

  /**
   * The login user's jobs and the tracked ones, at most one qstat per poll interval (`fresh`
   * forces one; so does a tracked id the cached answer did not ask for).
   */
  async poll(dialect: Dialect, fresh = false): Promise<PollResult> {
    const interval = this.opts.pollIntervalMs ?? 2_000;
    const ids = this.trackedIds();
    const covered = (): boolean => ids.every((id) => this.lastPollIds.has(id));
    // join a poll in flight when it asked for our ids (the answer must cover them, or a recorded
    // job would look gone)
    while (this.pollP !== undefined) {
      const inFlight = await this.pollP.then((r) => r, () => undefined);
      if (inFlight !== undefined && covered()) return inFlight;
    }
    if (!fresh && covered() && this.lastPoll !== undefined && Date.now() - this.pollAt < interval) return this.lastPoll;
    const p = (async (): Promise<PollResult> => {
      const started = Date.now();
      try {
        this.polls++;
        const command = dialect.pollCommand({ user: this.target.user, ids });
        const r = await this.link.exec(command, { timeoutMs: this.timeout, label: "qstat" });
        this.lastPollBytes = Buffer.byteLength(r.stdout);
        const parsed = dialect.parsePoll(r.stdout, r.code);
        if (!parsed.ok) this.metrics?.commandError("qstat");
        else {
          const byState: Record<string, number> = {};
          for (const j of parsed.jobs) if (j.name.startsWith("ipp-")) byState[j.state] = (byState[j.state] ?? 0) + 1;
          this.metrics?.jobs(this.key, byState);
        }
        this.lastPoll = parsed;
        this.lastPollIds = new Set(ids);
        this.pollAt = started;
        return parsed;
      } catch (e) {
        this.metrics?.commandError("qstat");
        throw e;
      } finally {
        this.pollP = undefined;
      }
    })();
    this.pollP = p;
    return p;
  }

  invalidate(): void { this.lastPoll = undefined; }

  async submit(dialect: Dialect, name: string, script: string): Promise<string> {
    const cmd = shJoin(dialect.submitArgv(outputFile(plain("job name", name))));
    let r;
    try {
      r = await this.link.exec(cmd, { stdin: script, timeoutMs: this.timeout, label: "qsub" });
    } catch (e) {
      this.metrics?.commandError("qsub");
      throw e;
    } finally {
      this.invalidate();
    }
    const id = r.code === 0 ? dialect.parseJobId(r.stdout) : undefined;
    if (id === undefined) {
      this.metrics?.commandError("qsub");
      throw new PbsCommandError(`qsub on ${this.key} exited ${r.code}: ${(r.stdout + r.stderr).trim().slice(0, 1000)}`);
    }
    return id;
  }

  async qdel(dialect: Dialect, ids: string[]): Promise<void> {
    let r;
    try {
      r = await this.link.exec(shJoin(dialect.qdelArgv(ids.map((id) => plain("job id", id)))), { timeoutMs: this.timeout, label: "qdel" });
    } catch (e) {
      this.metrics?.commandError("qdel");
      throw e;
    } finally {
      this.invalidate();
    }
    if (r.code === 0 || dialect.qdelGone(r.code, r.stdout + r.stderr)) return;
    // several ids: some may be gone and others deleted; the next poll tells
    if (ids.length > 1) return;
    this.metrics?.commandError("qdel");
    throw new PbsCommandError(`qdel ${ids.join(" ")} on ${this.key} exited ${r.code}: ${(r.stdout + r.stderr).trim().slice(0, 500)}`);
  }

  close(): void {
    this.link.close();
    this.metrics?.hostGone(this.key);
  }
}

/**
 * The key of a link: user@host:port and the credentials. Two clusters naming one user@host with
 * different Secrets get a link each instead of resetting each other's; the digest only tells
 * credentials apart and is never logged.
 */
export function credentialKey(target: SshTarget): string {
  const digest = createHash("sha256").update(String(target.privateKey)).update("\0").update(target.knownHosts).digest("hex").slice(0, 16);
  return `${linkKey(target)}#${digest}`;
}

/**
 * One PbsHost per user@host:port and credentials, shared by every EngineCluster that names them.
 * Users (clusters) are counted: a link no cluster uses any more (its Secret rotated, the cluster
 * went away) is closed.
 */
export class PbsHosts {
  private readonly hosts = new Map<string, { host: PbsHost; users: Set<string> }>();
  /** which link each user holds */
  private readonly holding = new Map<string, string>();
  constructor(private readonly opts: PbsHostOptions) {}

  /** The link for `target`; `user` (a cluster key) now holds it, and lets go of any other. */
  get(target: SshTarget, user = "default"): PbsHost {
    const key = credentialKey(target);
    const held = this.holding.get(user);
    if (held !== undefined && held !== key) this.release(user);
    let have = this.hosts.get(key);
    if (have === undefined) {
      const host = new PbsHost(target, { ...this.opts, logger: this.opts.logger.with({ pbsHost: linkKey(target) }) });
      have = { host, users: new Set() };
      this.hosts.set(key, have);
    }
    have.users.add(user);
    this.holding.set(user, key);
    return have.host;
  }

  /** `user` no longer needs its link; the last user's going closes it. */
  release(user: string): void {
    const key = this.holding.get(user);
    if (key === undefined) return;
    this.holding.delete(user);
    const have = this.hosts.get(key);
    if (have === undefined) return;
    have.users.delete(user);
    have.host.track(user, []);
    if (have.users.size === 0) {
      this.hosts.delete(key);
      have.host.close();
    }
  }

  /** The link `user` holds, if any. */
  heldBy(user: string): PbsHost | undefined {
    const key = this.holding.get(user);
    return key === undefined ? undefined : this.hosts.get(key)?.host;
  }

  /** How many links are open (for tests and the benchmark). */
  get size(): number { return this.hosts.size; }

  closeAll(): void {
    for (const { host } of this.hosts.values()) host.close();
    this.hosts.clear();
    this.holding.clear();
  }
}
