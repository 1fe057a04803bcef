/**
 * Pure builders: an EngineCluster (parsed, mpi backend) plus key material → every object it owns.
 * The layout follows the MPI Operator v2: a per-cluster SSH key Secret, a headless Service, worker
 * pods running sshd from the engine image, a hostfile ConfigMap and a launcher Job running mpiexec
 * over it; plus our controller (Deployment + Service), the connection Secret and a NetworkPolicy.
 *
 * Key material is passed in (generated outside, or read back from the existing Secrets) so the
 * output is a deterministic function of the input.
 */
import { createHash } from "node:crypto";
import type { ClientPeer, EngineCluster, EnvVar, LabelSelector, MpiBackend, Resources, Toleration } from "../../../api/engine-cluster.ts";
import type { KubeObject } from "../../../api/kube.ts";
import { renderHostfile, worldShape, type WorldShape } from "./hostfile.ts";
import {
  CLIENT_LABEL, clientLabelKey, CLIENT_PORTS, CONTROLLER_STATE_KEY, CLIENT_PORT_RANGE, CONNECTION_KEYS, CONTROLLER_UID, ENGINE_PORTS, ENGINE_PORT_RANGE, ENGINE_UID,
  HOSTFILE_KEY, HTTP_PORT, KUBE_ROOT_CA, METRICS_PORT, NAMESPACE_NAME_LABEL, OPERATOR_LABEL, OPERATOR_LABEL_VALUE, PATHS, SERVICE_PORTS, SSH_KEYS, SSH_PORT, WORLD_LABEL,
  clusterRef, dns, labels, names,
  ownerReference, selector, type ClusterRef, type Component,
} from "./names.ts";

export interface KeyMaterial {
  /** HMAC-SHA256 key for message signing (ipyparallel's `key`). */
  hmacKey: string;
  /** Private key in a format OpenSSH reads (PEM), used as the user key AND as every worker's host key. */
  sshPrivateKey: string;
  /** The matching public key in authorized_keys format (`ecdsa-sha2-nistp256 AAAA...`). */
  sshPublicKey: string;
  /** The JSON API's bearer token (256 random bits); in the connection Secret, read by the controller from its mounted file. */
  apiToken: string;
  /** CurveZMQ server key pair (Z85, 40 characters each); only with spec.controller.curve. */
  curveSecretKey?: string;
  curvePublicKey?: string;
}

/**
 * Who may reach a controller's metrics port through its NetworkPolicy: pods matching `podSelector`
 * (absent: every pod) in namespaces matching `namespaceSelector` (empty: every namespace). Both are
 * matchLabels maps.
 */
export interface MetricsScrapers {
  namespaceSelector: Record<string, string>;
  podSelector?: Record<string, string>;
}

/**
 * The operator's own pods, admitted to each controller's API port (where it reads the engine
 * list): pods matching `podLabels` in the namespace named `namespace` (both must match).
 */
export interface OperatorPeer {
  namespace: string;
  podLabels: Record<string, string>;
}

export interface BuildConfig {
  /** Controller image when spec.controller.image is not set (the operator's own image). */
  controllerImage: string;
  /** Cluster DNS domain, for the fully qualified names in the connection files and hostfile. */
  clusterDomain: string;
  /** Pods admitted to the controllers' metrics port (default: any pod in any namespace). */
  metricsScrapers: MetricsScrapers;
  /** The operator's namespace and pod labels; absent (an operator outside the cluster): no operator rule. */
  operator?: OperatorPeer;
}

export const DEFAULT_BUILD_CONFIG: BuildConfig = {
  controllerImage: "ghcr.io/ipp-operator/ipp-operator:0.1.0", clusterDomain: "cluster.local", metricsScrapers: { namespaceSelector: {} },
};

export interface MpiObjects {
  world: string;
  shape: WorldShape;
  connectionSecret: KubeObject;
  controllerState: KubeObject;
  sshSecret: KubeObject;
  controllerDeployment: KubeObject;
  controllerService: KubeObject;
  hostfile: KubeObject;
  workersService: KubeObject;
  workers: KubeObject;
  launcher: KubeObject;
  networkPolicy: KubeObject;
}

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");

