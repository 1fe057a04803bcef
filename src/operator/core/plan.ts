/**
 * The pure planner: observed state → actions + status. No I/O, no clock, no randomness: the
 * runtime (src/operator/) reads the cluster, its owned objects, the controller's engine counts and
 * fresh key material, calls `plan`, executes the actions in order and writes the status (when not
 * undefined).
 *
 * Contract notes for the runtime:
 * - `owned` holds the objects whose ownerReferences name the cluster (any kind). Pods labelled
 *   `ipp.dev/cluster=<name>` may be added too: they are read for diagnostics (image pull errors,
 *   missing Secrets) and never deleted.
 * - `generated` is read lazily and only when no key material exists yet (the HMAC key and the SSH
 *   key pair are reused from the existing Secrets on every later reconcile, never rotated).
 *   `curveSecretKey`/`curvePublicKey` (Z85) are needed only when spec.controller.curve is true.
 * - `delete` actions carry `propagationPolicy: "Background"` so a Job's pods go with it.
 * - `status` is undefined when it equals the current status (nothing to write).
 * - Events are emitted only on changes: condition transitions, a relaunch of the MPI world,
 *   the first creation of the owned objects, and the start of deletion.
 */
import { API_VERSION, KIND, type Condition, type EngineCluster, type EngineClusterStatus, type Phase } from "../../api/engine-cluster.ts";
import type { KubeObject, ObjectRef } from "../../api/kube.ts";
import { refKey, refOf } from "../../api/kube.ts";
import { describeErrors, parseEngineCluster, type FieldError } from "../../api/parse.ts";
import {
  applyOrder, buildConnectionSecret, buildControllerDeployment, buildControllerService, buildControllerState, buildMpiObjects, buildNetworkPolicy, connectionFiles, DEFAULT_BUILD_CONFIG,
  EMPTY_ENGINE_STATE, parseControllerState, type BuildConfig, type ControllerEngineState, type KeyMaterial, type MpiObjects,
} from "../../backends/mpi/core/builders.ts";
import { COMPONENT_LABEL, CONNECTION_KEYS, HTTP_PORT, SERVICE_PORTS, SSH_KEYS, WORLD_LABEL, clusterRef, dns, names, type Component } from "../../backends/mpi/core/names.ts";
import { HOSTNAME, re } from "../../api/patterns.ts";
import { dialects, type DialectName, type QstatJob } from "../../backends/pbs/core/dialects.ts";
import { planPbs, type PbsJobRecord, type PbsStep } from "../../backends/pbs/core/plan.ts";
import { clusterTag, jobName, renderScript, ScriptError, type JobInput } from "../../backends/pbs/core/script.ts";
import { sshServer, tunnelChannels, tunnelledConnection, tunnelPortBase, type EnginePorts, type TunnelChannel } from "../../backends/pbs/core/tunnel.ts";
import { withShortReason } from "./reason.ts";

export type { KubeObject, ObjectRef };
export type { EngineClusterStatus };

export const FINALIZER = "ipp.dev/finalizer";

/** The operator's configuration as the planner reads it: the builders' plus the pbs deletion grace period. */
export type PlannerConfig = BuildConfig & { pbsDeletionGraceSeconds?: number };

export interface Observed {
  cluster: unknown;
  owned: KubeObject[];
  /** The controller's engine list: counts, and (when it reports them) the ids, uuids and next id it would write to its state file. */
  controllerEngines?: { registered: number; alive: number; engines?: Array<{ id: number; uuid: string }>; nextId?: number } | { error: string };
  secrets?: Record<string, boolean>;
  generated: { hmacKey: string; apiToken: string; sshPrivateKey: string; sshPublicKey: string; curveSecretKey?: string; curvePublicKey?: string };
  now: Date;
  /** Operator configuration (controller image, cluster DNS domain, metrics scrapers); defaults when absent. */
  config?: Partial<PlannerConfig>;
  /** pbs clusters: the login host's batched qstat (and dialect), or why it could not be read. */
  pbs?: ObservedPbs;
}

export type Action =
  | { type: "addFinalizer" } | { type: "removeFinalizer" }
  | { type: "apply"; object: KubeObject }
  /** Apply only if the API server has no such object (an existing one is left as it is): key Secrets not yet seen in the cache. */
  | { type: "create"; object: KubeObject }
  | { type: "delete"; ref: ObjectRef; propagationPolicy?: "Background" | "Foreground" | "Orphan" }
  | { type: "event"; eventType: "Normal" | "Warning"; reason: string; message: string }
  | PbsPlanAction;

export interface Plan { actions: Action[]; status: EngineClusterStatus | undefined; requeueAfterMs?: number }

/**
 * Requeue periods: poll the controller's engine counts while starting, refresh them when ready.
 * An mpi cluster waiting only for its own objects (the controller Deployment not yet available,
 * nothing degraded) is looked at again after REQUEUE_WAITING_MS: every change that moves it on
 * (Deployment, StatefulSet, Job, Pods) arrives as an informer event and requeues it at once, so
 * polling it every few seconds only re-plans an unchanged cluster (at 1,000 new clusters, most of
 * the operator's reconciles).
 */
export const REQUEUE_STARTING_MS = 5_000;
export const REQUEUE_READY_MS = 30_000;
export const REQUEUE_WAITING_MS = 30_000;
export const REQUEUE_DELETING_MS = 2_000;
/** A referenced Secret that doesn't exist is looked for again with backoff, between these. */
export const SECRET_RETRY_MIN_MS = 1_000;
export const SECRET_RETRY_MAX_MS = 60_000;

/** Kinds the planner creates and may delete. Anything else in `owned` is read only. */
const MANAGED_KINDS = new Set(["Secret", "ConfigMap", "Service", "Deployment", "StatefulSet", "Job", "NetworkPolicy"]);

type RawCluster = {
  metadata?: { name?: string; namespace?: string; uid?: string; generation?: number; deletionTimestamp?: string; finalizers?: string[]; annotations?: Record<string, string> };
  spec?: { engines?: unknown; backend?: Record<string, unknown> };
  status?: EngineClusterStatus;
};

// ---------------------------------------------------------------------------------------------
// helpers

const isoSeconds = (d: Date): string => d.toISOString().replace(/\.\d{3}Z$/, "Z");

function b64decode(s: unknown): string | undefined {
  return typeof s === "string" ? Buffer.from(s, "base64").toString("utf8") : undefined;
}

function find(owned: KubeObject[], kind: string, name: string): KubeObject | undefined {
  return owned.find((o) => o.kind === kind && o.metadata.name === name);
}

const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);
type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): Obj[] => (Array.isArray(v) ? v.map(obj) : []);

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Obj;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}
export const sameStatus = (a: unknown, b: unknown): boolean => canonical(a ?? {}) === canonical(b ?? {});

/** Key material: reuse what the existing Secrets hold; take fresh material only for what's missing. */
export function keyMaterial(ec: EngineCluster, owned: KubeObject[], generated: Observed["generated"]): KeyMaterial {
  const conn = obj(find(owned, "Secret", names.connectionSecret(ec.metadata.name))?.data);
  const ssh = obj(find(owned, "Secret", names.sshSecret(ec.metadata.name))?.data);
  const hmacKey = b64decode(conn[CONNECTION_KEYS.hmacKey]);
  const sshPrivateKey = b64decode(ssh[SSH_KEYS.privateKey]);
  const sshPublicKey = b64decode(ssh[SSH_KEYS.publicKey])?.trim();
  const curveSecretKey = b64decode(conn[CONNECTION_KEYS.curveSecretKey]);
  const curvePublicKey = b64decode(conn[CONNECTION_KEYS.curvePublicKey]);
  const haveSsh = sshPrivateKey !== undefined && sshPublicKey !== undefined && sshPrivateKey !== "" && sshPublicKey !== "";
  const haveCurve = curveSecretKey !== undefined && curvePublicKey !== undefined;
  const apiToken = b64decode(conn[CONNECTION_KEYS.apiToken]);
  const material: KeyMaterial = {
    hmacKey: hmacKey !== undefined && hmacKey !== "" ? hmacKey : generated.hmacKey,
    // a Secret written before the API had a token gains one once; from then on it is reused
    apiToken: apiToken !== undefined && apiToken !== "" ? apiToken : generated.apiToken,
    sshPrivateKey: haveSsh ? sshPrivateKey : generated.sshPrivateKey,
    sshPublicKey: haveSsh ? sshPublicKey : generated.sshPublicKey,
  };
  if (ec.spec.controller.curve) {
    const sk = haveCurve ? curveSecretKey : generated.curveSecretKey;
    const pk = haveCurve ? curvePublicKey : generated.curvePublicKey;
    if (sk !== undefined && pk !== undefined) { material.curveSecretKey = sk; material.curvePublicKey = pk; }
  }
  return material;
}

