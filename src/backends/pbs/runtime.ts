/**
 * The pbs backend as the operator's reconciler uses it (its `PbsRuntime`): for an EngineCluster
 * with `spec.backend.pbs`, find the login host's link (one per user@host:port, shared by every
 * cluster on it) with the credentials from the cluster's Secret, and observe (dialect + one
 * batched qstat), submit (after a fresh qstat: a live job of that name is adopted, never submitted
 * twice) and qdel. The planner decides; this module only carries out.
 */
import { parseEngineCluster } from "../../api/parse.ts";
import type { PbsBackend } from "../../api/engine-cluster.ts";
import type { TunnelMetrics } from "../../metrics/operator.ts";
import type { Logger } from "../../util/log.ts";
import type { TunnelChannel } from "./core/tunnel.ts";
import { TunnelForwarder } from "./tunnel.ts";
import type { DialectName, QstatJob } from "./core/dialects.ts";
import { PbsHosts, type PbsHost, type PbsHostOptions } from "./host.ts";

/** Keys of the credentials Secret (`spec.backend.pbs.credentialsSecret`). */
export const CREDENTIAL_KEYS = { privateKey: "ssh-privatekey", knownHosts: "known_hosts" } as const;

export type ObservedPbs = { dialect: DialectName; jobs: QstatJob[] } | { error: string };

interface ClusterLike { metadata?: { namespace?: string; name?: string; uid?: string }; spec?: unknown; status?: unknown }

/** The job ids a cluster recorded in status.pbs.jobs: polled by id, so finished ones are seen too. */
function recordedIds(cluster: ClusterLike): string[] {
  const jobs = (cluster.status as { pbs?: { jobs?: Array<{ id?: unknown }> } } | undefined)?.pbs?.jobs;
  return Array.isArray(jobs) ? jobs.map((j) => j.id).filter((id): id is string => typeof id === "string") : [];
}

export interface PbsRuntimeDeps extends PbsHostOptions {
  /** A Secret's decoded data, or undefined when it does not exist. */
  readSecret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** How long observe waits for a new link to connect before reporting it unreachable. */
  connectWaitMs?: number;
  logger: Logger;
  tunnelMetrics?: TunnelMetrics;
}

export class PbsRuntimeError extends Error {
  readonly code = "pbs_runtime";
}

export class PbsOperatorRuntime {
  private readonly hosts: PbsHosts;
  /** network.mode sshTunnel: one forwarder per cluster (namespace/name/uid), with the channels it was made for */
  private readonly tunnels = new Map<string, { forwarder: TunnelForwarder; channels: string; host: PbsHost }>();

  constructor(private readonly d: PbsRuntimeDeps) {
    this.hosts = new PbsHosts(d);
  }