function meta(ref: ClusterRef, name: string, component: Component, extraLabels: Record<string, string> = {}, annotations?: Record<string, string>) {
  return {
    name,
    namespace: ref.namespace,
    labels: { ...labels(ref.name, component), ...extraLabels },
    ...(annotations !== undefined && Object.keys(annotations).length > 0 ? { annotations } : {}),
    ownerReferences: [ownerReference(ref)],
  };
}

/** Container security context that satisfies the restricted Pod Security Standard. */
export function restrictedContainer(uid: number): Record<string, unknown> {
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}

export function restrictedPod(uid: number): Record<string, unknown> {
  return { runAsNonRoot: true, runAsUser: uid, runAsGroup: uid, fsGroup: uid, seccompProfile: { type: "RuntimeDefault" } };
}

function resources(r: Resources | undefined): Record<string, unknown> {
  if (r === undefined) return {};
  const out: Record<string, unknown> = {};
  if (r.requests !== undefined) out.requests = r.requests;
  if (r.limits !== undefined) out.limits = r.limits;
  return Object.keys(out).length > 0 ? { resources: out } : {};
}

function scheduling(mpi: MpiBackend): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (mpi.nodeSelector !== undefined && Object.keys(mpi.nodeSelector).length > 0) out.nodeSelector = mpi.nodeSelector;
  if (mpi.tolerations !== undefined && mpi.tolerations.length > 0) out.tolerations = mpi.tolerations.map((t: Toleration) => ({ ...t }));
  if (mpi.imagePullSecrets !== undefined && mpi.imagePullSecrets.length > 0) out.imagePullSecrets = mpi.imagePullSecrets.map((name) => ({ name }));
  return out;
}

function envVar(e: EnvVar): Record<string, unknown> {
  return { name: e.name, ...(e.value !== undefined ? { value: e.value } : {}), ...(e.valueFrom !== undefined ? { valueFrom: e.valueFrom } : {}) };
}

export function shortHash(value: unknown, length = 10): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, length);
}

// ---------------------------------------------------------------------------------------------
// connection files (the same keys, in the same order, as ipcontroller writes them)

export interface ConnectionFiles { client: Record<string, unknown>; engine: Record<string, unknown> }

export function connectionFiles(ref: ClusterRef, ec: EngineCluster, material: KeyMaterial, config: BuildConfig): ConnectionFiles {
  const host = dns.controller(ref, config.clusterDomain);
  const curve = ec.spec.controller.curve ? material.curvePublicKey ?? null : null;
  const base = { key: material.hmacKey, curve_serverkey: curve, location: host, pack: "json", unpack: "json", signature_scheme: "hmac-sha256" };
  const client = {
    ssh: "", interface: `tcp://${host}`, registration: ENGINE_PORTS.registration,
    control: CLIENT_PORTS.control, mux: CLIENT_PORTS.mux, task: CLIENT_PORTS.task, task_scheme: ec.spec.controller.taskScheme,
    iopub: CLIENT_PORTS.iopub, notification: CLIENT_PORTS.notification, broadcast: CLIENT_PORTS.broadcast, ...base,
  };
  const engine = {
    ssh: "", interface: `tcp://${host}`, registration: ENGINE_PORTS.registration,
    control: ENGINE_PORTS.control, mux: ENGINE_PORTS.mux, task: ENGINE_PORTS.task, iopub: ENGINE_PORTS.iopub,
    hb_ping: ENGINE_PORTS.hb_ping, hb_pong: ENGINE_PORTS.hb_pong, broadcast: [...ENGINE_PORTS.broadcast], ...base,
  };
  return { client, engine };
}

export function buildConnectionSecret(ref: ClusterRef, ec: EngineCluster, material: KeyMaterial, config: BuildConfig): KubeObject {
  const files = connectionFiles(ref, ec, material, config);
  const data: Record<string, string> = {
    [CONNECTION_KEYS.client]: b64(JSON.stringify(files.client, null, 2) + "\n"),
    [CONNECTION_KEYS.engine]: b64(JSON.stringify(files.engine, null, 2) + "\n"),
    [CONNECTION_KEYS.hmacKey]: b64(material.hmacKey),
    [CONNECTION_KEYS.apiToken]: b64(material.apiToken),
  };
  if (ec.spec.controller.curve && material.curveSecretKey !== undefined && material.curvePublicKey !== undefined) {
    data[CONNECTION_KEYS.curveSecretKey] = b64(material.curveSecretKey);
    data[CONNECTION_KEYS.curvePublicKey] = b64(material.curvePublicKey);
  }
  return { apiVersion: "v1", kind: "Secret", metadata: meta(ref, names.connectionSecret(ref.name), "connection"), type: "Opaque", data };
}