/** Secrets the spec refers to, whose existence the runtime observes (`Observed.secrets`). */
export function referencedSecrets(cluster: unknown): string[] {
  const spec = (cluster as RawCluster).spec;
  const backend = obj(spec?.backend);
  const out = new Set<string>();
  const pbs = obj(backend.pbs);
  if (typeof pbs.credentialsSecret === "string") out.add(pbs.credentialsSecret);
  const mpi = obj(backend.mpi);
  for (const e of arr(mpi.env)) {
    const ref = obj(obj(e.valueFrom).secretKeyRef);
    if (typeof ref.name === "string" && ref.optional !== true) out.add(ref.name);
  }
  for (const s of Array.isArray(mpi.imagePullSecrets) ? mpi.imagePullSecrets : []) if (typeof s === "string") out.add(s);
  return [...out].sort();
}

// ---------------------------------------------------------------------------------------------
// conditions

interface CondSpec { type: string; status: "True" | "False" | "Unknown"; reason: string; message: string }

function conditions(prev: Condition[] | undefined, next: CondSpec[], generation: number, now: Date): Condition[] {
  const byType = new Map((prev ?? []).map((c) => [c.type, c]));
  return next.map((c) => {
    const old = byType.get(c.type);
    const lastTransitionTime = old !== undefined && old.status === c.status ? old.lastTransitionTime : isoSeconds(now);
    return { type: c.type, status: c.status, observedGeneration: generation, lastTransitionTime, reason: c.reason, message: c.message };
  });
}

const cond = (list: Condition[] | undefined, type: string): Condition | undefined => list?.find((c) => c.type === type);

/** Events for condition changes between two statuses. */
function transitionEvents(prev: EngineClusterStatus | undefined, next: EngineClusterStatus): Action[] {
  const out: Action[] = [];
  const ev = (eventType: "Normal" | "Warning", reason: string, message: string): Action => ({ type: "event", eventType, reason, message });
  const p = (t: string) => cond(prev?.conditions, t);
  const n = (t: string) => cond(next.conditions, t);
  const deg = n("Degraded");
  const pdeg = p("Degraded");
  if (deg?.status === "True" && (pdeg?.status !== "True" || pdeg.reason !== deg.reason || pdeg.message !== deg.message)) {
    out.push(ev("Warning", deg.reason, deg.message));
  } else if (deg?.status === "False" && pdeg?.status === "True") {
    out.push(ev("Normal", "Recovered", `no longer degraded (was ${pdeg.reason})`));
  }
  for (const t of ["ControllerReady", "WorkersReady", "Submitted", "EnginesReady"]) {
    const c = n(t);
    const o = p(t);
    if (c === undefined || c.status === o?.status) continue;
    if (o === undefined && c.status !== "True") continue; // the first status: "not yet" is no news
    out.push(ev(c.status === "False" && o?.status === "True" ? "Warning" : "Normal", c.reason, c.message));
  }
  const ready = n("Ready");
  if (ready?.status === "True" && p("Ready")?.status !== "True") out.push(ev("Normal", "Ready", ready.message));
  return out;
}

// ---------------------------------------------------------------------------------------------
// the plan

export function plan(observed: Observed): Plan {
  const raw = observed.cluster as RawCluster;
  const meta = raw.metadata ?? {};
  const generation = meta.generation ?? 0;
  const prev = raw.status;
  const hasFinalizer = (meta.finalizers ?? []).includes(FINALIZER);
  const managed = observed.owned.filter((o) => MANAGED_KINDS.has(o.kind) && ownedByCluster(o, meta.uid));

  if (meta.deletionTimestamp !== undefined) {
    const parsedForDelete = parseEngineCluster(observed.cluster);
    if (hasFinalizer && parsedForDelete.ok && parsedForDelete.value.spec.backend.pbs !== undefined) {
      const pbsPart = planPbsDeletion(observed, parsedForDelete.value, prev, generation);
      if (!pbsPart.done) return pbsPart.plan;
    }
    return planDeletion(observed, prev, generation, hasFinalizer, managed);
  }

  const actions: Action[] = hasFinalizer ? [] : [{ type: "addFinalizer" }];
  const parsed = parseEngineCluster(observed.cluster);
  if (!parsed.ok) return finish(actions, prev, degradedOnly(observed, prev, generation, "InvalidSpec", parsed.errors), undefined);

  const ec = parsed.value;
  if (ec.spec.backend.pbs !== undefined) {
    const missing = referencedSecrets(observed.cluster).filter((s) => observed.secrets?.[s] === false);
    if (missing.length > 0) {
      const errs: FieldError[] = [{ field: "spec.backend.pbs.credentialsSecret", message: `Secret ${missing.join(", ")} not found` }];
      // the credentials Secret is not watched (the operator caches only its own Secrets): look again with backoff
      const pdeg = cond(prev?.conditions, "Degraded");
      const since = pdeg?.status === "True" && pdeg.reason === "SecretNotFound" ? pdeg.lastTransitionTime : undefined;
      return finish(actions, prev, degradedOnly(observed, prev, generation, "SecretNotFound", errs, "pbs"),
        backoffSince(since, observed.now, SECRET_RETRY_MIN_MS, SECRET_RETRY_MAX_MS));
    }
    const r = planPbsCluster(observed, ec, prev, generation, managed);
    actions.push(...r.actions);
    return finish(actions, prev, r.status, r.requeueAfterMs);
  }
  return planMpi(observed, ec, actions, prev, generation, managed);
}

function ownedByCluster(o: KubeObject, uid: string | undefined): boolean {
  if (uid === undefined) return true;
  const refs = o.metadata.ownerReferences;
  return refs === undefined || refs.some((r) => r.uid === uid);
}

function finish(actions: Action[], prev: EngineClusterStatus | undefined, computed: EngineClusterStatus, requeueAfterMs: number | undefined): Plan {
  const status = withShortReason(computed);
  actions.push(...transitionEvents(prev, status));
  return { actions, status: sameStatus(prev, status) ? undefined : status, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
}

/** Status for a spec the planner can't act on: Degraded with a reason, owned objects untouched. */
function degradedOnly(observed: Observed, prev: EngineClusterStatus | undefined, generation: number, reason: string, errors: FieldError[], backend?: "mpi" | "pbs"): EngineClusterStatus {
  const message = describeErrors(errors);
  const engines = (observed.cluster as RawCluster).spec?.engines;
  const desired = typeof engines === "number" && Number.isInteger(engines) && engines >= 0 ? engines : prev?.engines?.desired ?? 0;
  const keep = (t: string): CondSpec[] => {
    const c = cond(prev?.conditions, t);
    return c === undefined ? [] : [{ type: t, status: c.status, reason: c.reason, message: c.message }];
  };
  const status: EngineClusterStatus = {
    ...prev,
    observedGeneration: generation,
    phase: "Degraded",
    engines: { desired, registered: prev?.engines?.registered ?? 0, alive: prev?.engines?.alive ?? 0 },
    conditions: conditions(prev?.conditions, [
      { type: "Ready", status: "False", reason, message },
      { type: "Progressing", status: "False", reason, message: "waiting for the spec to be fixed" },
      { type: "Degraded", status: "True", reason, message },
      ...keep("ControllerReady"), ...keep("WorkersReady"), ...keep("EnginesReady"),
    ], generation, observed.now),
  };
  if (backend !== undefined) status.backend = backend;
  return status;
}

interface Problem { reason: string; message: string; fatal?: boolean }

/** entrypoint-launcher.sh's exit status when the workers were not reachable before its deadline. */
export const LAUNCHER_EXIT_WORKERS_TIMEOUT = 3;
const MAX_TERMINATION_MESSAGE = 600;

/** Secret strings (the HMAC key) never reach a status or an Event, whatever a log line held. */
function redact(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 8) out = out.split(s).join("[redacted]");
  out = out.trim().replace(/\s+/g, " ");
  return out.length > MAX_TERMINATION_MESSAGE ? `…${out.slice(-MAX_TERMINATION_MESSAGE)}` : out;
}

/** Live (not terminating) pods of one component, oldest first. */
function componentPods(owned: KubeObject[], component: Component): KubeObject[] {
  return owned.filter((p) => p.kind === "Pod" && p.metadata.labels?.[COMPONENT_LABEL] === component && p.metadata.deletionTimestamp === undefined)
    .sort((a, b) => String(a.metadata.creationTimestamp ?? "").localeCompare(String(b.metadata.creationTimestamp ?? "")) || a.metadata.name.localeCompare(b.metadata.name));
}

const restartsOf = (pod: KubeObject): number => arr(obj(pod.status).containerStatuses).reduce((n, cs) => n + num(cs.restartCount), 0);

