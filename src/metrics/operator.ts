/**
 * Every Prometheus metric of the operator, created on a caller-supplied Registry (never the global
 * one). The reconciler talks to the OperatorMetrics interface; per-cluster series are removed with
 * `clusterGone` so labels of deleted EngineClusters do not pile up.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export type ReconcileResult = "success" | "error" | "terminal_error" | "requeue_after";
export const RECONCILE_RESULTS: ReconcileResult[] = ["success", "error", "terminal_error", "requeue_after"];
export const PHASES = ["Pending", "Submitting", "Queued", "Starting", "Ready", "Degraded", "Terminating", "Failed"] as const;

export interface OperatorMetrics {
  readonly registry: Registry;
  reconciled(result: ReconcileResult, seconds: number): void;
  queueDepth(depth: number): void;
  /** The cluster's current phase and engine counts (per-cluster series). */
  clusterObserved(c: { namespace: string; name: string; phase?: string; desired?: number; registered?: number; alive?: number }): void;
  /** Seconds from the cluster's creation to its first Ready, observed once per cluster uid. */
  clusterReady(uid: string, seconds: number): void;
  /** The cluster was Ready before this process saw it turn so (status read back after a restart): never observe its time_to_ready. */
  clusterWasReady(uid: string): void;
  clusterGone(namespace: string, name: string, uid?: string): void;
  leader(isLeader: boolean): void;
  apiRequest(verb: string, code: string): void;
  eventEmitted(type: string): void;
}

export function createOperatorMetrics(registry: Registry, opts: { defaultMetrics?: boolean } = {}): OperatorMetrics {
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: "ipp_operator_" });
  const reconcileTotal = new Counter({
    name: "ipp_operator_reconcile_total", help: "Reconciles by result (success, error, terminal_error, requeue_after).",
    labelNames: ["result"], registers: [registry],
  });
  const reconcileErrors = new Counter({
    name: "ipp_operator_reconcile_errors_total", help: "Reconciles that ended in an error (retried or terminal).", registers: [registry],
  });
  const reconcileDuration = new Histogram({
    name: "ipp_operator_reconcile_duration_seconds", help: "Time spent in one reconcile, by result.",
    labelNames: ["result"], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry],
  });
  const depth = new Gauge({ name: "ipp_operator_workqueue_depth", help: "Keys waiting in the work queue.", registers: [registry] });
  const byPhase = new Gauge({
    name: "ipp_operator_engineclusters", help: "EngineClusters by phase.", labelNames: ["phase"], registers: [registry],
  });
  // The EngineCluster is `cluster_namespace`/`cluster`: a label named `namespace` would clash with
  // the scrape target's (Prometheus would rename ours to exported_namespace).
  const engines = new Gauge({
    name: "ipp_operator_enginecluster_engines", help: "Engines of one EngineCluster: desired, registered, alive.",
    labelNames: ["cluster_namespace", "cluster", "state"], registers: [registry],
  });
  // One series per cluster, for its current phase (value 1); the old phase's series goes when the
  // phase changes, so an alert's `for:` on it measures how long the cluster has been in that phase.
  const clusterPhase = new Gauge({
    name: "ipp_operator_enginecluster_phase", help: "1 for the current phase of one EngineCluster (series of other phases are absent).",
    labelNames: ["cluster_namespace", "cluster", "phase"], registers: [registry],
  });
  const timeToReady = new Histogram({
    name: "ipp_operator_time_to_ready_seconds", help: "Seconds from an EngineCluster's creation to its first Ready.",
    buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800], registers: [registry],
  });
  const leaderGauge = new Gauge({ name: "ipp_operator_leader", help: "1 while this replica holds the leader Lease.", registers: [registry] });
  const apiRequests = new Counter({
    name: "ipp_operator_api_requests_total", help: "Kubernetes API writes by verb and HTTP code.",
    labelNames: ["verb", "code"], registers: [registry],
  });
  const events = new Counter({
    name: "ipp_operator_events_total", help: "Kubernetes Events emitted, by type.", labelNames: ["type"], registers: [registry],
  });
  for (const r of RECONCILE_RESULTS) reconcileTotal.inc({ result: r }, 0);
  for (const p of PHASES) byPhase.set({ phase: p }, 0);
  depth.set(0);
  leaderGauge.set(0);

  const phaseOf = new Map<string, string>();
  const readySeen = new Set<string>();
  const recount = () => {
    const counts = new Map<string, number>(PHASES.map((p) => [p, 0]));
    for (const p of phaseOf.values()) counts.set(p, (counts.get(p) ?? 0) + 1);
    for (const [p, n] of counts) byPhase.set({ phase: p }, n);
  };

  return {
    registry,
    reconciled(result, seconds) {
      reconcileTotal.inc({ result });
      reconcileDuration.observe({ result }, seconds);
      if (result === "error" || result === "terminal_error") reconcileErrors.inc();
    },
    queueDepth: (d) => depth.set(d),
    clusterObserved(c) {
      const key = `${c.namespace}/${c.name}`;
      const phase = c.phase ?? "Pending";
      const was = phaseOf.get(key);
      if (was !== undefined && was !== phase) clusterPhase.remove({ cluster_namespace: c.namespace, cluster: c.name, phase: was });
      clusterPhase.set({ cluster_namespace: c.namespace, cluster: c.name, phase }, 1);
      phaseOf.set(key, phase);
      recount();
      for (const state of ["desired", "registered", "alive"] as const) {
        const v = c[state];
        if (v !== undefined) engines.set({ cluster_namespace: c.namespace, cluster: c.name, state }, v);
      }
    },
    clusterReady(uid, seconds) {
      if (readySeen.has(uid)) return;
      readySeen.add(uid);
      timeToReady.observe(Math.max(0, seconds));
    },
    clusterWasReady(uid) { readySeen.add(uid); },
    clusterGone(namespace, name, uid) {
      const was = phaseOf.get(`${namespace}/${name}`);
      if (was !== undefined) clusterPhase.remove({ cluster_namespace: namespace, cluster: name, phase: was });
      phaseOf.delete(`${namespace}/${name}`);
      recount();
      for (const state of ["desired", "registered", "alive"]) engines.remove({ cluster_namespace: namespace, cluster: name, state });
      if (uid) readySeen.delete(uid);
    },
    leader: (b) => leaderGauge.set(b ? 1 : 0),
    apiRequest: (verb, code) => apiRequests.inc({ verb, code }),
    eventEmitted: (type) => events.inc({ type }),
  };
}

