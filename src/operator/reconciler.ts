/**
 * One reconcile of one EngineCluster, level-based: read the observed state (the cluster and its
 * owned objects from the informer caches, referenced Secrets, the controller's engine counts),
 * ask the pure planner what to do, execute its actions, then write status once, only when it
 * changed. The outcome is one of controller-runtime's four: success, error (rate-limited retry),
 * terminal error (a request the API server rejects as invalid: logged, counted, surfaced as a
 * Degraded condition and a Warning Event, not retried), or requeue-after.
 */
import { createHash } from "node:crypto";
import { lazyGenerated, type Generated } from "./keys.ts";
import type { Informer } from "./informer.ts";
import type { EventRecorder } from "./events.ts";
import { deepEqual, keepTransitionTimes } from "./status.ts";
import { realClock, type Clock } from "./clock.ts";
import { isConflict, isNotFound, isPermanent, KubeApiError, type KubeClient } from "./kube/client.ts";
import { ENGINECLUSTER, objectKey, objectPath, resourceType, splitKey, type KubeObject } from "./kube/resources.ts";
import type { OperatorMetrics, ReconcileResult } from "../metrics/operator.ts";
import { silentLogger, type Logger } from "../util/log.ts";

export const FIELD_MANAGER = "ipp-operator";
/** Hash of the last applied desired object: an unchanged desired object on an undrifted live one is not re-sent. */
export const APPLIED_HASH = "ipp.dev/applied-hash";
/** Longest wait for the reconcile that writes a new cluster's first status (see firstStatusFollows). */
const FIRST_STATUS_FALLBACK_MS = 5_000;

// The planner contract (src/operator/core), restated structurally so this adapter depends on its
// shape only.
export type EngineProbe = { registered: number; alive: number; engines?: Array<{ id: number; uuid: string }>; nextId?: number } | { error: string };
export interface ObservedState {
  cluster: unknown;
  owned: KubeObject[];
  controllerEngines?: EngineProbe;
  secrets?: Record<string, boolean>;
  generated: Generated;
  now: Date;
  /** Operator configuration for the planner (controller image, cluster DNS domain). */
  config?: Record<string, unknown>;
  /** pbs clusters: what the login host's batched qstat shows (see PbsRuntime.observe). */
  pbs?: unknown;
}
export interface ObjectRef { apiVersion: string; kind: string; namespace: string; name: string }
export type PlanAction =
  | { type: "addFinalizer" } | { type: "removeFinalizer" }
  | { type: "apply"; object: KubeObject }
  | { type: "create"; object: KubeObject }
  | { type: "delete"; ref: ObjectRef; propagationPolicy?: "Background" | "Foreground" | "Orphan" }
  | { type: "event"; eventType: "Normal" | "Warning"; reason: string; message: string }
  | { type: "pbsSubmit"; name: string; script: string; record: Record<string, unknown> }
  | { type: "pbsQdel"; ids: string[]; why: string }
  | { type: "pbsTunnel"; channels: Array<{ name: string; target: { host: string; port: number }; remotePort: number }> };
export interface PlanResult { actions: PlanAction[]; status: unknown; requeueAfterMs?: number }

export interface Planner {
  plan(observed: ObservedState): PlanResult;
  finalizer: string;
  /** Names of Secrets the cluster's spec refers to (their existence is observed). */
  referencedSecrets?(cluster: KubeObject): string[];
}

/**
 * The scheduler side of pbs clusters (src/backends/pbs/runtime.ts): `observe` reads the login host
 * named by the cluster's spec (dialect + one batched qstat, or why it could not), `submit` runs
 * qsub after a fresh qstat finds no live job of that name (else returns that job's id), `qdel`
 * deletes jobs. Failures of submit/qdel throw (the reconcile is retried with backoff).
 */
export interface PbsRuntime {
  observe(cluster: KubeObject): Promise<unknown>;
  submit(cluster: KubeObject, name: string, script: string): Promise<{ id: string; adopted: boolean }>;
  qdel(cluster: KubeObject, ids: string[]): Promise<void>;
  /** network.mode sshTunnel: keep these remote forwards open for the cluster (idempotent); its state comes back in observe. */
  tunnel?(cluster: KubeObject, channels: Array<{ name: string; target: { host: string; port: number }; remotePort: number }>): Promise<void>;
  /** The cluster is gone: close its forwards. */
  release?(cluster: KubeObject): Promise<void>;
}

export interface ReconcileOutcome {
  result: ReconcileResult;
  requeueAfterMs?: number;
  error?: unknown;
}