/** The controller pod the engines talk to, as `name:restarts` (a restarted container restores its engines too, from its run volume). */
function controllerPodId(owned: KubeObject[]): string | undefined {
  const pods = componentPods(owned, "controller");
  const pod = pods[pods.length - 1];
  return pod === undefined ? undefined : `${pod.metadata.name}:${restartsOf(pod)}`;
}

/** Restarts of the current world's launcher pods (the Job restarts mpiexec after it exits non-zero). */
function launcherRestarts(owned: KubeObject[], world: string): number {
  return componentPods(owned, "launcher").filter((p) => p.metadata.labels?.[WORLD_LABEL] === world).reduce((n, p) => n + restartsOf(p), 0);
}

/** How the current world's launcher last ended (exit status, termination message), if it did. */
function lastLauncherTermination(owned: KubeObject[], world: string): { exitCode: number; message: string; restarts: number } | undefined {
  for (const pod of componentPods(owned, "launcher").filter((p) => p.metadata.labels?.[WORLD_LABEL] === world).reverse()) {
    for (const cs of arr(obj(pod.status).containerStatuses)) {
      const st = obj(cs.state);
      const ended = obj(st.terminated).exitCode !== undefined ? obj(st.terminated) : obj(obj(cs.lastState).terminated);
      if (ended.exitCode === undefined || num(ended.exitCode) === 0) continue;
      return { exitCode: num(ended.exitCode), message: typeof ended.message === "string" ? ended.message : String(ended.reason ?? ""), restarts: num(cs.restartCount) };
    }
  }
  return undefined;
}