// ---------------------------------------------------------------------------------------------
// SSH: one key pair per cluster, used as the launcher's user key and as every worker's host key,
// so the launcher pins the host key (StrictHostKeyChecking stays on).

export function buildSshSecret(ref: ClusterRef, material: KeyMaterial, config: BuildConfig): KubeObject {
  const pub = material.sshPublicKey.trim();
  const knownHosts = `[${dns.workerPattern(ref, config.clusterDomain)}]:${SSH_PORT} ${pub}\n`;
  return {
    apiVersion: "v1", kind: "Secret", metadata: meta(ref, names.sshSecret(ref.name), "ssh"), type: "kubernetes.io/ssh-auth",
    data: {
      [SSH_KEYS.privateKey]: b64(material.sshPrivateKey.endsWith("\n") ? material.sshPrivateKey : material.sshPrivateKey + "\n"),
      [SSH_KEYS.publicKey]: b64(pub + "\n"),
      [SSH_KEYS.authorizedKeys]: b64(pub + "\n"),
      [SSH_KEYS.knownHosts]: b64(knownHosts),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// controller

/**
 * The engine registrations a controller holds (ids, uuids, the next id): what upstream's engine
 * state file `<profile>/log/engines<cluster id>.json` holds, and what `--restore` takes back.
 */
export interface ControllerEngineState {
  engines: Array<{ id: number; uuid: string }>;
  nextId: number;
}

export const EMPTY_ENGINE_STATE: ControllerEngineState = { engines: [], nextId: 0 };

/** The state file's text: upstream's shape, ids in order, so equal states are equal text (an unchanged ConfigMap is not re-applied). */
export function formatControllerState(s: ControllerEngineState): string {
  const engines: Record<string, string> = {};
  for (const e of [...s.engines].sort((a, b) => a.id - b.id)) engines[String(e.id)] = e.uuid;
  const nextId = s.engines.reduce((n, e) => Math.max(n, e.id + 1), s.nextId);
  return JSON.stringify({ engines, next_id: nextId }) + "\n";
}

/** The state a ConfigMap holds; undefined when it holds none or it cannot be read. */
export function parseControllerState(cm: KubeObject | undefined): ControllerEngineState | undefined {
  const text = (cm?.data as Record<string, unknown> | undefined)?.[CONTROLLER_STATE_KEY];
  if (typeof text !== "string") return undefined;
  try {
    const j = JSON.parse(text) as { engines?: unknown; next_id?: unknown };
    if (typeof j.engines !== "object" || j.engines === null || Array.isArray(j.engines)) return undefined;
    const engines = Object.entries(j.engines as Record<string, unknown>)
      .filter((kv): kv is [string, string] => /^\d+$/.test(kv[0]) && typeof kv[1] === "string" && kv[1] !== "")
      .map(([id, uuid]) => ({ id: Number(id), uuid }));
    return { engines, nextId: typeof j.next_id === "number" && Number.isInteger(j.next_id) ? j.next_id : 0 };
  } catch {
    return undefined;
  }
}

/**
 * The controller-state ConfigMap: the operator's copy of the controller's engine registrations,
 * updated from the controller's engine list when it changes. Mounted read only into the controller
 * pod; a controller starting on a new run volume (a replaced pod) restores from it
 * (`--restore-fallback`), so the running engines re-attach with their ids. Engine uuids are not
 * secret (they only name ZeroMQ peers; every message still needs the HMAC key).
 */
export function buildControllerState(ref: ClusterRef, state: ControllerEngineState): KubeObject {
  return {
    apiVersion: "v1", kind: "ConfigMap", metadata: meta(ref, names.controllerState(ref.name), "controller-state"),
    data: { [CONTROLLER_STATE_KEY]: formatControllerState(state) },
  };
}

/** Where the controller keeps its profile: the stateVolumeClaim's sub-directory for this cluster, else the run volume. */
export function controllerProfileDir(ref: ClusterRef, ec: EngineCluster): string {
  return ec.spec.controller.stateVolumeClaim !== undefined
    ? `${PATHS.controllerStateVolumeDir}/${ref.name}/profile`
    : `${PATHS.controllerRunDir}/profile`;
}

/** How long a stopping controller pod keeps its address (under the default 30 s grace period). */
export const CONTROLLER_SHUTDOWN_DELAY_SECONDS = 15;

/** The controller's command line (ipcontroller-compatible flags of `ipp-operator controller`). */
export function controllerArgs(ref: ClusterRef, ec: EngineCluster, config: BuildConfig): string[] {
  const c = ec.spec.controller;
  return [
    "controller",
    "--ip=0.0.0.0",
    `--location=${dns.controller(ref, config.clusterDomain)}`,
    `--engine-ports=${ENGINE_PORT_RANGE}`,
    `--client-ports=${CLIENT_PORT_RANGE}`,
    `--keyfile=${PATHS.connectionDir}/${CONNECTION_KEYS.hmacKey}`,
    `--ping=${c.heartbeatPeriodMs}`,
    `--scheme=${c.taskScheme}`,
    `--http-port=${HTTP_PORT}`,
    "--http-host=0.0.0.0",
    // the token's file, never the token: args show in `kubectl describe` and process listings
    `--api-token-file=${PATHS.connectionDir}/${CONNECTION_KEYS.apiToken}`,
    `--metrics-port=${METRICS_PORT}`,
    "--metrics-host=0.0.0.0",
    `--connection-dir=${PATHS.controllerRunDir}`,
    // profile (engine state file, task database) in the run volume, or on the claim when there is
    // one, and --restore: a restarted controller container takes back the running engines with their
    // ids (same ports and key anyway); a controller in a new pod restores from the claim's state
    // file, or without a claim (an empty run volume) from the operator's copy
    `--profile-dir=${controllerProfileDir(ref, ec)}`,
    "--restore",
    `--restore-fallback=${PATHS.controllerStateDir}/${CONTROLLER_STATE_KEY}`,
    // a deleted pod's address must keep refusing connections until kube-proxy has stopped routing
    // the Service to it: engines reconnecting meanwhile would otherwise send SYNs to an address
    // that no longer exists and wait out TCP's retries (~2 min, measured on the test cluster)
    `--shutdown-delay=${CONTROLLER_SHUTDOWN_DELAY_SECONDS}`,
    ...(c.taskRecords === "sqlite" ? ["--sqlitedb"] : []),
    ...(c.curve ? ["--enable-curve"] : []),
    // Kubernetes identities too: a SelfSubjectAccessReview with the caller's own token, so the
    // controller pod keeps running without a ServiceAccount token or RBAC of its own
    ...(c.apiAuth === "kubernetes" ? [
      "--api-auth=kubernetes", `--api-auth-cluster=${ref.namespace}/${ref.name}`, "--api-auth-review=self",
      `--api-auth-ca=${PATHS.kubeCaDir}/${KUBE_ROOT_CA.key}`,
    ] : []),
    ...(c.maxMessageBytes !== undefined ? [`--max-message-size=${c.maxMessageBytes}`] : []),
  ];
}

export function buildControllerDeployment(ref: ClusterRef, ec: EngineCluster, config: BuildConfig): KubeObject {
  const c = ec.spec.controller;
  const sel = selector(ref.name, "controller");
  const secret = names.connectionSecret(ref.name);
  const curveEnv = c.curve ? [
    { name: "IPP_CURVE_SECRETKEY", valueFrom: { secretKeyRef: { name: secret, key: CONNECTION_KEYS.curveSecretKey } } },
    { name: "IPP_CURVE_PUBLICKEY", valueFrom: { secretKeyRef: { name: secret, key: CONNECTION_KEYS.curvePublicKey } } },
  ] : [];
  return {
    apiVersion: "apps/v1", kind: "Deployment", metadata: meta(ref, names.controller(ref.name), "controller"),
    spec: {
      replicas: 1,
      strategy: { type: "Recreate" }, // one controller owns the ports and the engines' registrations
      selector: { matchLabels: sel },
      template: {
        metadata: { labels: labels(ref.name, "controller") },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: restrictedPod(CONTROLLER_UID),
          containers: [{
            name: "controller",
            image: c.image ?? config.controllerImage,
            imagePullPolicy: c.imagePullPolicy,
            args: controllerArgs(ref, ec, config),
            // uid 65532 has no home in the image (HOME=/) and the root filesystem is read-only: the
            // controller's IPython profile goes to the writable run volume ("mkdir '/.ipython'"
            // crash-looped the controller on a real cluster)
            env: [{ name: "HOME", value: PATHS.controllerRunDir }, ...curveEnv],
            ports: SERVICE_PORTS.map((p) => ({ name: p.name, containerPort: p.port, protocol: "TCP" })),
            // a stopping controller closes its HTTP port first: unready within ~4 s, so the Service
            // stops sending connections here well inside the shutdown delay (see controllerArgs)
            readinessProbe: { httpGet: { path: "/readyz", port: "metrics" }, periodSeconds: 2, failureThreshold: 2 },
            livenessProbe: { httpGet: { path: "/healthz", port: "metrics" }, periodSeconds: 10, failureThreshold: 6 },
            ...resources(c.resources),
            securityContext: { ...restrictedContainer(CONTROLLER_UID), readOnlyRootFilesystem: true },
            volumeMounts: [
              { name: "connection", mountPath: PATHS.connectionDir, readOnly: true },
              { name: "run", mountPath: PATHS.controllerRunDir },
              { name: "state", mountPath: PATHS.controllerStateDir, readOnly: true },
              ...(c.stateVolumeClaim !== undefined ? [{ name: "state-volume", mountPath: PATHS.controllerStateVolumeDir }] : []),
              ...(c.apiAuth === "kubernetes" ? [{ name: "kube-ca", mountPath: PATHS.kubeCaDir, readOnly: true }] : []),
            ],
          }],
          volumes: [
            { name: "connection", secret: { secretName: secret, defaultMode: 0o440 } },
            { name: "run", emptyDir: {} },
            // optional: a controller whose ConfigMap is not there (yet) starts without engines to restore
            { name: "state", configMap: { name: names.controllerState(ref.name), optional: true } },
            ...(c.stateVolumeClaim !== undefined ? [{ name: "state-volume", persistentVolumeClaim: { claimName: c.stateVolumeClaim } }] : []),
            ...(c.apiAuth === "kubernetes" ? [{ name: "kube-ca", configMap: { name: KUBE_ROOT_CA.configMap, items: [{ key: KUBE_ROOT_CA.key, path: KUBE_ROOT_CA.key }] } }] : []),
          ],
        },
      },
    },
  };
}

/** The Service: the ZeroMQ ports and metrics; the JSON API only with spec.controller.service.exposeApi. */
export function buildControllerService(ref: ClusterRef, ec: EngineCluster): KubeObject {
  const svc = ec.spec.controller.service;
  const ports = SERVICE_PORTS.filter((p) => p.side !== "http" || svc.exposeApi);
  return {
    apiVersion: "v1", kind: "Service",
    metadata: meta(ref, names.controllerService(ref.name), "controller", {}, svc.annotations),
    spec: {
      type: svc.type,
      selector: selector(ref.name, "controller"),
      ports: ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.name, protocol: "TCP" })),
    },
  };
}