// ---------------------------------------------------------------------------------------------
// pbs backend: SSH links to login hosts and the scheduler commands run over them

export type SshConnectionState = "connecting" | "connected" | "backoff" | "closed";
export const SSH_CONNECTION_STATES: SshConnectionState[] = ["connecting", "connected", "backoff", "closed"];

export interface PbsMetrics {
  /** The link's state: ipp_operator_ssh_connection_state{host,state} is 1 for the current state. */
  sshState(host: string, state: SshConnectionState): void;
  sshCommand(host: string, command: string, seconds: number): void;
  commandError(command: string): void;
  /** Jobs of this operator's EngineClusters by scheduler state, for one host. */
  jobs(host: string, byState: Record<string, number>): void;
  hostGone(host: string): void;
}

export function createPbsMetrics(registry: Registry): PbsMetrics {
  const state = new Gauge({
    name: "ipp_operator_ssh_connection_state", help: "SSH link to a login host: 1 for its current state (connecting, connected, backoff, closed).",
    labelNames: ["host", "state"], registers: [registry],
  });
  const duration = new Histogram({
    name: "ipp_operator_ssh_command_duration_seconds", help: "Remote commands over SSH, by login host and command (qsub, qstat, qdel, detect).",
    labelNames: ["host", "command"], buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry],
  });
  const jobs = new Gauge({ name: "ipp_operator_pbs_jobs", help: "Batch jobs of EngineClusters by scheduler state.", labelNames: ["state"], registers: [registry] });
  const errors = new Counter({
    name: "ipp_operator_pbs_command_errors_total", help: "qsub/qstat/qdel calls that failed (transport or exit status).",
    labelNames: ["command"], registers: [registry],
  });
  for (const c of ["qsub", "qstat", "qdel"]) errors.inc({ command: c }, 0);
  const perHost = new Map<string, Record<string, number>>();
  const recount = () => {
    const total: Record<string, number> = {};
    for (const m of perHost.values()) for (const [s, n] of Object.entries(m)) total[s] = (total[s] ?? 0) + n;
    jobs.reset();
    for (const [s, n] of Object.entries(total)) jobs.set({ state: s }, n);
  };
  return {
    sshState(host, s) { for (const x of SSH_CONNECTION_STATES) state.set({ host, state: x }, x === s ? 1 : 0); },
    sshCommand: (host, command, seconds) => duration.observe({ host, command }, seconds),
    commandError: (command) => errors.inc({ command }),
    jobs(host, byState) { perHost.set(host, { ...byState }); recount(); },
    hostGone(host) {
      for (const x of SSH_CONNECTION_STATES) state.remove({ host, state: x });
      perHost.delete(host);
      recount();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// pbs backend, network.mode sshTunnel: remote forwards on login hosts

export interface TunnelMetrics {
  /** Remote forwards bound on a login host (one per controller port per cluster). */
  forwards(host: string, delta: number): void;
  /** Engine connections being piped through those forwards right now. */
  connections(host: string, delta: number): void;
}

export function createTunnelMetrics(registry: Registry): TunnelMetrics {
  const forwards = new Gauge({
    name: "ipp_operator_ssh_tunnels_active", help: "Remote forwards (ssh tcpip-forward) bound on a login host for sshTunnel EngineClusters.",
    labelNames: ["host"], registers: [registry],
  });
  const conns = new Gauge({
    name: "ipp_operator_ssh_tunnel_connections", help: "Engine connections piped through remote forwards to controllers right now.",
    labelNames: ["host"], registers: [registry],
  });
  return {
    forwards: (host, delta) => forwards.inc({ host }, delta),
    connections: (host, delta) => conns.inc({ host }, delta),
  };
}