  private async resolve(cluster: ClusterLike): Promise<{ host: PbsHost; pbs: PbsBackend }> {
    const parsed = parseEngineCluster({ apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", ...cluster });
    if (!parsed.ok || parsed.value.spec.backend.pbs === undefined) throw new PbsRuntimeError("not a valid pbs EngineCluster");
    const pbs = parsed.value.spec.backend.pbs;
    const ns = cluster.metadata?.namespace ?? "";
    const data = await this.d.readSecret(ns, pbs.credentialsSecret);
    if (data === undefined) throw new PbsRuntimeError(`Secret ${ns}/${pbs.credentialsSecret} not found`);
    const privateKey = data[CREDENTIAL_KEYS.privateKey];
    const knownHosts = data[CREDENTIAL_KEYS.knownHosts];
    if (privateKey === undefined || knownHosts === undefined) {
      throw new PbsRuntimeError(`Secret ${ns}/${pbs.credentialsSecret} needs keys ${CREDENTIAL_KEYS.privateKey} and ${CREDENTIAL_KEYS.knownHosts}`);
    }
    // one link per user@host and credentials: two clusters with different Secrets never reset each other's
    const host = this.hosts.get({ host: pbs.host, port: pbs.port, user: pbs.user, privateKey, knownHosts }, tunnelKey(cluster));
    if (host.link.state !== "connected") await host.link.waitConnected(this.d.connectWaitMs ?? 5_000);
    return { host, pbs };
  }

  /** Never throws: what went wrong comes back as `{ error }` for the planner to report. */
  async observe(cluster: ClusterLike): Promise<ObservedPbs> {
    try {
      const { host, pbs } = await this.resolve(cluster);
      host.track(tunnelKey(cluster), recordedIds(cluster));
      const dialect = await host.dialect(pbs.dialect);
      const polled = await host.poll(dialect);
      const t = this.tunnels.get(tunnelKey(cluster))?.forwarder;
      const tunnel = t === undefined ? {} : {
        tunnel: {
          state: t.state, ...(t.lastError !== undefined ? { error: t.lastError } : {}),
          ...(t.portBase !== undefined ? { portBase: t.portBase, skippedBlocks: [...t.skippedBlocks] } : {}),
        },
      };
      return polled.ok ? { dialect: dialect.name, jobs: polled.jobs, ...tunnel } : { error: polled.error };
    } catch (e) {
      return { error: (e as Error).message };
    }
  }

  async submit(cluster: ClusterLike, name: string, script: string): Promise<{ id: string; adopted: boolean }> {
    const { host, pbs } = await this.resolve(cluster);
    const dialect = await host.dialect(pbs.dialect);
    const fresh = await host.poll(dialect, true);
    if (!fresh.ok) throw new PbsRuntimeError(`qstat on ${host.key} before qsub: ${fresh.error}`);
    const existing = fresh.jobs.find((j) => j.name === name && j.phase !== "completed" && (j.owner === undefined || j.owner === pbs.user));
    if (existing !== undefined) return { id: existing.id, adopted: true };
    return { id: await host.submit(dialect, name, script), adopted: false };
  }

  async qdel(cluster: ClusterLike, ids: string[]): Promise<void> {
    const { host, pbs } = await this.resolve(cluster);
    await host.qdel(await host.dialect(pbs.dialect), ids);
  }

  /** Keep the cluster's remote forwards open (a new forwarder when the channels or the login host changed). */
  async tunnel(cluster: ClusterLike, channels: TunnelChannel[]): Promise<void> {
    const key = tunnelKey(cluster);
    const { host } = await this.resolve(cluster);
    const want = JSON.stringify(channels);
    const have = this.tunnels.get(key);
    // the planner asks for the block the forwarder fell back to once status records it: same forwards
    if (have !== undefined && have.host === host && (have.channels === want || JSON.stringify(have.forwarder.boundChannels()) === want)) return;
    if (have !== undefined) await have.forwarder.close();
    const forwarder = new TunnelForwarder(host.link, channels, { logger: this.d.logger, cluster: key, ...(this.d.tunnelMetrics ? { metrics: this.d.tunnelMetrics } : {}) });
    this.tunnels.set(key, { forwarder, channels: want, host });
  }

  /** The cluster is gone: close its forwards, and its link when no other cluster uses it. */
  async release(cluster: ClusterLike): Promise<void> {
    const key = tunnelKey(cluster);
    const have = this.tunnels.get(key);
    this.tunnels.delete(key);
    await have?.forwarder.close();
    this.hosts.release(key);
  }

  /** The login host a cluster uses (after its first observe), for tests and the benchmark. */
  hostOf(cluster: ClusterLike): PbsHost | undefined { return this.hosts.heldBy(tunnelKey(cluster)); }

  /** How many SSH links are open. */
  get links(): number { return this.hosts.size; }

  close(): void {
    for (const t of this.tunnels.values()) void t.forwarder.close();
    this.tunnels.clear();
    this.hosts.closeAll();
  }
}

const tunnelKey = (c: ClusterLike): string => `${c.metadata?.namespace ?? ""}/${c.metadata?.name ?? ""}/${c.metadata?.uid ?? ""}`;