export interface ReconcilerDeps {
  client: KubeClient;
  clusters: Informer;
  owned: Informer[];
  planner: Planner;
  recorder: EventRecorder;
  metrics?: OperatorMetrics;
  /** The controller's engine counts; undefined when not asked (no controller yet). */
  probeEngines?: (cluster: KubeObject, owned: KubeObject[]) => Promise<EngineProbe | undefined>;
  clock?: Clock;
  logger?: Logger;
  generate?: () => Generated;
  /** Passed to the planner as `observed.config`. */
  plannerConfig?: Record<string, unknown>;
  /** Also hand the planner the Pods labelled with the cluster (for diagnostics). */
  pods?: Informer;
  podLabel?: string;
  /** Observes and drives the scheduler of pbs clusters; without it they are observed as unreachable. */
  pbs?: PbsRuntime;
}


const isPbs = (cluster: KubeObject): boolean => {
  const backend = (cluster as { spec?: { backend?: { pbs?: unknown } } }).spec?.backend;
  return typeof backend?.pbs === "object" && backend.pbs !== null;
};

export function ownedBy(uid: string, objects: Iterable<KubeObject>): KubeObject[] {
  const out: KubeObject[] = [];
  for (const o of objects) if (o.metadata?.ownerReferences?.some((r) => r.uid === uid)) out.push(o);
  return out;
}

/** Empty values the API server omits when it stores an object (Go's omitempty). */
const isEmptyValue = (v: unknown): boolean =>
  v === "" || v === false || v === 0 || (Array.isArray(v) && v.length === 0) ||
  (typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);

/**
 * Every field of `want` is present with the same value in `have` (arrays compared whole); an
 * empty value in `want` matches a field the API server left out.
 */
export function isSubset(want: unknown, have: unknown): boolean {
  if (want === have) return true;
  if (have === undefined && isEmptyValue(want)) return true;
  if (typeof want !== "object" || want === null || typeof have !== "object" || have === null) return false;
  if (Array.isArray(want)) {
    const h = have as unknown[];
    return Array.isArray(have) && want.length === h.length && want.every((w, i) => isSubset(w, h[i]));
  }
  const h = have as Record<string, unknown>;
  return Object.entries(want as Record<string, unknown>).every(([k, v]) => v === undefined || isSubset(v, h[k]));
}

const hashOf = (o: unknown): string => createHash("sha256").update(stableJson(o)).digest("hex").slice(0, 32);
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

interface ClusterStatusView {
  phase?: string;
  engines?: { desired?: number; registered?: number; alive?: number };
  conditions?: Array<{ type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string; observedGeneration?: number }>;
}

export class Reconciler {
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(private readonly d: ReconcilerDeps) {
    this.clock = d.clock ?? realClock;
    this.log = d.logger ?? silentLogger;
  }

  /** Reconciles `key` and records the outcome's metrics. */
  async reconcile(key: string): Promise<ReconcileOutcome> {
    const started = performance.now();
    let outcome: ReconcileOutcome;
    try {
      outcome = await this.reconcileOnce(key);
    } catch (err) {
      const failure = classifyFailure(err);
      outcome = failure?.retry === false ? { result: "terminal_error", error: err } : { result: "error", error: err };
      if (failure !== undefined) await this.surfaceFailure(key, err, failure);
    }
    this.d.metrics?.reconciled(outcome.result, (performance.now() - started) / 1000);
    return outcome;
  }