/**
 * Where a cluster's engines connect from:
 * - `pods`: this cluster's launcher and worker pods (mpi);
 * - `anywhere`: outside the cluster (pbs `direct`: compute nodes, whose addresses the operator
 *   does not know), so the engine ports admit any source — they still need the HMAC key;
 * - `operator`: the operator's pods (pbs `sshTunnel`: the operator forwards the login host's
 *   ports to the controller), or any source when the operator runs outside the cluster.
 */
export type EngineSources = "pods" | "anywhere" | "operator";

/**
 * Ingress to the controller pod, rule by rule:
 * - engines (see EngineSources): the engine-side ZeroMQ ports only;
 * - clients (spec.controller.clients; by default pods in the namespace labelled
 *   `ipp.dev/client-<cluster>` or `ipp.dev/client: <cluster>`): the client-side ZeroMQ ports and
 *   the API;
 * - the operator (its pods' labels in its own namespace, both required; config.operator): the
 *   API, where it reads the engine list;
 * - metrics scrapers (the operator's configuration; default any pod): the metrics port only
 *   (/metrics, /healthz, /readyz). The API, which executes code on the engines, is never opened
 *   to them.
 */
export function buildNetworkPolicy(ref: ClusterRef, config: BuildConfig = DEFAULT_BUILD_CONFIG, engines: EngineSources = "pods", clients?: ClientPeer[]): KubeObject {
  const port = (p: number) => ({ protocol: "TCP", port: p });
  const api = port(HTTP_PORT);
  const enginePorts = SERVICE_PORTS.filter((p) => p.side === "engine" || p.side === "both").map((p) => port(p.port));
  const clientPorts = SERVICE_PORTS.filter((p) => p.side === "client" || p.side === "both").map((p) => port(p.port));
  const enginePods = (component: "worker" | "launcher") => ({ podSelector: { matchLabels: selector(ref.name, component) } });
  const scrapers = config.metricsScrapers;
  const scraperPeer = {
    namespaceSelector: Object.keys(scrapers.namespaceSelector).length > 0 ? { matchLabels: { ...scrapers.namespaceSelector } } : {},
    ...(scrapers.podSelector !== undefined && Object.keys(scrapers.podSelector).length > 0 ? { podSelector: { matchLabels: { ...scrapers.podSelector } } } : {}),
  };
  const op = config.operator;
  const operatorPeer = op === undefined ? undefined : {
    namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: op.namespace } },
    podSelector: { matchLabels: Object.keys(op.podLabels).length > 0 ? { ...op.podLabels } : { [OPERATOR_LABEL]: OPERATOR_LABEL_VALUE } },
  };
  const engineRule = engines === "pods" ? { from: [enginePods("launcher"), enginePods("worker")], ports: enginePorts }
    : engines === "operator" && operatorPeer !== undefined ? { from: [operatorPeer], ports: enginePorts }
      : { ports: enginePorts }; // no `from`: any source
  return {
    apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: meta(ref, names.networkPolicy(ref.name), "network-policy"),
    spec: {
      podSelector: { matchLabels: selector(ref.name, "controller") },
      policyTypes: ["Ingress"],
      ingress: [
        engineRule,
        { from: clientPeers(ref, clients), ports: [...clientPorts, api] },
        ...(operatorPeer !== undefined ? [{ from: [operatorPeer], ports: [api] }] : []),
        { from: [scraperPeer], ports: [port(METRICS_PORT)] },
      ],
    },
  };
}