/** Diagnose the owned workloads and pods: what blocks the cluster, with a reason and a message. */
function diagnose(o: MpiObjects, owned: KubeObject[], observed: Observed, ec: EngineCluster, enginesReady: boolean, secrets: string[]): Problem[] {
  const out: Problem[] = [];
  const missing = referencedSecrets(observed.cluster).filter((s) => observed.secrets?.[s] === false);
  if (missing.length > 0) out.push({ reason: "SecretNotFound", message: `Secret ${missing.join(", ")} referenced by spec.backend.mpi (env or imagePullSecrets) not found` });
  if (ec.spec.controller.curve && o.connectionSecret.data !== undefined && !(CONNECTION_KEYS.curvePublicKey in (o.connectionSecret.data as Obj))) {
    out.push({ reason: "CurveKeysUnavailable", message: "spec.controller.curve is true but no CurveZMQ key pair was provided" });
  }
  const deploy = find(owned, "Deployment", o.controllerDeployment.metadata.name);
  for (const c of arr(obj(deploy?.status).conditions)) {
    if (c.type === "Progressing" && c.status === "False" && c.reason === "ProgressDeadlineExceeded") {
      out.push({ reason: "ControllerProgressDeadlineExceeded", message: `controller Deployment ${o.controllerDeployment.metadata.name}: ${String(c.message ?? "progress deadline exceeded")}` });
    }
    if (c.type === "ReplicaFailure" && c.status === "True") {
      out.push({ reason: "ControllerReplicaFailure", message: `controller Deployment: ${String(c.message ?? c.reason ?? "replica failure")}` });
    }
  }
  const job = find(owned, "Job", o.launcher.metadata.name);
  for (const c of arr(obj(job?.status).conditions)) {
    if (c.type === "Failed" && c.status === "True") {
      out.push({ reason: "LauncherFailed", message: `launcher Job ${o.launcher.metadata.name} failed: ${String(c.reason ?? "")} ${String(c.message ?? "")}`.trim(), fatal: true });
    }
    if (c.type === "Complete" && c.status === "True") {
      out.push({ reason: "LauncherExited", message: `launcher Job ${o.launcher.metadata.name} completed: mpiexec exited, the MPI world is gone (change the spec or delete the Job to relaunch)`, fatal: true });
    }
  }
  // The launcher's mpiexec (or its wait for the workers) ended and the Job restarts it: while the
  // engines are not all back, say why it ended (the container's termination message).
  const launcherEnded = enginesReady ? undefined : lastLauncherTermination(owned, o.world);
  if (launcherEnded !== undefined) {
    const detail = launcherEnded.message !== "" ? `: ${redact(launcherEnded.message, secrets)}` : "";
    out.push(launcherEnded.exitCode === LAUNCHER_EXIT_WORKERS_TIMEOUT
      ? { reason: "WorkersNotReadyTimeout", message: `the launcher gave up waiting for the workers after spec.backend.mpi.workersReadyTimeoutSeconds=${ec.spec.backend.mpi?.workersReadyTimeoutSeconds ?? ""}s (restart ${launcherEnded.restarts}, the Job retries within its backoff limit)${detail}` }
      : { reason: "MpiexecFailed", message: `the launcher's mpiexec exited ${launcherEnded.exitCode} (restart ${launcherEnded.restarts}; a lost worker ends the whole MPI world, which the launcher relaunches)${detail}` });
  }
  // Pods (when the runtime lists them): images that can't be pulled, containers that can't start.
  const pods = owned.filter((p) => p.kind === "Pod").sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const seen = new Set<string>();
  for (const pod of pods) {
    const st = obj(pod.status);
    for (const cs of [...arr(st.initContainerStatuses), ...arr(st.containerStatuses)]) {
      const waiting = obj(obj(cs.state).waiting);
      const reason = typeof waiting.reason === "string" ? waiting.reason : "";
      // the launcher restarting after mpiexec ended is reported above, with why it ended
      if (reason === "CrashLoopBackOff" && launcherEnded !== undefined && pod.metadata.labels?.[COMPONENT_LABEL] === "launcher") continue;
      let kind: string | undefined;
      if (["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"].includes(reason)) kind = "ImagePullFailed";
      else if (["CreateContainerConfigError", "CreateContainerError"].includes(reason)) kind = "ContainerConfigError";
      else if (reason === "CrashLoopBackOff") kind = "CrashLoopBackOff";
      if (kind === undefined) continue;
      const key = `${kind}/${String(cs.image ?? "")}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const detail = typeof waiting.message === "string" && waiting.message !== "" ? `: ${waiting.message}` : "";
      out.push({ reason: kind, message: `pod ${pod.metadata.name} container ${String(cs.name)} (image ${String(cs.image)}): ${reason}${detail}` });
    }
  }
  return out;
}

function planMpi(observed: Observed, ec: EngineCluster, actions: Action[], prev: EngineClusterStatus | undefined, generation: number, managed: KubeObject[]): Plan {
  const given = Object.fromEntries(Object.entries(observed.config ?? {}).filter(([, v]) => v !== undefined));
  const config: BuildConfig = { ...DEFAULT_BUILD_CONFIG, ...given };
  const ref = clusterRef(ec);
  const owned = observed.owned;
  const probe = observed.controllerEngines;
  const probed = probe !== undefined && !("error" in probe) ? probe : undefined;
  // A replaced controller pod (or a restarted container) takes the running engines back with their
  // ids (--restore: from its run volume, or in a new pod from the controller-state ConfigMap) and
  // the engines reconnect through the Service by themselves: the world is kept. Only if they are
  // not all back in time is the world relaunched (a new epoch names a new launcher Job).
  const controllerPod = controllerPodId(owned) ?? prev?.mpi?.controllerPod;
  const saved = parseControllerState(find(managed, "ConfigMap", names.controllerState(ref.name)));
  const re = reattachStep({
    prevPod: prev?.mpi?.controllerPod, pod: controllerPod, prevRegistered: prev?.engines?.registered ?? 0, savedEngines: saved?.engines.length ?? 0,
    reattach: prev?.mpi?.reattach, probed, desired: ec.spec.engines, timeoutSeconds: ec.spec.controller.reattachTimeoutSeconds, now: observed.now,
  });
  actions.push(...re.events);
  const epoch = (prev?.mpi?.worldEpoch ?? 0) + (re.relaunch ? 1 : 0);
  const material = keyMaterial(ec, managed, observed.generated);
  const objects = buildMpiObjects(ec, material, config, epoch, controllerStateOf(probed, saved));
  const desired = applyOrder(objects);

  if (!desired.some((d) => find(managed, d.kind, d.metadata.name) !== undefined)) {
    actions.push({ type: "event", eventType: "Normal", reason: "Creating", message: `creating the controller, ${objects.shape.workers} worker(s) and a launcher for ${objects.shape.engines} engine(s)` });
  }
  // Key Secrets the cache doesn't show yet are created, never applied: a reconcile racing the
  // informer would otherwise force-apply freshly generated keys over the ones running engines use.
  // Once observed they are applied like the rest (with the keys read back from them).
  const keySecrets = new Set([objects.connectionSecret.metadata.name, objects.sshSecret.metadata.name]);
  for (const d of desired) {
    const unobservedKey = d.kind === "Secret" && keySecrets.has(d.metadata.name) && find(managed, "Secret", d.metadata.name) === undefined;
    actions.push({ type: unobservedKey ? "create" : "apply", object: d });
  }

  // anything managed and not desired goes (old launcher Jobs after a relaunch, renamed objects)
  const want = new Set(desired.map((d) => refKey(refOf(d))));
  const stale = managed.filter((m) => !want.has(refKey(refOf(m))) && m.metadata.deletionTimestamp === undefined)
    .sort((a, b) => refKey(refOf(a)).localeCompare(refKey(refOf(b))));
  for (const s of stale) actions.push({ type: "delete", ref: refOf(s), propagationPolicy: "Background" });

  // relaunch: the world generation changed since the last status
  const prevWorld = prev?.mpi?.worldGeneration;
  const relaunched = prevWorld !== undefined && prevWorld !== objects.world;
  // a world relaunched for any reason has no engines left to re-attach
  const reattach = relaunched ? undefined : re.reattach;
  if (relaunched) {
    const prevDesired = prev?.engines?.desired;
    const why = re.relaunch
      ? `the engines did not re-attach to the replaced controller (${prev?.mpi?.reattach?.from ?? "?"} → ${controllerPod ?? "?"}) within spec.controller.reattachTimeoutSeconds=${ec.spec.controller.reattachTimeoutSeconds}s`
      : prevDesired !== undefined && prevDesired !== ec.spec.engines
        ? `spec.engines changed ${prevDesired} → ${ec.spec.engines}`
        : "the MPI world's shape or launcher pod changed (image, slots, workers, implementation, env or arguments)";
    actions.push({
      type: "event", eventType: "Normal", reason: "Relaunching",
      message: `${why}: relaunching the MPI world (launcher Job ${names.launcher(ref.name, objects.world)} replaces ${names.launcher(ref.name, prevWorld)})`,
    });
  }

  // observed readiness
  const deploy = find(owned, "Deployment", objects.controllerDeployment.metadata.name);
  const sts = find(owned, "StatefulSet", objects.workers.metadata.name);
  const job = find(owned, "Job", objects.launcher.metadata.name);
  const controllerAvailable = num(obj(deploy?.status).availableReplicas) >= 1;
  const readyWorkers = num(obj(sts?.status).readyReplicas);
  const workersReady = sts !== undefined && readyWorkers >= objects.shape.workers;

  const keepCounts = !relaunched && prev?.engines !== undefined;
  const registered = probed?.registered ?? (keepCounts ? prev.engines!.registered : 0);
  const alive = probed?.alive ?? (keepCounts ? prev.engines!.alive : 0);
  // while re-attaching, restored engines are listed before their hearts answer: not ready yet
  const enginesReady = probed !== undefined && probed.registered >= ec.spec.engines && reattach === undefined;

  // mpiexec ended and the Job restarted the launcher (a lost worker ends the whole world).
  const restarts = launcherRestarts(owned, objects.world);
  const prevRestarts = relaunched ? 0 : prev?.mpi?.launcherRestarts ?? 0;
  const secrets = [material.hmacKey];
  if (restarts > prevRestarts) {
    const ended = lastLauncherTermination(owned, objects.world);
    const how = ended === undefined ? "" : ended.exitCode === LAUNCHER_EXIT_WORKERS_TIMEOUT
      ? ` after waiting ${ec.spec.backend.mpi?.workersReadyTimeoutSeconds ?? ""}s for the workers`
      : ` after mpiexec exited ${ended.exitCode}${ended.message !== "" ? ` (${redact(ended.message, secrets).slice(-200)})` : ""}`;
    actions.push({ type: "event", eventType: "Warning", reason: "LauncherRestarted", message: `launcher restarted (restart ${restarts})${how}: the MPI world is relaunched once every worker is reachable` });
  }

  const problems = diagnose(objects, owned, observed, ec, enginesReady, secrets);
  const degraded = problems.length > 0;
  const failed = problems.some((p) => p.fatal === true);
  const ready = !degraded && controllerAvailable && enginesReady;

  const controllerCond: CondSpec = deploy === undefined
    ? { type: "ControllerReady", status: "False", reason: "ControllerCreating", message: `controller Deployment ${objects.controllerDeployment.metadata.name} is being created` }
    : controllerAvailable
      ? { type: "ControllerReady", status: "True", reason: "ControllerAvailable", message: `controller ${dns.controller(ref, config.clusterDomain)} is available` }
      : { type: "ControllerReady", status: "False", reason: "ControllerNotAvailable", message: `controller Deployment ${objects.controllerDeployment.metadata.name} has no available replica` };
  const workersCond: CondSpec = workersReady
    ? { type: "WorkersReady", status: "True", reason: "AllWorkersReady", message: `${readyWorkers}/${objects.shape.workers} worker pods ready` }
    : { type: "WorkersReady", status: "False", reason: "WorkersNotReady", message: `${readyWorkers}/${objects.shape.workers} worker pods ready` };
  let enginesCond: CondSpec;
  if (probe === undefined) enginesCond = { type: "EnginesReady", status: "Unknown", reason: "ControllerNotQueried", message: "the controller's engine list was not read" };
  else if ("error" in probe) enginesCond = { type: "EnginesReady", status: "Unknown", reason: "ControllerUnreachable", message: `GET /api/v1/engines failed: ${probe.error}` };
  else if (enginesReady) enginesCond = { type: "EnginesReady", status: "True", reason: "AllEnginesRegistered", message: `${probe.registered}/${ec.spec.engines} engines registered, ${probe.alive} alive` };
  else if (reattach !== undefined) enginesCond = { type: "EnginesReady", status: "False", reason: "EnginesReattaching", message: reattachMessage(reattach, probe, ec, controllerPod) };
  else enginesCond = { type: "EnginesReady", status: "False", reason: "EnginesRegistering", message: `${probe.registered}/${ec.spec.engines} engines registered` };

  const first = problems[0];
  const degradedMsg = problems.map((p) => p.message).join("; ");
  let readyCond: CondSpec;
  if (ready) readyCond = { type: "Ready", status: "True", reason: "Ready", message: `all ${ec.spec.engines} engines registered` };
  else if (first !== undefined) readyCond = { type: "Ready", status: "False", reason: first.reason, message: degradedMsg };
  else if (controllerCond.status !== "True") readyCond = { type: "Ready", status: "False", reason: controllerCond.reason, message: controllerCond.message };
  else readyCond = { type: "Ready", status: "False", reason: enginesCond.reason, message: enginesCond.message };
  const progressing: CondSpec = ready
    ? { type: "Progressing", status: "False", reason: "Ready", message: "the MPI world is up" }
    : degraded
      ? { type: "Progressing", status: "False", reason: first!.reason, message: "blocked: see the Degraded condition" }
      : reattach !== undefined
        ? { type: "Progressing", status: "True", reason: "Reattaching", message: reattachMessage(reattach, probed, ec, controllerPod) }
        : { type: "Progressing", status: "True", reason: relaunched || cond(prev?.conditions, "Progressing")?.reason === "Relaunching" ? "Relaunching" : "Launching", message: `starting ${ec.spec.engines} engine(s) on ${objects.shape.workers} worker(s)` };
  const degradedCond: CondSpec = first !== undefined
    ? { type: "Degraded", status: "True", reason: first.reason, message: degradedMsg }
    : { type: "Degraded", status: "False", reason: "AsExpected", message: "no problem observed" };

  let phase: Phase;
  if (failed) phase = "Failed";
  else if (degraded) phase = "Degraded";
  else if (ready) phase = "Ready";
  else if (deploy !== undefined || sts !== undefined || job !== undefined) phase = "Starting";
  else phase = "Pending";

  const status: EngineClusterStatus = {
    observedGeneration: generation,
    phase,
    backend: "mpi",
    engines: { desired: ec.spec.engines, registered, alive },
    conditions: conditions(prev?.conditions, [readyCond, progressing, degradedCond, controllerCond, workersCond, enginesCond], generation, observed.now),
    controller: {
      service: names.controllerService(ref.name),
      connectionSecret: names.connectionSecret(ref.name),
      ...(ec.spec.controller.service.exposeApi ? { httpEndpoint: `http://${dns.controller(ref, config.clusterDomain)}:${HTTP_PORT}` } : {}),
    },
    mpi: {
      worldGeneration: objects.world,
      launcherJob: objects.launcher.metadata.name,
      workers: objects.shape.workers,
      readyWorkers,
      relaunches: (prev?.mpi?.relaunches ?? 0) + (relaunched ? 1 : 0),
      ...(epoch > 0 ? { worldEpoch: epoch } : {}),
      ...(controllerPod !== undefined ? { controllerPod } : {}),
      ...(reattach !== undefined ? { reattach } : {}),
      ...(restarts > 0 ? { launcherRestarts: restarts } : {}),
    },
  };
  // polled soon: the controller's engine list (not watched) once it can be asked, and whatever a
  // problem depends on (referenced Secrets are not watched either)
  const polled = controllerAvailable || probed !== undefined || degraded;
  const requeue = failed ? undefined : ready ? REQUEUE_READY_MS : polled ? REQUEUE_STARTING_MS : REQUEUE_WAITING_MS;
  return finish(actions, prev, status, requeue);
}