  private async reconcileOnce(key: string): Promise<ReconcileOutcome> {
    const cached = this.d.clusters.get(key);
    if (!cached) {
      const { namespace, name } = splitKey(key);
      this.d.metrics?.clusterGone(namespace, name);
      return { result: "success" };
    }
    let cluster: KubeObject = { apiVersion: ENGINECLUSTER.apiVersion, kind: ENGINECLUSTER.kind, ...cached };
    const uid = cluster.metadata?.uid ?? "";
    const owned = this.d.owned.flatMap((i) => i.ownedBy(uid));
    if (this.d.pods && this.d.podLabel) {
      const cname = cluster.metadata?.name;
      const cns = cluster.metadata?.namespace;
      const label = this.d.podLabel;
      const pods = this.d.pods.indexLabel === label ? this.d.pods.withLabel(cname ?? "") : this.d.pods.list();
      for (const p of pods) {
        if (p.metadata?.namespace === cns && p.metadata?.labels?.[label] === cname) owned.push({ apiVersion: "v1", kind: "Pod", ...p });
      }
    }
    const observed: ObservedState = {
      cluster,
      owned,
      generated: (this.d.generate ?? lazyGenerated)(),
      now: new Date(this.clock.now()),
      ...(this.d.plannerConfig ? { config: this.d.plannerConfig } : {}),
    };
    const refs = this.d.planner.referencedSecrets?.(cluster) ?? [];
    if (refs.length > 0) observed.secrets = Object.fromEntries(await Promise.all(refs.map(async (n) => [n, await this.exists("v1", "Secret", cluster.metadata!.namespace!, n)] as const)));
    if (isPbs(cluster)) {
      observed.pbs = this.d.pbs ? await this.d.pbs.observe(cluster) : { error: "this operator runs without a pbs runtime" };
    }
    if (this.d.probeEngines && !cluster.metadata?.deletionTimestamp) {
      const probe = await this.d.probeEngines(cluster, owned);
      if (probe) observed.controllerEngines = probe;
    }

    let plan: PlanResult;
    try {
      plan = this.d.planner.plan(observed);
    } catch (err) {
      // A planner exception is a bug or input the schema let through. It is reported on the object
      // and retried with backoff (what is observed may change), never dropped silently.
      throw new PlanningError(err);
    }

    const events: Array<Promise<void>> = [];
    const submitted: Array<Record<string, unknown>> = [];
    let gone = false;
    /** Objects this reconcile created (absent from the caches before). */
    let created = 0;
    // Consecutive applies of one stage (see applyStage) go to the API server together; a stage
    // starts once the one before it is written, so what a workload refers to exists first.
    let stage: { rank: number; writes: Array<Promise<boolean>> } | undefined;
    const flush = async () => {
      if (!stage) return;
      const results = await Promise.allSettled(stage.writes);
      stage = undefined;
      for (const r of results) if (r.status === "fulfilled" && r.value) created++;
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
    };
    const write = async (object: KubeObject, op: () => Promise<boolean>) => {
      const rank = applyStage(object.kind ?? "");
      if (stage && stage.rank !== rank) await flush();
      stage ??= { rank, writes: [] };
      const w = op();
      w.catch(() => undefined); // settled in flush()
      stage.writes.push(w);
    };
    try {
      for (const action of plan.actions) {
        if (action.type === "apply") { await write(action.object, () => this.apply(action.object, owned)); continue; }
        if (action.type === "create") { await write(action.object, () => this.createIfAbsent(action.object)); continue; }
        if (action.type !== "event") await flush();
        switch (action.type) {
          case "event":
            // Warnings are logged too: an Event can't be written in a namespace being deleted
            if (action.eventType === "Warning") this.log.warn("warning event", { cluster: key, reason: action.reason, message: action.message });
            events.push(this.d.recorder.record(cluster, action.eventType, action.reason, action.message));
            break;
          case "addFinalizer":
          case "removeFinalizer": {
            const updated = await this.setFinalizer(cluster, action.type === "addFinalizer");
            if (updated) cluster = updated;
            else gone = true;
            break;
          }
          case "delete":
            await this.remove(action.ref, action.propagationPolicy);
            break;
          case "pbsSubmit": {
            if (!this.d.pbs) throw new Error("pbsSubmit planned without a pbs runtime");
            const r = await this.d.pbs.submit(cluster, action.name, action.script);
            this.log.info("pbs job submitted", { cluster: key, job: action.name, id: r.id, adopted: r.adopted });
            submitted.push({ id: r.id, ...action.record });
            break;
          }
          case "pbsQdel":
            if (!this.d.pbs) throw new Error("pbsQdel planned without a pbs runtime");
            this.log.info("pbs qdel", { cluster: key, ids: action.ids.join(","), why: action.why });
            await this.d.pbs.qdel(cluster, action.ids);
            break;
          case "pbsTunnel":
            if (!this.d.pbs?.tunnel) throw new Error("pbsTunnel planned without a pbs runtime that forwards");
            await this.d.pbs.tunnel(cluster, action.channels);
            break;
        }
        if (gone) break;
      }
      await flush();
    } finally {
      // the reconcile ends only when no write of it is still in flight
      await Promise.allSettled(stage?.writes ?? []);
      await Promise.all(events);
    }

    let status = plan.status as ClusterStatusView | undefined;
    if (submitted.length > 0) {
      // the ids qsub returned go into status.pbs.jobs now, so the next reconcile knows them
      const base = (status ?? cluster.status ?? {}) as ClusterStatusView & { pbs?: { jobs?: Array<Record<string, unknown>> } };
      const known = new Set(submitted.map((j) => j.id));
      status = { ...base, pbs: { ...base.pbs, jobs: [...submitted, ...(base.pbs?.jobs ?? []).filter((j) => !known.has(j.id))] } } as ClusterStatusView;
    }
    const { namespace = "", name = "" } = cluster.metadata ?? {};
    if (gone || (cluster.metadata?.deletionTimestamp && !cluster.metadata.finalizers?.length)) {
      if (isPbs(cluster)) await this.d.pbs?.release?.(cluster);
      this.d.metrics?.clusterGone(namespace, name, uid);
      return { result: "success" };
    }
    if (status !== undefined && this.firstStatusFollows(cluster, created, submitted.length, plan)) {
      // The informers bring the objects just created and requeue the cluster; that reconcile sees
      // them and writes the first status. The planned requeue stays as a fallback.
      return { result: "requeue_after", requeueAfterMs: Math.min(plan.requeueAfterMs ?? FIRST_STATUS_FALLBACK_MS, FIRST_STATUS_FALLBACK_MS) };
    }
    if (status !== undefined) {
      await this.writeStatus(cluster, status);
      this.observeMetrics(cluster, status, cluster.status as ClusterStatusView | undefined);
    }
    if (plan.requeueAfterMs !== undefined && plan.requeueAfterMs > 0) return { result: "requeue_after", requeueAfterMs: plan.requeueAfterMs };
    return { result: "success" };
  }