/** The NetworkPolicy peers admitted as clients: spec.controller.clients as given, or the default labels. */
export function clientPeers(ref: ClusterRef, clients: ClientPeer[] | undefined): Record<string, unknown>[] {
  if (clients === undefined) {
    return [
      { podSelector: { matchExpressions: [{ key: clientLabelKey(ref.name), operator: "Exists" }] } },
      { podSelector: { matchLabels: { [CLIENT_LABEL]: ref.name } } },
    ];
  }
  const selectorOf = (s: LabelSelector) => ({
    ...(s.matchLabels !== undefined ? { matchLabels: { ...s.matchLabels } } : {}),
    ...(s.matchExpressions !== undefined ? { matchExpressions: s.matchExpressions.map((e) => ({ key: e.key, operator: e.operator, ...(e.values !== undefined ? { values: [...e.values] } : {}) })) } : {}),
  });
  return clients.map((c) => ({
    ...(c.namespaceSelector !== undefined ? { namespaceSelector: selectorOf(c.namespaceSelector) } : {}),
    ...(c.podSelector !== undefined ? { podSelector: selectorOf(c.podSelector) } : {}),
  }));
}

// ---------------------------------------------------------------------------------------------
// MPI world: hostfile, headless Service, workers, launcher

export function workerHosts(ref: ClusterRef, shape: WorldShape, config: BuildConfig): string[] {
  return Array.from({ length: shape.workers }, (_, i) => dns.worker(ref, i, config.clusterDomain));
}