// ---------------------------------------------------------------------------------------------
// a replaced controller: the running world's engines re-attach, or the world is relaunched

export type Reattach = NonNullable<NonNullable<EngineClusterStatus["mpi"]>["reattach"]>;

export interface ReattachInput {
  /** The controller pod (`name:restarts`) in the last status, and now. */
  prevPod: string | undefined;
  pod: string | undefined;
  /** Engines registered in the last status, and listed in the controller-state ConfigMap. */
  prevRegistered: number;
  savedEngines: number;
  /** A re-attach in progress (the last status'). */
  reattach: Reattach | undefined;
  /** The new controller's engine list (alive: hearts that answered it). */
  probed: { registered: number; alive: number } | undefined;
  desired: number;
  timeoutSeconds: number;
  now: Date;
}

export interface ReattachOutcome {
  /** The re-attach still in progress (status.mpi.reattach), if any. */
  reattach: Reattach | undefined;
  /** The engines did not come back in time: relaunch the world. */
  relaunch: boolean;
  events: Action[];
}

/** `name:restarts` → how a change of it reads in an Event. */
function describeReplacement(from: string, to: string): string {
  const split = (p: string) => { const i = p.lastIndexOf(":"); return i < 0 ? [p, ""] : [p.slice(0, i), p.slice(i + 1)]; };
  const [fromName] = split(from);
  const [toName, toRestarts] = split(to);
  return fromName === toName
    ? `the controller container in pod ${toName} restarted (restart ${toRestarts})`
    : `controller pod ${fromName} was replaced by ${toName}`;
}

/**
 * One step of a controller replacement, pure. A new controller pod (or a restarted container)
 * while the world had engines opens a re-attach window of `timeoutSeconds`; it closes when every
 * desired engine is registered and its heart answered the new controller, or, past the deadline,
 * with a relaunch of the world. A second replacement within the window starts it again.
 */
export function reattachStep(i: ReattachInput): ReattachOutcome {
  const events: Action[] = [];
  let reattach = i.reattach;
  const replaced = i.prevPod !== undefined && i.pod !== undefined && i.pod !== i.prevPod;
  if (replaced && (i.prevRegistered > 0 || i.savedEngines > 0 || reattach !== undefined)) {
    const engines = Math.max(i.prevRegistered, i.savedEngines, reattach?.engines ?? 0);
    const from = reattach?.from ?? i.prevPod!;
    reattach = { since: isoSeconds(i.now), from, engines };
    events.push({
      type: "event", eventType: "Warning", reason: "ControllerReplaced",
      message: `${describeReplacement(i.prevPod!, i.pod!)}: the ${engines} engine(s) of the running MPI world re-attach to it with their ids; ` +
        `the world is relaunched if they are not all back within spec.controller.reattachTimeoutSeconds=${i.timeoutSeconds}s`,
    });
  }
  if (reattach === undefined) return { reattach, relaunch: false, events };
  const back = i.probed !== undefined && i.probed.registered >= i.desired && i.probed.alive >= i.desired;
  if (back) {
    events.push({ type: "event", eventType: "Normal", reason: "EnginesReattached", message: `${i.probed!.alive}/${i.desired} engines re-attached to the new controller with their ids; the MPI world was kept` });
    return { reattach: undefined, relaunch: false, events };
  }
  const since = Date.parse(reattach.since);
  if (Number.isFinite(since) && i.now.getTime() - since >= i.timeoutSeconds * 1000) {
    const got = i.probed === undefined ? "the new controller's engine list could not be read" : `${i.probed.alive}/${i.desired} engines re-attached`;
    events.push({ type: "event", eventType: "Warning", reason: "ReattachTimedOut", message: `${got} within spec.controller.reattachTimeoutSeconds=${i.timeoutSeconds}s of the controller's replacement: relaunching the MPI world` });
    return { reattach: undefined, relaunch: true, events };
  }
  return { reattach, relaunch: false, events };
}

function reattachMessage(r: Reattach, probed: { registered: number; alive: number } | undefined, ec: EngineCluster, pod: string | undefined): string {
  const deadline = Date.parse(r.since) + ec.spec.controller.reattachTimeoutSeconds * 1000;
  const at = Number.isFinite(deadline) ? isoSeconds(new Date(deadline)) : "?";
  const now = probed === undefined ? "" : ` (${probed.alive}/${ec.spec.engines} back so far)`;
  return `the running MPI world's engines re-attach to controller ${pod ?? "?"} (was ${r.from})${now}; the world is relaunched if they are not all back by ${at}`;
}

/**
 * What the controller-state ConfigMap holds: the controller's registrations as it reports them,
 * else (not reachable now, or an older controller that reports no uuids) what it held already.
 */
function controllerStateOf(probed: { engines?: Array<{ id: number; uuid: string }>; nextId?: number } | undefined, saved: ControllerEngineState | undefined): ControllerEngineState {
  if (probed?.engines !== undefined) return { engines: probed.engines, nextId: probed.nextId ?? 0 };
  return saved ?? EMPTY_ENGINE_STATE;
}

function planDeletion(observed: Observed, prev: EngineClusterStatus | undefined, generation: number, hasFinalizer: boolean, managed: KubeObject[]): Plan {
  if (!hasFinalizer) return { actions: [], status: undefined };
  if (managed.length === 0) return { actions: [{ type: "removeFinalizer" }], status: undefined };
  const actions: Action[] = [];
  if (prev?.phase !== "Terminating") {
    actions.push({ type: "event", eventType: "Normal", reason: "Deleting", message: `deleting ${managed.length} owned object(s) before removing the finalizer` });
  }
  const pending = managed.filter((m) => m.metadata.deletionTimestamp === undefined)
    .sort((a, b) => refKey(refOf(a)).localeCompare(refKey(refOf(b))));
  for (const m of pending) actions.push({ type: "delete", ref: refOf(m), propagationPolicy: "Background" });
  const message = `waiting for ${managed.length} owned object(s) to be deleted`;
  const status: EngineClusterStatus = {
    ...prev,
    observedGeneration: generation,
    phase: "Terminating",
    reason: "Terminating",
    conditions: conditions(prev?.conditions, [
      { type: "Ready", status: "False", reason: "Terminating", message },
      { type: "Progressing", status: "True", reason: "Terminating", message },
      ...(prev?.conditions ?? []).filter((c) => c.type !== "Ready" && c.type !== "Progressing")
        .map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message })),
    ], generation, observed.now),
  };
  return { actions, status: sameStatus(prev, status) ? undefined : status, requeueAfterMs: REQUEUE_DELETING_MS };
}

// ---------------------------------------------------------------------------------------------
// pbs: the controller (the same builders as for mpi) plus the engines as one batch job, driven by
// the pbs backend's pure step (`planPbs`). The runtime observes the login host (dialect, one
// batched qstat) and passes it in `Observed.pbs`; scheduler commands come back as
// `pbsSubmit`/`pbsQdel` actions, which the runtime executes through the pbs adapter (a fresh
// qstat before any qsub, so a job submitted by a reconcile whose status write was lost is adopted
// instead of submitted twice). Nothing is submitted before the connection Secret is observed: the
// job carries the HMAC key, and a key generated afresh by a second reconcile would otherwise shape
// a second job.

/** What the runtime observed on the login host: its dialect and every job one qstat listed. */
/** `tunnel`: the state of the cluster's remote forwards on the login host (network.mode sshTunnel). */
export type ObservedPbs = { dialect: DialectName; jobs: QstatJob[]; tunnel?: ObservedTunnel } | { error: string };
/** The forwarder's state; `portBase` is the block it bound (it falls back to later blocks when one is taken). */
export interface ObservedTunnel { state: string; error?: string; portBase?: number; skippedBlocks?: number[] }

export type PbsPlanAction =
  /** qsub `script` as job `name`; the runtime appends `{ id, ...record }` to status.pbs.jobs. */
  | { type: "pbsSubmit"; name: string; script: string; record: Omit<PbsJobRecord, "id"> }
  | { type: "pbsQdel"; ids: string[]; why: "deleting" | "specChanged" | "duplicate" }
  /** network.mode sshTunnel: keep these remote forwards open on the login host (idempotent). */
  | { type: "pbsTunnel"; channels: TunnelChannel[] };


function configOf(observed: Observed): PlannerConfig {
  const given = Object.fromEntries(Object.entries(observed.config ?? {}).filter(([, v]) => v !== undefined));
  return { ...DEFAULT_BUILD_CONFIG, ...given };
}