  /**
   * Whether the first status of a new cluster is left to the reconcile that follows this one. A
   * cluster without a status whose reconcile created owned objects is reconciled again as soon as
   * the informers see them, and that status (which reports the objects as observed) replaces this
   * one anyway: writing both cost a second status write per new cluster, the largest redundant
   * request when many clusters are created at once. Not when the status reports a problem (a
   * Warning event goes with it, and would be emitted again by the next reconcile, which still
   * sees no status), nor when scheduler jobs were submitted (their ids live in the status).
   */
  private firstStatusFollows(cluster: KubeObject, created: number, submitted: number, plan: PlanResult): boolean {
    const hasStatus = typeof cluster.status === "object" && cluster.status !== null && Object.keys(cluster.status).length > 0;
    if (hasStatus || created === 0 || submitted > 0) return false;
    return !plan.actions.some((a) => a.type === "event" && a.eventType === "Warning");
  }

  /**
   * The per-cluster gauges from a status just written; time_to_ready when Ready turned True in
   * this write (a status that was already Ready, as after a restart, records nothing).
   */
  private observeMetrics(cluster: KubeObject, status: ClusterStatusView, prev: ClusterStatusView | undefined): void {
    const m = cluster.metadata!;
    this.d.metrics?.clusterObserved({
      namespace: m.namespace ?? "", name: m.name ?? "", phase: status.phase,
      desired: status.engines?.desired, registered: status.engines?.registered, alive: status.engines?.alive,
    });
    const isReady = (s: ClusterStatusView | undefined) => s?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
    if (!m.uid) return;
    if (isReady(prev)) this.d.metrics?.clusterWasReady(m.uid);
    else if (isReady(status) && m.creationTimestamp) this.d.metrics?.clusterReady(m.uid, (this.clock.now() - Date.parse(m.creationTimestamp)) / 1000);
  }

  /**
   * Sets the per-cluster gauges from the informer cache (the statuses last written), so dashboards
   * show every cluster right after a restart or failover, before each is reconciled again. Clusters
   * already Ready are marked so that time_to_ready is not observed again with their full age.
   */
  seedMetrics(): void {
    for (const c of this.d.clusters.list()) {
      const m = c.metadata;
      const status = c.status as ClusterStatusView | undefined;
      if (!m?.name || status === undefined || m.deletionTimestamp) continue;
      this.d.metrics?.clusterObserved({
        namespace: m.namespace ?? "", name: m.name, phase: status.phase,
        desired: status.engines?.desired, registered: status.engines?.registered, alive: status.engines?.alive,
      });
      if (m.uid && status.conditions?.some((x) => x.type === "Ready" && x.status === "True")) this.d.metrics?.clusterWasReady(m.uid);
    }
  }