export function buildHostfile(ref: ClusterRef, shape: WorldShape, config: BuildConfig): KubeObject {
  return {
    apiVersion: "v1", kind: "ConfigMap", metadata: meta(ref, names.hostfile(ref.name), "hostfile"),
    data: { [HOSTFILE_KEY]: renderHostfile(workerHosts(ref, shape, config), shape.slotsPerWorker, shape.implementation) },
  };
}

export function buildWorkersService(ref: ClusterRef): KubeObject {
  return {
    apiVersion: "v1", kind: "Service", metadata: meta(ref, names.workersService(ref.name), "workers"),
    spec: {
      clusterIP: "None",
      publishNotReadyAddresses: true, // mpiexec resolves workers by name before they are Ready
      selector: selector(ref.name, "worker"),
      ports: [{ name: "ssh", port: SSH_PORT, targetPort: "ssh", protocol: "TCP" }],
    },
  };
}

const sshVolume = (ref: ClusterRef) => ({ name: "ssh", secret: { secretName: names.sshSecret(ref.name), defaultMode: 0o440 } });

export function buildWorkers(ref: ClusterRef, ec: EngineCluster, mpi: MpiBackend, shape: WorldShape): KubeObject {
  return {
    apiVersion: "apps/v1", kind: "StatefulSet", metadata: meta(ref, names.workers(ref.name), "worker"),
    spec: {
      replicas: shape.workers,
      serviceName: names.workersService(ref.name),
      podManagementPolicy: "Parallel",
      selector: { matchLabels: selector(ref.name, "worker") },
      template: {
        metadata: { labels: labels(ref.name, "worker") },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: restrictedPod(ENGINE_UID),
          ...scheduling(mpi),
          containers: [{
            name: "worker",
            image: mpi.image,
            imagePullPolicy: mpi.imagePullPolicy,
            command: [PATHS.workerEntrypoint],
            env: [
              { name: "IPP_SSH_DIR", value: PATHS.sshDir },
              { name: "IPP_SSH_PORT", value: String(SSH_PORT) },
            ],
            ports: [{ name: "ssh", containerPort: SSH_PORT, protocol: "TCP" }],
            readinessProbe: { tcpSocket: { port: "ssh" }, periodSeconds: 5 },
            ...resources(mpi.resources),
            securityContext: restrictedContainer(ENGINE_UID),
            volumeMounts: [{ name: "ssh", mountPath: PATHS.sshDir, readOnly: true }],
          }],
          volumes: [sshVolume(ref)],
        },
      },
    },
  };
}