/**
 * sshTunnel: the block of forwarded ports the job is told about: the one the forwarder bound, else
 * the one status recorded, else the cluster's hashed block.
 */
export function tunnelBase(ec: EngineCluster, prev: EngineClusterStatus | undefined, tunnel: ObservedTunnel | undefined): number {
  if (tunnel?.state === "forwarding" && tunnel.portBase !== undefined) return tunnel.portBase;
  return prev?.pbs?.tunnel?.portBase ?? tunnelPortBase(clusterTag(clusterRef(ec)));
}

/**
 * network.mode direct: where compute nodes reach the controller, from what is really reachable.
 * - NodePort Service: `network.address` (a node's address) with the Service's node ports;
 * - LoadBalancer Service without `network.address`: the load balancer's address from the
 *   Service's status, once it has one;
 * - otherwise `network.address` (or, without it, the Service's cluster DNS name) with the
 *   Service's ports.
 * `waiting` says what is missing; nothing is submitted until it is there.
 */
export type DirectEndpoint = { address: string; nodePorts?: ReadonlyMap<number, number> } | { waiting: string };

export function directEndpoint(ec: EngineCluster, service: KubeObject | undefined, config: BuildConfig): DirectEndpoint {
  const pbs = ec.spec.backend.pbs!;
  const ref = clusterRef(ec);
  const svcName = names.controllerService(ref.name);
  const type = ec.spec.controller.service.type;
  const given = pbs.network.address;
  if (type === "NodePort") {
    if (given === undefined) return { waiting: `set spec.backend.pbs.network.address to a node's address: the controller Service ${svcName} is a NodePort` };
    const ports = new Map<number, number>();
    for (const p of (obj(service?.spec).ports ?? []) as Array<{ port?: unknown; nodePort?: unknown }>) {
      if (typeof p.port === "number" && typeof p.nodePort === "number") ports.set(p.port, p.nodePort);
    }
    const engine = SERVICE_PORTS.filter((p) => p.side === "engine" || p.side === "both");
    if (service === undefined || engine.some((p) => !ports.has(p.port))) return { waiting: `waiting for the node ports of Service ${svcName}` };
    return { address: given, nodePorts: ports };
  }
  if (type === "LoadBalancer" && given === undefined) {
    const ingress = (obj(obj(service?.status).loadBalancer).ingress ?? []) as Array<{ ip?: unknown; hostname?: unknown }>;
    const found = ingress.map((i) => (typeof i.ip === "string" ? i.ip : typeof i.hostname === "string" ? i.hostname : undefined)).find((a) => a !== undefined);
    if (found === undefined) return { waiting: `waiting for Service ${svcName} to get a load-balancer address` };
    if (!re(HOSTNAME).test(found) || found.length > 253) return { waiting: `Service ${svcName}'s load-balancer address ${JSON.stringify(found.slice(0, 64))} is not a host name or IPv4 address; set spec.backend.pbs.network.address` };
    return { address: found };
  }
  return { address: given ?? dns.controller(ref, config.clusterDomain) };
}

/** The engines' connection info: the controller's engine file, pointed at the routable address. */
export function pbsEngineConnection(ec: EngineCluster, material: ReturnType<typeof keyMaterial>, config: BuildConfig, portBase?: number, direct?: DirectEndpoint): string {
  const pbs = ec.spec.backend.pbs!;
  if (pbs.network.mode === "sshTunnel") {
    // engines reach the login host's loopback ports that the operator forwards to the controller
    const engine = connectionFiles(clusterRef(ec), ec, material, config).engine as unknown as EnginePorts & Record<string, unknown>;
    const ports = new Map(pbsTunnelChannels(ec, material, config, portBase).map((c) => [c.name, c.remotePort]));
    return JSON.stringify(tunnelledConnection(engine, ports, sshServer(pbs.user, pbs.host, pbs.port)));
  }
  const to = direct !== undefined && "address" in direct ? direct : undefined;
  const address = to?.address ?? pbs.network.address ?? dns.controller(clusterRef(ec), config.clusterDomain);
  const engine = { ...connectionFiles(clusterRef(ec), ec, material, config).engine, interface: `tcp://${address}`, location: address } as unknown as EnginePorts & Record<string, unknown>;
  const np = to?.nodePorts;
  if (np === undefined) return JSON.stringify(engine);
  // a NodePort Service: every engine-side port through its node port
  const via = (p: number): number => np.get(p) ?? p;
  return JSON.stringify({
    ...engine, registration: via(engine.registration), control: via(engine.control), mux: via(engine.mux), task: via(engine.task), iopub: via(engine.iopub),
    hb_ping: via(engine.hb_ping), hb_pong: via(engine.hb_pong), broadcast: engine.broadcast.map(via),
  });
}

/** sshTunnel: one forward per controller port, from the cluster's port block on the login host to the controller Service. */
export function pbsTunnelChannels(ec: EngineCluster, material: ReturnType<typeof keyMaterial>, config: BuildConfig, portBase?: number): TunnelChannel[] {
  const ref = clusterRef(ec);
  const engine = connectionFiles(ref, ec, material, config).engine as unknown as EnginePorts;
  return tunnelChannels(engine, dns.controller(ref, config.clusterDomain), portBase ?? tunnelPortBase(clusterTag(ref)));
}

function jobInput(ec: EngineCluster, engineConnection: string): JobInput {
  return { engines: ec.spec.engines, pbs: ec.spec.backend.pbs!, engineConnection };
}

function step(observed: Observed, ec: EngineCluster, prev: EngineClusterStatus | undefined, generation: number, name: string, deleting: boolean): PbsStep {
  const pbs = ec.spec.backend.pbs!;
  const o = observed.pbs;
  const dialect = o !== undefined && !("error" in o) ? dialects[o.dialect] : dialects[pbs.dialect === "auto" ? "slurm" : pbs.dialect];
  return planPbs({
    pbs, dialect, tag: clusterTag(clusterRef(ec)), name,
    observed: o === undefined ? { error: "the login host was not queried" } : "error" in o ? { error: o.error } : o.jobs,
    recorded: (prev?.pbs?.jobs ?? []) as PbsJobRecord[], generation, deleting, now: observed.now,
    ...(prev?.observedGeneration !== undefined ? { observedGeneration: prev.observedGeneration } : {}),
  });
}

const pbsActions = (s: PbsStep, script: () => string, queue: string | undefined, now: Date): Action[] => s.actions.map((a): Action =>
  a.type === "qdel"
    ? { type: "pbsQdel", ids: a.ids, why: a.why }
    : { type: "pbsSubmit", name: a.name, script: script(), record: { role: "engines", state: "Q", submittedAt: isoSeconds(now), ...(queue !== undefined ? { queue } : {}) } });

