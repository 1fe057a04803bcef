/**
 * The operator's runtime, wired: informers for EngineClusters and the kinds they own, a per-key
 * work queue, workers running the reconciler, optional leader election, and graceful shutdown.
 *
 *   const op = await startOperator({ client, planner, metrics, ... });
 *   ... await op.stop();   // SIGTERM: stop watches, drain in-flight reconciles, release the Lease
 *
 * Workers start only after every cache has synced, so a restarted operator plans from a complete
 * picture (no object is created twice, no generated secret is replaced).
 */
import type { OperatorMetrics } from "../metrics/operator.ts";
import { silentLogger, type Logger } from "../util/log.ts";
import { realClock, type Clock } from "./clock.ts";
import { createEnginesProbe, type ProbeOptions } from "./engines-probe.ts";
import { createEventRecorder } from "./events.ts";
import { Informer, apiListWatch } from "./informer.ts";
import type { KubeClient } from "./kube/client.ts";
import { ENGINECLUSTER, resourceType, type KubeObject } from "./kube/resources.ts";
import { LeaderElector, type LeaderElectionOptions } from "./leader.ts";
import { Reconciler, type PbsRuntime, type Planner } from "./reconciler.ts";
import { deepEqual } from "./status.ts";
import { WorkQueue, runWorkers } from "./workqueue.ts";

/** Kinds an EngineCluster owns; their changes are mapped to the owner's key. */
export const OWNED_KINDS: Array<[string, string]> = [
  ["apps/v1", "Deployment"], ["v1", "Service"], ["v1", "Secret"], ["v1", "ConfigMap"],
  ["apps/v1", "StatefulSet"], ["batch/v1", "Job"], ["networking.k8s.io/v1", "NetworkPolicy"],
];

export type LeaderElectionConfig = Pick<LeaderElectionOptions,
  "namespace" | "name" | "identity" | "leaseDurationMs" | "renewDeadlineMs" | "retryPeriodMs">;

export interface OperatorOptions {
  client: KubeClient;
  planner: Planner;
  metrics?: OperatorMetrics;
  /** Watch one namespace; all namespaces when unset. */
  namespace?: string;
  /** Label selector of owned objects (all carry it); keeps Secret/ConfigMap caches small. */
  ownedLabelSelector?: string;
  workers?: number;
  /** Longest delay between retries of a failing reconcile (default 60 s). */
  maxRetryDelayMs?: number;
  /** Planner configuration (controller image, cluster DNS domain), passed as `observed.config`. */
  plannerConfig?: Record<string, unknown>;
  /** Label that names a Pod's cluster; such Pods are handed to the planner for diagnostics. */
  podLabel?: string;
  leaderElection?: LeaderElectionConfig;
  probe?: ProbeOptions | false;
  /** Drives the schedulers of pbs EngineClusters (src/backends/pbs/runtime.ts). */
  pbs?: PbsRuntime;
  identity?: string;
  clock?: Clock;
  logger?: Logger;
}

export interface OperatorHandle {
  /** Resolves when the operator stops: "stopped" after stop(), "lost" when leadership was lost. */
  readonly done: Promise<"stopped" | "lost">;
  isLeader(): boolean;
  /** True once caches synced and workers run (leader), or while standing by (follower). */
  isReady(): boolean;
  readonly queue: WorkQueue;
  stop(): Promise<void>;
}

function ownerKeys(obj: KubeObject): string[] {
  const ns = obj.metadata?.namespace ?? "";
  return (obj.metadata?.ownerReferences ?? [])
    .filter((r) => r.kind === ENGINECLUSTER.kind && r.apiVersion.startsWith("ipp.dev/"))
    .map((r) => `${ns}/${r.name}`);
}

/** Spec, metadata (other than resourceVersion/managedFields) or deletion changed; status alone did not. */
function meaningfulChange(a: KubeObject, b: KubeObject): boolean {
  const strip = (o: KubeObject) => {
    const { status: _s, metadata, ...rest } = o;
    const { resourceVersion: _rv, managedFields: _mf, ...meta } = metadata ?? {};
    return { ...rest, metadata: meta };
  };
  return !deepEqual(strip(a), strip(b));
}