/** The environment of the launcher container (what entrypoint-launcher.sh reads). */
export function launcherEnv(ref: ClusterRef, mpi: MpiBackend, shape: WorldShape): Record<string, unknown>[] {
  const userEnv = (mpi.env ?? []).map(envVar);
  return [
    { name: "IPP_CONNECTION_INFO", valueFrom: { secretKeyRef: { name: names.connectionSecret(ref.name), key: CONNECTION_KEYS.engine } } },
    { name: "IPP_ENGINES", value: String(shape.engines) },
    { name: "IPP_MPI", value: shape.implementation },
    { name: "IPP_HOSTFILE", value: `${PATHS.hostfileDir}/${HOSTFILE_KEY}` },
    { name: "IPP_SSH_DIR", value: PATHS.sshDir },
    { name: "IPP_SSH_PORT", value: String(SSH_PORT) },
    { name: "IPP_ENGINE_ARGS", value: (mpi.engineArgs ?? []).join(" ") },
    { name: "IPP_WAIT_TIMEOUT", value: String(mpi.workersReadyTimeoutSeconds) },
    // user variables are forwarded to every rank (mpiexec -x NAME / -genvlist)
    { name: "IPP_FORWARD_ENV", value: userEnv.map((e) => e.name as string).join(",") },
    ...userEnv,
  ];
}