export function planPbsCluster(observed: Observed, ec: EngineCluster, prev: EngineClusterStatus | undefined, generation: number, managed: KubeObject[]): { actions: Action[]; status: EngineClusterStatus; requeueAfterMs: number } {
  const config = configOf(observed);
  const ref = clusterRef(ec);
  const pbs = ec.spec.backend.pbs!;
  const material = keyMaterial(ec, managed, observed.generated);
  // engines reach only the engine ports: from anywhere in direct mode (compute nodes), from the
  // operator's pods in sshTunnel mode (it forwards the login host's ports to the controller)
  const engineSources = pbs.network.mode === "sshTunnel" ? "operator" : "anywhere";
  // the controller-state ConfigMap as for mpi: a replaced controller pod takes the job's engines back
  const probedState = observed.controllerEngines !== undefined && !("error" in observed.controllerEngines) ? observed.controllerEngines : undefined;
  const savedState = parseControllerState(find(managed, "ConfigMap", names.controllerState(ref.name)));
  const desired = [
    buildConnectionSecret(ref, ec, material, config), buildControllerState(ref, controllerStateOf(probedState, savedState)),
    buildControllerService(ref, ec), buildNetworkPolicy(ref, config, engineSources, ec.spec.controller.clients),
    buildControllerDeployment(ref, ec, config),
  ];
  const actions: Action[] = [];
  if (!desired.some((d) => find(managed, d.kind, d.metadata.name) !== undefined)) {
    actions.push({ type: "event", eventType: "Normal", reason: "Creating", message: `creating the controller; the engines go to ${pbs.user}@${pbs.host} as one batch job of ${ec.spec.engines} engine(s)` });
  }
  const connectionName = names.connectionSecret(ref.name);
  const keyObserved = find(managed, "Secret", connectionName) !== undefined;
  // as for mpi: the key Secret is created, not applied, until the cache shows it
  for (const d of desired) actions.push({ type: d.kind === "Secret" && d.metadata.name === connectionName && !keyObserved ? "create" : "apply", object: d });

  const tunnelled = pbs.network.mode === "sshTunnel";
  const tunnelObserved = observed.pbs !== undefined && !("error" in observed.pbs) ? observed.pbs.tunnel : undefined;
  const forwarding = tunnelObserved?.state === "forwarding";
  const portBase = tunnelled ? tunnelBase(ec, prev, tunnelObserved) : undefined;
  const direct = tunnelled ? undefined : directEndpoint(ec, find(observed.owned, "Service", names.controllerService(ref.name)), config);
  const waitingForAddress = direct !== undefined && "waiting" in direct ? direct.waiting : undefined;
  const engineConnection = pbsEngineConnection(ec, material, config, portBase, direct);
  const job = jobInput(ec, engineConnection);
  const name = jobName(clusterTag(ref), job);
  let s = step(observed, ec, prev, generation, name, false);
  let scriptError: string | undefined;
  const script = (): string => renderScript(dialects[observed.pbs !== undefined && !("error" in observed.pbs) ? observed.pbs.dialect : "slurm"], name, job, `${ref.namespace}/${ref.name}`);
  try { script(); } catch (e) { if (e instanceof ScriptError) scriptError = e.message; else throw e; }

  let submitted: CondSpec = { ...s.submitted };
  // sshTunnel: the job is told the forwarded ports, so it waits until its block is bound (a taken
  // block moves the forwarder to the next one, which would change the job)
  const waitingForTunnel = tunnelled && !forwarding;
  if (scriptError !== undefined || !keyObserved || waitingForTunnel || waitingForAddress !== undefined) {
    // hold back qsub (qdel of stale jobs still goes ahead when the script is fine)
    const held = s.actions.filter((a) => a.type !== "submit");
    s = { ...s, actions: scriptError !== undefined ? [] : held };
    if (scriptError !== undefined) submitted = { type: "Submitted", status: "False", reason: "InvalidJobScript", message: scriptError };
    else if (s.phase === "Submitting" && !keyObserved) submitted = { type: "Submitted", status: "False", reason: "WaitingForConnectionSecret", message: `waiting for Secret ${names.connectionSecret(ref.name)} before submitting ${name}` };
    else if (s.phase === "Submitting" && waitingForAddress !== undefined) submitted = { type: "Submitted", status: "False", reason: "WaitingForControllerAddress", message: `${waitingForAddress} before submitting ${name}` };
    else if (s.phase === "Submitting") submitted = { type: "Submitted", status: "False", reason: "WaitingForTunnel", message: `waiting for the forwards on ${pbs.host} before submitting ${name}` };
  }
  // the forwarder is asked for the block status recorded (or the hashed one); it reports the one it got
  if (tunnelled) actions.push({ type: "pbsTunnel", channels: pbsTunnelChannels(ec, material, config, prev?.pbs?.tunnel?.portBase) });
  actions.push(...pbsActions(s, script, pbs.queue, observed.now));
  actions.push(...s.events.map((e): Action => ({ type: "event", ...e })));
  const skipped = tunnelObserved?.skippedBlocks ?? [];
  const forwardedPorts = portBase !== undefined ? `ports ${portBase}-${portBase + pbsTunnelChannels(ec, material, config, portBase).length - 1}` : "";
  const tunnelCond: CondSpec | undefined = !tunnelled ? undefined
    : tunnelObserved === undefined ? { type: "TunnelReady", status: "Unknown", reason: "TunnelOpening", message: `opening forwards on ${pbs.user}@${pbs.host}` }
      : forwarding ? {
        type: "TunnelReady", status: "True", reason: skipped.length > 0 ? "ForwardingOnFallbackBlock" : "Forwarding",
        message: `the controller's ports are forwarded on ${pbs.host}'s loopback, ${forwardedPorts}${skipped.length > 0 ? ` (block ${portBase} was used because ${skipped.join(", ")} ${skipped.length > 1 ? "were" : "was"} taken)` : ""}`,
      }
        : { type: "TunnelReady", status: "False", reason: tunnelObserved.state === "down" ? "TunnelDown" : "TunnelOpening", message: tunnelObserved.error ?? `forwards on ${pbs.host}: ${tunnelObserved.state}` };

  const deploy = find(observed.owned, "Deployment", names.controller(ref.name));
  const controllerAvailable = typeof obj(deploy?.status).availableReplicas === "number" && (obj(deploy?.status).availableReplicas as number) >= 1;
  const probe = observed.controllerEngines;
  const probed = probe !== undefined && !("error" in probe) ? probe : undefined;
  const enginesReady = probed !== undefined && probed.registered >= ec.spec.engines;
  const running = s.current !== undefined && s.current.phase === "running";
  const schedulerDown = observed.pbs !== undefined && "error" in observed.pbs;
  const problem = scriptError !== undefined ? { reason: "InvalidJobScript", message: scriptError }
    : schedulerDown ? { reason: "SchedulerUnreachable", message: submitted.message }
      : s.phase === "Failed" ? { reason: submitted.reason, message: submitted.message } : undefined;
  const ready = problem === undefined && controllerAvailable && enginesReady && running && (tunnelCond === undefined || tunnelCond.status === "True");

  const controllerCond: CondSpec = deploy === undefined
    ? { type: "ControllerReady", status: "False", reason: "ControllerCreating", message: `controller Deployment ${names.controller(ref.name)} is being created` }
    : controllerAvailable
      ? { type: "ControllerReady", status: "True", reason: "ControllerAvailable", message: `controller ${dns.controller(ref, config.clusterDomain)} is available` }
      : { type: "ControllerReady", status: "False", reason: "ControllerNotAvailable", message: `controller Deployment ${names.controller(ref.name)} has no available replica` };
  let enginesCond: CondSpec;
  if (probe === undefined) enginesCond = { type: "EnginesReady", status: "Unknown", reason: "ControllerNotQueried", message: "the controller's engine list was not read" };
  else if ("error" in probe) enginesCond = { type: "EnginesReady", status: "Unknown", reason: "ControllerUnreachable", message: `GET /api/v1/engines failed: ${probe.error}` };
  else if (enginesReady) enginesCond = { type: "EnginesReady", status: "True", reason: "AllEnginesRegistered", message: `${probe.registered}/${ec.spec.engines} engines registered, ${probe.alive} alive` };
  else enginesCond = { type: "EnginesReady", status: "False", reason: "EnginesRegistering", message: `${probe.registered}/${ec.spec.engines} engines registered` };

  let phase: Phase;
  if (problem !== undefined) phase = s.phase === "Failed" ? "Failed" : "Degraded";
  else if (ready) phase = "Ready";
  else if (submitted.reason === "WaitingForControllerAddress") phase = "Pending";
  else phase = s.phase === "Submitting" || s.phase === "Queued" || s.phase === "Starting" ? s.phase : "Pending";

  const readyCond: CondSpec = ready ? { type: "Ready", status: "True", reason: "Ready", message: `all ${ec.spec.engines} engines registered` }
    : problem !== undefined ? { type: "Ready", status: "False", reason: problem.reason, message: problem.message }
      : !running ? { type: "Ready", status: "False", reason: submitted.reason, message: submitted.message }
        : controllerCond.status !== "True" ? { type: "Ready", status: "False", reason: controllerCond.reason, message: controllerCond.message }
          : tunnelCond !== undefined && tunnelCond.status !== "True" ? { type: "Ready", status: "False", reason: tunnelCond.reason, message: tunnelCond.message }
            : { type: "Ready", status: "False", reason: enginesCond.reason, message: enginesCond.message };
  const progressing: CondSpec = ready ? { type: "Progressing", status: "False", reason: "Ready", message: "the engines' job is running" }
    : problem !== undefined ? { type: "Progressing", status: "False", reason: problem.reason, message: "blocked: see the Degraded condition" }
      : { type: "Progressing", status: "True", reason: submitted.reason, message: submitted.message };
  const degradedCond: CondSpec = problem !== undefined
    ? { type: "Degraded", status: "True", reason: problem.reason, message: problem.message }
    : { type: "Degraded", status: "False", reason: "AsExpected", message: "no problem observed" };

  const keepCounts = prev?.engines !== undefined;
  const status: EngineClusterStatus = {
    observedGeneration: generation,
    phase,
    backend: "pbs",
    engines: { desired: ec.spec.engines, registered: probed?.registered ?? (keepCounts ? prev.engines!.registered : 0), alive: probed?.alive ?? (keepCounts ? prev.engines!.alive : 0) },
    conditions: conditions(prev?.conditions, [readyCond, progressing, degradedCond, controllerCond, { ...submitted }, enginesCond, ...(tunnelCond !== undefined ? [tunnelCond] : [])], generation, observed.now),
    controller: {
      service: names.controllerService(ref.name),
      connectionSecret: names.connectionSecret(ref.name),
      ...(ec.spec.controller.service.exposeApi ? { httpEndpoint: `http://${dns.controller(ref, config.clusterDomain)}:${HTTP_PORT}` } : {}),
    },
    pbs: {
      jobs: s.jobs,
      ...(tunnelled && (forwarding || prev?.pbs?.tunnel?.portBase !== undefined) ? {
        tunnel: { portBase: portBase!, ...(forwarding && skipped.length > 0 ? { skippedBlocks: skipped.slice(0, 16) } : !forwarding && prev?.pbs?.tunnel?.skippedBlocks !== undefined ? { skippedBlocks: prev.pbs.tunnel.skippedBlocks } : {}) },
      } : {}),
    },
  };
  return { actions, status, requeueAfterMs: ready ? REQUEUE_READY_MS : REQUEUE_STARTING_MS };
}