  private async exists(apiVersion: string, kind: string, namespace: string, name: string): Promise<boolean> {
    try {
      await this.d.client.request("GET", objectPath(resourceType(apiVersion, kind), namespace, name));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Server-side apply with our field manager, skipped when the live object already matches.
   * Returns true when the object was not in the caches (this apply created it, or the cache lags).
   */
  private async apply(desired: KubeObject, owned: KubeObject[]): Promise<boolean> {
    const t = resourceType(desired.apiVersion ?? "", desired.kind ?? "");
    const hash = hashOf(desired);
    const key = objectKey(desired);
    const live = owned.find((o) => o.kind === desired.kind && objectKey(o) === key);
    if (live && live.metadata?.annotations?.[APPLIED_HASH] === hash && isSubset(stripForCompare(desired), live)) return false;
    const body = {
      ...desired,
      metadata: { ...desired.metadata, annotations: { ...desired.metadata?.annotations, [APPLIED_HASH]: hash } },
    };
    await this.d.client.request("PATCH", objectPath(t, desired.metadata?.namespace, desired.metadata?.name ?? ""), {
      // fieldValidation=Ignore: the server would otherwise parse every apply body a second time,
      // strictly, only to return warnings about unknown or duplicate fields that nothing here reads
      // (the objects come from our own builders, checked by the tests against this schema)
      query: { fieldManager: FIELD_MANAGER, force: true, fieldValidation: "Ignore" },
      body,
      contentType: "application/apply-patch+yaml",
      discardResponse: true,
    });
    this.d.metrics?.apiRequest("apply", "200");
    return live === undefined;
  }

  /**
   * Applies `desired` only if the API server has no such object. Asked of the server, not the
   * cache: the cache is what may lag. One key is reconciled by one worker at a time, so nothing
   * creates it between the read and the apply. An existing object is left as it is; the informer
   * brings it, and later reconciles apply it with what it holds.
   */
  private async createIfAbsent(desired: KubeObject): Promise<boolean> {
    const exists = await this.exists(desired.apiVersion ?? "", desired.kind ?? "", desired.metadata?.namespace ?? "", desired.metadata?.name ?? "");
    return exists ? false : this.apply(desired, []);
  }

  private async remove(ref: ObjectRef, propagationPolicy = "Background"): Promise<void> {
    try {
      await this.d.client.request("DELETE", objectPath(resourceType(ref.apiVersion, ref.kind), ref.namespace, ref.name), {
        body: { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy },
      });
      this.d.metrics?.apiRequest("delete", "200");
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** Adds or removes our finalizer; retries conflicts on a fresh read. Undefined when the object is gone. */
  private async setFinalizer(cluster: KubeObject, add: boolean): Promise<KubeObject | undefined> {
    const f = this.d.planner.finalizer;
    let current = cluster;
    for (let attempt = 0; ; attempt++) {
      const list = current.metadata?.finalizers ?? [];
      const next = add ? (list.includes(f) ? list : [...list, f]) : list.filter((x) => x !== f);
      if (next.length === list.length && next.every((x, i) => x === list[i])) return current;
      const m = current.metadata!;
      try {
        const updated = await this.d.client.request<KubeObject>("PATCH", objectPath(ENGINECLUSTER, m.namespace, m.name ?? ""), {
          body: { metadata: { finalizers: next, resourceVersion: m.resourceVersion } },
          contentType: "application/merge-patch+json",
        });
        this.d.metrics?.apiRequest("patch", "200");
        return updated;
      } catch (err) {
        if (isNotFound(err)) return undefined;
        if (!isConflict(err) || attempt >= 4) throw err;
        this.d.metrics?.apiRequest("patch", "409");
        try {
          current = await this.d.client.request<KubeObject>("GET", objectPath(ENGINECLUSTER, m.namespace, m.name ?? ""));
        } catch (e) {
          if (isNotFound(e)) return undefined;
          throw e;
        }
      }
    }
  }

  /** Writes status through the status subresource if it changed; retries 409s on a fresh read. */
  private async writeStatus(cluster: KubeObject, planned: unknown): Promise<void> {
    let current = cluster;
    for (let attempt = 0; ; attempt++) {
      const next = keepTransitionTimes(current.status, planned);
      if (deepEqual(current.status, next)) return;
      const m = current.metadata!;
      try {
        await this.d.client.request("PUT", objectPath(ENGINECLUSTER, m.namespace, m.name ?? "", "status"), {
          body: { ...current, apiVersion: ENGINECLUSTER.apiVersion, kind: ENGINECLUSTER.kind, status: next },
          discardResponse: true,
        });
        this.d.metrics?.apiRequest("update_status", "200");
        return;
      } catch (err) {
        if (isNotFound(err)) return;
        if (!isConflict(err) || attempt >= 4) throw err;
        this.d.metrics?.apiRequest("update_status", "409");
        current = await this.d.client.request<KubeObject>("GET", objectPath(ENGINECLUSTER, m.namespace, m.name ?? ""));
      }
    }
  }

  /**
   * A failure worth telling the user about: a Warning Event and a Degraded condition on the object
   * (whether it is retried or not), so nothing stops silently.
   */
  private async surfaceFailure(key: string, err: unknown, failure: Failure): Promise<void> {
    const cluster = this.d.clusters.get(key);
    const message = failure.retry ? `${failure.message} (retrying with backoff)` : failure.message;
    if (failure.retry) this.log.warn("reconcile failed, reported on the EngineCluster", { cluster: key, reason: failure.reason, error: failure.message });
    else this.log.error("reconcile failed permanently", err, { cluster: key });
    if (!cluster) return;
    const obj: KubeObject = { apiVersion: ENGINECLUSTER.apiVersion, kind: ENGINECLUSTER.kind, ...cluster };
    await this.d.recorder.record(obj, "Warning", failure.eventReason, message);
    const status = { ...(obj.status as ClusterStatusView | undefined) };
    const now = new Date(this.clock.now()).toISOString().replace(/\.\d+Z$/, "Z");
    const degraded = {
      type: "Degraded", status: "True", reason: failure.reason, message: message.slice(0, 32768),
      lastTransitionTime: now, observedGeneration: obj.metadata?.generation,
    };
    status.conditions = [...(status.conditions ?? []).filter((c) => c.type !== "Degraded"), degraded];
    status.phase = "Degraded";
    try {
      await this.writeStatus(obj, status);
    } catch (e) {
      this.log.error("writing the Degraded condition failed", e, { cluster: key });
    }
  }
}

/** The planner threw: carries its error (a bug, or input the schema let through). */
export class PlanningError extends Error {
  constructor(override readonly cause: unknown) {
    super(`planning failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "PlanningError";
  }
}

/** How a failed reconcile is reported: Degraded reason, Event reason, message, and whether it is retried. */
export interface Failure { reason: string; eventReason: string; message: string; retry: boolean }

/**
 * Which failures are reported on the object. A request the API server rejects as invalid is not
 * retried (the same request fails the same way until the spec changes). A 403 is retried with
 * backoff: quotas free up, webhooks and RBAC get fixed. A Service the API server can't give an IP
 * (its service range is full) is retried too. Transient failures (conflicts, timeouts, a
 * restarting API server) are only retried: they clear by themselves.
 */
export function classifyFailure(err: unknown): Failure | undefined {
  if (err instanceof PlanningError) return { reason: "PlanningFailed", eventReason: "PlanningFailed", message: err.message, retry: true };
  if (!(err instanceof KubeApiError)) return undefined;
  const text = `${err.reason || err.status}: ${err.message}`;
  if (err.status === 403) {
    const reason = /exceeded quota/i.test(err.message) ? "QuotaExceeded" : /admission webhook|ValidatingAdmissionPolicy|denied (the )?request/i.test(err.message) ? "AdmissionDenied" : "Forbidden";
    return { reason, eventReason: reason, message: text, retry: true };
  }
  if (/failed to allocate a serviceIP|range is full/i.test(err.message)) {
    return { reason: "ServiceIPRangeFull", eventReason: "ServiceIPRangeFull", message: text, retry: true };
  }
  if (isPermanent(err)) return { reason: "ApplyRejected", eventReason: "ReconcileRejected", message: text, retry: false };
  return undefined;
}

/**
 * The order in which kinds are written when a plan applies several: first everything a workload
 * refers to or is confined by (Secrets, ConfigMaps, service accounts and RBAC, Services,
 * NetworkPolicies: a pod never runs before the policy that confines it), then the workloads.
 * Objects of one stage are applied concurrently, so a new cluster's objects take two round trips
 * whatever their number (a ClusterIP Service's create waits for the API server's address
 * allocation, which it serialises across all Services: in the first stage it overlaps the others).
 */
export function applyStage(kind: string): number {
  switch (kind) {
    case "Deployment": case "StatefulSet": case "DaemonSet": case "ReplicaSet": case "Job": case "CronJob": case "Pod": return 1;
    default: return 0;
  }
}

/** The fields of a desired object compared against the live one (our bookkeeping annotation aside). */
function stripForCompare(o: KubeObject): KubeObject {
  return { ...o, metadata: { ...o.metadata, annotations: o.metadata?.annotations } };
}