function launcherPodTemplate(ref: ClusterRef, mpi: MpiBackend, shape: WorldShape): Record<string, unknown> {
  return {
    metadata: { labels: labels(ref.name, "launcher") },
    spec: {
      restartPolicy: "OnFailure",
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: restrictedPod(ENGINE_UID),
      ...scheduling(mpi),
      containers: [{
        name: "launcher",
        image: mpi.image,
        imagePullPolicy: mpi.imagePullPolicy,
        command: [PATHS.launcherEntrypoint],
        env: launcherEnv(ref, mpi, shape),
        // why mpiexec or the wait for workers failed reaches the pod's status (the planner reports it)
        terminationMessagePolicy: "FallbackToLogsOnError",
        ...resources(mpi.launcherResources),
        securityContext: restrictedContainer(ENGINE_UID),
        volumeMounts: [
          { name: "ssh", mountPath: PATHS.sshDir, readOnly: true },
          { name: "hostfile", mountPath: PATHS.hostfileDir, readOnly: true },
        ],
      }],
      volumes: [
        sshVolume(ref),
        { name: "hostfile", configMap: { name: names.hostfile(ref.name) } },
      ],
    },
  };
}

/**
 * The world generation: a hash of everything that fixes MPI_COMM_WORLD and the launcher pod (a
 * Job's pod template is immutable): engines, slots, workers, image, implementation, plus the
 * launcher's environment, arguments and scheduling. It names the launcher Job, so a change
 * creates a new Job (and the planner deletes the old one): the world is relaunched. `epoch` (the
 * status' worldEpoch) relaunches the same world on purpose, after the controller was replaced.
 */
export function worldGeneration(ref: ClusterRef, mpi: MpiBackend, shape: WorldShape, hostfile: string, epoch = 0): string {
  return shortHash({ shape, image: mpi.image, hostfile, template: launcherPodTemplate(ref, mpi, shape), ...(epoch > 0 ? { epoch } : {}) }, 10);
}

export function buildLauncher(ref: ClusterRef, mpi: MpiBackend, shape: WorldShape, world: string): KubeObject {
  const template = launcherPodTemplate(ref, mpi, shape) as { metadata: { labels: Record<string, string> } };
  template.metadata.labels = { ...template.metadata.labels, [WORLD_LABEL]: world };
  return {
    apiVersion: "batch/v1", kind: "Job", metadata: meta(ref, names.launcher(ref.name, world), "launcher", { [WORLD_LABEL]: world }),
    spec: {
      backoffLimit: 6,
      template,
    },
  };
}

/** Every object an mpi EngineCluster owns. `ec.spec.backend.mpi` must be set. */
export function buildMpiObjects(ec: EngineCluster, material: KeyMaterial, config: BuildConfig = DEFAULT_BUILD_CONFIG, epoch = 0, state: ControllerEngineState = EMPTY_ENGINE_STATE): MpiObjects {
  const mpi = ec.spec.backend.mpi;
  if (mpi === undefined) throw new Error("buildMpiObjects: spec.backend.mpi is not set");
  const ref = clusterRef(ec);
  const shape = worldShape(ec.spec.engines, mpi);
  const hostfile = buildHostfile(ref, shape, config);
  const world = worldGeneration(ref, mpi, shape, (hostfile.data as Record<string, string>)[HOSTFILE_KEY]!, epoch);
  return {
    world,
    shape,
    connectionSecret: buildConnectionSecret(ref, ec, material, config),
    controllerState: buildControllerState(ref, state),
    sshSecret: buildSshSecret(ref, material, config),
    controllerDeployment: buildControllerDeployment(ref, ec, config),
    controllerService: buildControllerService(ref, ec),
    hostfile,
    workersService: buildWorkersService(ref),
    workers: buildWorkers(ref, ec, mpi, shape),
    launcher: buildLauncher(ref, mpi, shape, world),
    networkPolicy: buildNetworkPolicy(ref, config, "pods", ec.spec.controller.clients),
  };
}

/** The objects in apply order: Secrets and ConfigMap first, then Services, then workloads. */
export function applyOrder(o: MpiObjects): KubeObject[] {
  return [o.connectionSecret, o.sshSecret, o.hostfile, o.controllerState, o.controllerService, o.workersService, o.networkPolicy, o.controllerDeployment, o.workers, o.launcher];
}
