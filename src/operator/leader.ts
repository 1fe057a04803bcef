/**
 * Leader election with a coordination.k8s.io/v1 Lease, with client-go's defaults: lease duration
 * 15 s, renew deadline 10 s, retry period 2 s. A candidate takes the Lease when it is free or its
 * holder has not renewed it within the lease duration as seen on the candidate's own clock (the
 * holder's timestamps are never compared with ours, so clock skew does not matter); every write
 * carries the resourceVersion read, so two candidates racing for it cannot both win (409).
 * The leader renews every retry period and steps down when it could not renew within the renew
 * deadline. `release` hands the Lease back on graceful shutdown so a successor need not wait.
 */
import { realClock, sleep, type Clock } from "./clock.ts";
import { isConflict, isNotFound, type KubeClient } from "./kube/client.ts";
import { objectPath, collectionPath, resourceType } from "./kube/resources.ts";
import { silentLogger, type Logger } from "../util/log.ts";

const LEASE = resourceType("coordination.k8s.io/v1", "Lease");

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  clock?: Clock;
  logger?: Logger;
  onChange?: (isLeader: boolean) => void;
}

interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** Kubernetes MicroTime: RFC 3339 with microseconds. */
export const microTime = (ms: number): string => new Date(ms).toISOString().replace(/Z$/, "000Z");

export class LeaderElector {
  private readonly o: Required<Omit<LeaderElectionOptions, "onChange" | "logger" | "clock">>;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly path: string;
  private observed: { record: string; at: number } | undefined;
  private leading = false;
  private lastRenew = 0;

  constructor(opts: LeaderElectionOptions) {
    this.o = {
      leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000,
      ...opts,
    } as LeaderElector["o"];
    this.clock = opts.clock ?? realClock;
    this.log = (opts.logger ?? silentLogger).with({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity });
    this.path = objectPath(LEASE, opts.namespace, opts.name);
    this.onChange = opts.onChange ?? (() => {});
  }

  private readonly onChange: (isLeader: boolean) => void;

  get isLeader(): boolean { return this.leading; }

  /** Retries every retry period until this candidate holds the Lease (true) or `signal` aborts (false). */
  async acquire(signal: AbortSignal): Promise<boolean> {
    this.log.info("waiting for leadership");
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew()) {
        this.setLeading(true);
        this.log.info("became leader");
        return true;
      }
      await sleep(this.clock, this.jittered(), signal);
    }
    return false;
  }

  /**
   * Renews until `signal` aborts (resolves "stopped") or a renewal could not succeed within the
   * renew deadline (resolves "lost"; the caller must stop acting as leader).
   */
  async holdLeadership(signal: AbortSignal): Promise<"stopped" | "lost"> {
    while (!signal.aborted) {
      await sleep(this.clock, this.o.retryPeriodMs, signal);
      if (signal.aborted) break;
      const ok = await this.tryAcquireOrRenew();
      if (!ok && this.clock.now() - this.lastRenew > this.o.renewDeadlineMs) {
        this.setLeading(false);
        this.log.warn("lost leadership", { sinceRenewMs: this.clock.now() - this.lastRenew });
        return "lost";
      }
    }
    return "stopped";
  }

  /** Gives the Lease up if we hold it (graceful shutdown). */
  async release(): Promise<void> {
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = await this.o.client.request<LeaseObject>("GET", this.path);
      if (lease.spec?.holderIdentity !== this.o.identity) return;
      const now = microTime(this.clock.now());
      lease.spec = { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: now, acquireTime: now };
      await this.o.client.request("PUT", this.path, { body: lease, timeoutMs: 5_000 });
      this.log.info("released leadership");
    } catch (err) {
      this.log.error("releasing the lease failed", err);
    }
  }

  private jittered(): number { return this.o.retryPeriodMs * (1 + 0.2 * Math.random()); }

  private setLeading(v: boolean): void {
    if (this.leading === v) return;
    this.leading = v;
    this.onChange(v);
  }

  /** One attempt; true when we hold the Lease afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { client, identity, namespace, name } = this.o;
    const now = this.clock.now();
    const spec = (prev?: LeaseObject["spec"]): LeaseObject["spec"] => {
      const mine = prev?.holderIdentity === identity;
      return {
        holderIdentity: identity,
        leaseDurationSeconds: Math.round(this.o.leaseDurationMs / 1000),
        acquireTime: mine && prev?.acquireTime ? prev.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: (prev?.leaseTransitions ?? 0) + (prev?.holderIdentity && !mine ? 1 : 0),
      };
    };
    try {
      let lease: LeaseObject;
      try {
        lease = await client.request<LeaseObject>("GET", this.path, { timeoutMs: this.o.retryPeriodMs * 2 });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await client.request("POST", collectionPath(LEASE, namespace), {
          body: { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name, namespace }, spec: spec() },
          timeoutMs: this.o.retryPeriodMs * 2,
        });
        this.observed = undefined;
        this.lastRenew = now;
        return true;
      }
      const record = JSON.stringify(lease.spec ?? {});
      if (this.observed?.record !== record) this.observed = { record, at: now };
      const holder = lease.spec?.holderIdentity;
      const durationMs = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
      if (holder && holder !== identity && this.observed.at + durationMs > now) return false;
      lease.spec = spec(lease.spec);
      await client.request("PUT", this.path, { body: lease, timeoutMs: this.o.retryPeriodMs * 2 });
      this.lastRenew = now;
      return true;
    } catch (err) {
      if (isConflict(err)) this.log.debug("lease update conflicted");
      else this.log.warn("lease update failed", { error: err instanceof Error ? err.message : String(err) });
      return false;
    }
  }
}