/** Annotation a user sets ("true") to let a pbs cluster go at once while its login host can't be reached. */
export const ABANDON_JOBS_ANNOTATION = "ipp.dev/abandon-jobs";
/** How long a deleted pbs cluster waits for its login host before it lets go anyway (operator flag --pbs-deletion-grace). */
export const DEFAULT_PBS_DELETION_GRACE_SECONDS = 600;
/** Backoff of the retries while the login host can't be reached during deletion. */
export const DELETION_RETRY_MIN_MS = 2_000;
export const DELETION_RETRY_MAX_MS = 60_000;

/**
 * Retry delay that doubles with the time a problem has lasted: the next try comes after as long
 * again as the problem has already lasted, between `minMs` and `maxMs`. Pure (the clock is an input).
 */
export function backoffSince(since: string | undefined, now: Date, minMs: number, maxMs: number): number {
  const started = since === undefined ? Number.NaN : Date.parse(since);
  const lasted = Number.isFinite(started) ? now.getTime() - started : 0;
  return Math.min(maxMs, Math.max(minMs, lasted));
}

const isLiveRecord = (r: PbsJobRecord): boolean => !["C", "F", "X", "Gone"].includes(r.state);

/**
 * Deletion of a pbs cluster: qdel every live job first; `done` once qstat lists none, and only
 * then does the generic deletion (owned objects, finalizer) go on.
 *
 * While the login host can't be read (the credentials Secret is gone, as `kubectl delete
 * namespace` does, or the host is down) the jobs may still run, so the finalizer stays: Degraded
 * says why, with a Warning Event, and the reconcile is retried with backoff. Deletion never hangs
 * for good: once the grace period (counted from the deletion request) is over, or at once when the
 * user sets the annotation `ipp.dev/abandon-jobs: "true"`, the cluster lets go. That is first
 * recorded (Submitted=False JobsAbandoned, and a Warning Event naming the job ids that may still
 * run), then the generic deletion proceeds.
 */
export function planPbsDeletion(observed: Observed, ec: EngineCluster, prev: EngineClusterStatus | undefined, generation: number): { done: boolean; plan: Plan } {
  const config = configOf(observed);
  const ref = clusterRef(ec);
  const pbs = ec.spec.backend.pbs!;
  if (cond(prev?.conditions, "Submitted")?.reason === "JobsAbandoned") return { done: true, plan: { actions: [], status: undefined } };
  // the job name only matters for classifying live jobs; qdel targets every live job of the cluster
  const secret = find(observed.owned, "Secret", names.connectionSecret(ref.name));
  const material = keyMaterial(ec, secret !== undefined ? [secret] : [], observed.generated);
  const portBase = ec.spec.backend.pbs!.network.mode === "sshTunnel" ? tunnelBase(ec, prev, undefined) : undefined;
  const direct = portBase === undefined ? directEndpoint(ec, find(observed.owned, "Service", names.controllerService(ref.name)), config) : undefined;
  const name = jobName(clusterTag(ref), jobInput(ec, pbsEngineConnection(ec, material, config, portBase, direct)));
  const s = step(observed, ec, prev, generation, name, true);
  if (s.done) return { done: true, plan: { actions: [], status: undefined } };
  const actions: Action[] = [];
  if (prev?.phase !== "Terminating") actions.push({ type: "event", eventType: "Normal", reason: "Deleting", message: "deleting the engines' batch job(s) before removing the finalizer" });

  const unreachable = observed.pbs === undefined || "error" in observed.pbs;
  const keep = (prev?.conditions ?? []).filter((c) => !["Ready", "Progressing", "Submitted", "Degraded"].includes(c.type))
    .map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message }));
  let submitted: CondSpec = { ...s.submitted };
  const prevDegraded = cond(prev?.conditions, "Degraded");
  let degraded: CondSpec | undefined = prevDegraded && { type: "Degraded", status: prevDegraded.status, reason: prevDegraded.reason, message: prevDegraded.message };
  let requeueAfterMs = REQUEUE_DELETING_MS;
  if (unreachable) {
    const credentialsGone = observed.secrets?.[pbs.credentialsSecret] === false;
    const why = credentialsGone ? `the credentials Secret ${pbs.credentialsSecret} is gone` : s.submitted.message;
    const reason = credentialsGone ? "CredentialsNotFound" : "SchedulerUnreachable";
    const mayRun = s.jobs.filter(isLiveRecord).map((j) => j.id);
    const jobs = mayRun.length > 0 ? `job(s) ${mayRun.join(", ")}` : "no recorded job (one may have been submitted before its id was recorded)";
    const requested = meta(observed).deletionTimestamp;
    const graceSec = config.pbsDeletionGraceSeconds ?? DEFAULT_PBS_DELETION_GRACE_SECONDS;
    const deadline = requested !== undefined ? Date.parse(requested) + graceSec * 1000 : Number.NaN;
    const byUser = meta(observed).annotations?.[ABANDON_JOBS_ANNOTATION] === "true";
    const expired = Number.isFinite(deadline) && observed.now.getTime() >= deadline;
    if (byUser || expired) {
      const because = byUser ? `the annotation ${ABANDON_JOBS_ANNOTATION}=true is set` : `the grace period of ${graceSec} s is over`;
      const message = `${because} and the login host can't be reached (${why}): removing the finalizer without qdel; ${jobs} may still be running on ${pbs.user}@${pbs.host}`;
      actions.push({ type: "event", eventType: "Warning", reason: "JobsAbandoned", message });
      submitted = { type: "Submitted", status: "False", reason: "JobsAbandoned", message };
      requeueAfterMs = 1;
    } else {
      const at = Number.isFinite(deadline) ? ` at ${isoSeconds(new Date(deadline))}` : "";
      const message = `deleting: ${why}; keeping the finalizer because ${jobs} may still be running on ${pbs.user}@${pbs.host}. ` +
        `Retrying with backoff; the finalizer goes after the grace period${at}, or now with the annotation ${ABANDON_JOBS_ANNOTATION}=true`;
      degraded = { type: "Degraded", status: "True", reason, message };
      const since = prevDegraded?.status === "True" && prevDegraded.reason === reason ? prevDegraded.lastTransitionTime : undefined;
      requeueAfterMs = backoffSince(since, observed.now, DELETION_RETRY_MIN_MS, DELETION_RETRY_MAX_MS);
      if (Number.isFinite(deadline)) requeueAfterMs = Math.max(1, Math.min(requeueAfterMs, deadline - observed.now.getTime()));
    }
  } else {
    actions.push(...pbsActions(s, () => "", pbs.queue, observed.now));
    if (degraded?.status === "True") degraded = { ...degraded, status: "False", reason: "AsExpected", message: "the login host answers again" };
  }
  const status: EngineClusterStatus = {
    ...prev,
    observedGeneration: generation,
    phase: "Terminating",
    reason: "Terminating",
    conditions: conditions(prev?.conditions, [
      { type: "Ready", status: "False", reason: "Terminating", message: submitted.message },
      { type: "Progressing", status: "True", reason: "Terminating", message: submitted.message },
      submitted,
      ...(degraded !== undefined ? [degraded] : []),
      ...keep,
    ], generation, observed.now),
    pbs: { jobs: s.jobs },
  };
  const deg = cond(status.conditions, "Degraded");
  const pdeg = cond(prev?.conditions, "Degraded");
  if (deg?.status === "True" && (pdeg?.status !== "True" || pdeg.reason !== deg.reason)) actions.push({ type: "event", eventType: "Warning", reason: deg.reason, message: deg.message });
  return { done: false, plan: { actions, status: sameStatus(prev, status) ? undefined : status, requeueAfterMs } };
}

const meta = (observed: Observed): NonNullable<RawCluster["metadata"]> => (observed.cluster as RawCluster).metadata ?? {};

/** The planner as the runtime consumes it. */
export const planner = { plan, finalizer: FINALIZER, referencedSecrets: (cluster: KubeObject) => referencedSecrets(cluster) };

export const ENGINECLUSTER_API = { apiVersion: API_VERSION, kind: KIND };
export { WORLD_LABEL };