export async function startOperator(o: OperatorOptions): Promise<OperatorHandle> {
  const log = o.logger ?? silentLogger;
  const clock = o.clock ?? realClock;
  const abort = new AbortController();
  // retries back off to at most a minute: a cluster blocked by something outside (quota, a full
  // Service range, a login host down) is looked at again soon after it is fixed
  const queue = new WorkQueue({ clock, maxDelayMs: o.maxRetryDelayMs ?? 60_000, onDepth: (d) => o.metrics?.queueDepth(d) });
  const identity = o.leaderElection?.identity ?? o.identity ?? "ipp-operator";

  const clusters = new Informer(apiListWatch(o.client, ENGINECLUSTER, { namespace: o.namespace }), { name: "engineclusters", clock, logger: log });
  const owned = OWNED_KINDS.map(([v, k]) => new Informer(
    apiListWatch(o.client, resourceType(v, k), { namespace: o.namespace, labelSelector: o.ownedLabelSelector }),
    { name: k, clock, logger: log },
  ));
  const pods = o.podLabel
    ? new Informer(apiListWatch(o.client, resourceType("v1", "Pod"), { namespace: o.namespace, labelSelector: o.podLabel }), { name: "Pod", clock, logger: log, indexLabel: o.podLabel })
    : undefined;
  pods?.addHandlers({
    onAdd: (p) => queue.add(`${p.metadata?.namespace}/${p.metadata?.labels?.[o.podLabel!]}`),
    onUpdate: (_a, p) => queue.add(`${p.metadata?.namespace}/${p.metadata?.labels?.[o.podLabel!]}`),
    onDelete: (p) => queue.add(`${p.metadata?.namespace}/${p.metadata?.labels?.[o.podLabel!]}`),
  });
  const informers = [clusters, ...owned, ...(pods ? [pods] : [])];
  clusters.addHandlers({
    onAdd: (c) => queue.add(`${c.metadata?.namespace}/${c.metadata?.name}`),
    onUpdate: (a, b) => { if (meaningfulChange(a, b)) queue.add(`${b.metadata?.namespace}/${b.metadata?.name}`); },
    onDelete: (c) => queue.add(`${c.metadata?.namespace}/${c.metadata?.name}`),
  });
  for (const inf of owned) {
    inf.addHandlers({
      onAdd: (x) => ownerKeys(x).forEach((k) => queue.add(k)),
      onUpdate: (_a, b) => ownerKeys(b).forEach((k) => queue.add(k)),
      onDelete: (x) => ownerKeys(x).forEach((k) => queue.add(k)),
    });
  }

  const recorder = createEventRecorder({
    client: o.client, component: "ipp-operator", instance: identity, clock, logger: log,
    onEmitted: (t) => o.metrics?.eventEmitted(t),
  });
  const reconciler = new Reconciler({
    client: o.client, clusters, owned, planner: o.planner, recorder, metrics: o.metrics, clock, logger: log,
    plannerConfig: o.plannerConfig, pods, podLabel: o.podLabel, ...(o.pbs ? { pbs: o.pbs } : {}),
    probeEngines: o.probe === false ? undefined : createEnginesProbe(o.probe ?? {}),
  });

  const elector = o.leaderElection ? new LeaderElector({
    client: o.client, ...o.leaderElection, clock, logger: log, onChange: (b) => o.metrics?.leader(b),
  }) : undefined;

  let running = false;
  let standingBy = !!elector;
  let workers: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;

  const handle = async (key: string) => {
    const out = await reconciler.reconcile(key);
    const klog = log.with({ cluster: key, result: out.result });
    switch (out.result) {
      // this reconcile's decision replaces a requeue an earlier one asked for (e.g. the fallback
      // of a new cluster's first reconcile, once the reconcile its objects triggered has run)
      case "success":
        queue.forget(key);
        queue.cancelDelayed(key);
        break;
      case "requeue_after":
        queue.forget(key);
        queue.cancelDelayed(key);
        queue.addAfter(key, out.requeueAfterMs ?? 0);
        break;
      case "error": {
        const delay = queue.addRateLimited(key);
        klog.warn("reconcile failed, retrying", { error: out.error instanceof Error ? out.error.message : String(out.error), retryInMs: delay });
        break;
      }
      case "terminal_error":
        queue.forget(key);
        klog.error("reconcile failed, not retrying", out.error);
        break;
    }
  };

  const done = (async (): Promise<"stopped" | "lost"> => {
    if (elector) {
      const got = await elector.acquire(abort.signal);
      if (!got) return "stopped";
    } else {
      o.metrics?.leader(true);
    }
    standingBy = false;
    informers.forEach((i) => i.start());
    const synced = Promise.all(informers.map((i) => i.waitForSync()));
    await Promise.race([synced, new Promise((r) => abort.signal.addEventListener("abort", r, { once: true }))]);
    if (abort.signal.aborted) return "stopped";
    reconciler.seedMetrics();
    log.info("caches synced, starting workers", { clusters: clusters.list().length, workers: o.workers ?? 16 });
    running = true;
    workers = runWorkers(queue, o.workers ?? 16, handle);
    if (!elector) {
      await new Promise((r) => abort.signal.addEventListener("abort", r, { once: true }));
      return "stopped";
    }
    const result = await elector.holdLeadership(abort.signal);
    if (result === "lost") void shutdown();
    return result;
  })();

  async function shutdown(): Promise<void> {
    stopping ??= (async () => {
      abort.abort();
      running = false;
      await queue.shutDown(true);
      await workers;
      await Promise.all(informers.map((i) => i.stop()));
      await done.catch(() => undefined);
      await elector?.release();
      o.metrics?.leader(false);
      log.info("operator stopped");
    })();
    return stopping;
  }

  return {
    done,
    queue,
    isLeader: () => (elector ? elector.isLeader : running),
    isReady: () => running || standingBy,
    stop: shutdown,
  };
}
