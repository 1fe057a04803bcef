/**
 * Every name, label, selector, port and path of the objects an EngineCluster owns (mpi backend), in
 * one module. Builders and the planner use these functions only; nothing else spells a child name.
 */
import type { EngineCluster } from "../../../api/engine-cluster.ts";
import { API_VERSION, KIND } from "../../../api/engine-cluster.ts";
import type { OwnerReference } from "../../../api/kube.ts";

export const CLUSTER_LABEL = "ipp.dev/cluster";
export const WORLD_LABEL = "ipp.dev/world";
/**
 * Who may reach the controller's client ports by default (NetworkPolicy): pods in the cluster's
 * namespace with the label key `ipp.dev/client-<cluster>` (any value), or `ipp.dev/client: <cluster>`.
 * A label key per cluster lets one notebook pod be a client of several clusters (a pod has one
 * value per key); the single-valued `ipp.dev/client` stays for pods labelled before it.
 */
export const CLIENT_LABEL = "ipp.dev/client";
export const clientLabelKey = (c: string): string => `${CLIENT_LABEL}-${c}`;
export const COMPONENT_LABEL = "app.kubernetes.io/component";
/**
 * The operator's pods carry `ipp.dev/operator: "true"` (the chart sets it whatever the release is
 * called). The controllers' NetworkPolicies admit the operator to the API port by its pod labels
 * (default this one) AND its namespace's name, so a tenant's pod carrying the label is not let in.
 */
export const OPERATOR_LABEL = "ipp.dev/operator";
export const OPERATOR_LABEL_VALUE = "true";
export const MANAGED_BY = "ipp-operator";

export type Component = "controller" | "controller-state" | "connection" | "ssh" | "hostfile" | "workers" | "worker" | "launcher" | "network-policy";

/** The label the API server sets on every namespace (Kubernetes ≥ 1.21): its name. */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

export interface ClusterRef { name: string; namespace: string; uid: string }

export function clusterRef(ec: EngineCluster): ClusterRef {
  return { name: ec.metadata.name, namespace: ec.metadata.namespace ?? "default", uid: ec.metadata.uid ?? "" };
}

export const names = {
  controller: (c: string) => `${c}-controller`,
  controllerService: (c: string) => `${c}-controller`,
  connectionSecret: (c: string) => `${c}-connection`,
  sshSecret: (c: string) => `${c}-ssh`,
  hostfile: (c: string) => `${c}-hostfile`,
  workersService: (c: string) => `${c}-workers`,
  workers: (c: string) => `${c}-worker`,
  workerPod: (c: string, i: number) => `${c}-worker-${i}`,
  launcher: (c: string, world: string) => `${c}-launcher-${world}`,
  networkPolicy: (c: string) => `${c}-controller`,
  /** The engine registrations the operator keeps for a replaced controller pod (a ConfigMap). */
  controllerState: (c: string) => `${c}-controller-state`,
};

/** Labels every owned object carries. */
export function labels(c: string, component: Component): Record<string, string> {
  return {
    "app.kubernetes.io/name": "ipyparallel",
    "app.kubernetes.io/instance": c,
    [COMPONENT_LABEL]: component,
    "app.kubernetes.io/part-of": "ipp-operator",
    "app.kubernetes.io/managed-by": MANAGED_BY,
    [CLUSTER_LABEL]: c,
  };
}

/** The label selector of a component's pods (stable: never includes values that change). */
export function selector(c: string, component: "controller" | "worker" | "launcher"): Record<string, string> {
  return { [CLUSTER_LABEL]: c, [COMPONENT_LABEL]: component };
}

/** Every object of a cluster, for listing owned objects: `ipp.dev/cluster=<name>`. */
export const clusterSelector = (c: string): string => `${CLUSTER_LABEL}=${c}`;

export function ownerReference(ref: ClusterRef): OwnerReference {
  return { apiVersion: API_VERSION, kind: KIND, name: ref.name, uid: ref.uid, controller: true, blockOwnerDeletion: true };
}

/** In-cluster DNS names. */
export const dns = {
  controller: (ref: ClusterRef, domain: string) => `${names.controllerService(ref.name)}.${ref.namespace}.svc.${domain}`,
  worker: (ref: ClusterRef, i: number, domain: string) => `${names.workerPod(ref.name, i)}.${names.workersService(ref.name)}.${ref.namespace}.svc.${domain}`,
  /** known_hosts pattern matching every worker host name. */
  workerPattern: (ref: ClusterRef, domain: string) => `*.${names.workersService(ref.name)}.${ref.namespace}.svc.${domain}`,
};

/**
 * The controller's ZeroMQ ports, fixed so the Service can name them. They follow ipcontroller's
 * pool order: with `--engine-ports=10101-10109 --client-ports=10110-10115` the controller binds
 * registration, engine control, mux, task, iopub, hb_ping, hb_pong, two broadcast leaves, then
 * client control, mux, task, iopub, notification, broadcast — exactly these numbers.
 */
export const ENGINE_PORTS = {
  registration: 10101, control: 10102, mux: 10103, task: 10104, iopub: 10105, hb_ping: 10106, hb_pong: 10107,
  broadcast: [10108, 10109] as const,
};
export const CLIENT_PORTS = { control: 10110, mux: 10111, task: 10112, iopub: 10113, notification: 10114, broadcast: 10115 };
export const ENGINE_PORT_RANGE = "10101-10109";
export const CLIENT_PORT_RANGE = "10110-10115";
/**
 * The controller's JSON API (executes code on the engines; every request needs the cluster's API
 * token): clients and the operator only, and on the Service only with spec.controller.service.exposeApi.
 */
export const HTTP_PORT = 8080;
/** The controller's /metrics, /healthz and /readyz: probes and metrics scrapers. */
export const METRICS_PORT = 8081;
export const SSH_PORT = 2222;

/** Service port names (≤ 15 characters, DNS-1035). */
export const SERVICE_PORTS: { name: string; port: number; side: "engine" | "client" | "both" | "http" | "metrics" }[] = [
  { name: "registration", port: ENGINE_PORTS.registration, side: "both" },
  { name: "eng-control", port: ENGINE_PORTS.control, side: "engine" },
  { name: "eng-mux", port: ENGINE_PORTS.mux, side: "engine" },
  { name: "eng-task", port: ENGINE_PORTS.task, side: "engine" },
  { name: "eng-iopub", port: ENGINE_PORTS.iopub, side: "engine" },
  { name: "hb-ping", port: ENGINE_PORTS.hb_ping, side: "engine" },
  { name: "hb-pong", port: ENGINE_PORTS.hb_pong, side: "engine" },
  { name: "eng-bcast-0", port: ENGINE_PORTS.broadcast[0], side: "engine" },
  { name: "eng-bcast-1", port: ENGINE_PORTS.broadcast[1], side: "engine" },
  { name: "cli-control", port: CLIENT_PORTS.control, side: "client" },
  { name: "cli-mux", port: CLIENT_PORTS.mux, side: "client" },
  { name: "cli-task", port: CLIENT_PORTS.task, side: "client" },
  { name: "cli-iopub", port: CLIENT_PORTS.iopub, side: "client" },
  { name: "notification", port: CLIENT_PORTS.notification, side: "client" },
  { name: "cli-bcast", port: CLIENT_PORTS.broadcast, side: "client" },
  { name: "http", port: HTTP_PORT, side: "http" },
  { name: "metrics", port: METRICS_PORT, side: "metrics" },
];

/** Keys of the connection Secret. */
export const CONNECTION_KEYS = {
  client: "ipcontroller-client.json",
  engine: "ipcontroller-engine.json",
  hmacKey: "hmac-key",
  /** the JSON API's bearer token (256 random bits, base64url); generated once, never rotated */
  apiToken: "api-token",
  curveSecretKey: "curve-secretkey",
  curvePublicKey: "curve-publickey",
};
/** Keys of the SSH Secret (type kubernetes.io/ssh-auth). */
export const SSH_KEYS = { privateKey: "ssh-privatekey", publicKey: "ssh-publickey", authorizedKeys: "authorized_keys", knownHosts: "known_hosts" };
export const HOSTFILE_KEY = "hostfile";
/** Key of the controller-state ConfigMap: an engine state file as upstream's hub writes it. */
export const CONTROLLER_STATE_KEY = "engines.json";
/** The ConfigMap every namespace holds with the API server's CA (Kubernetes ≥ 1.20), and its key. */
export const KUBE_ROOT_CA = { configMap: "kube-root-ca.crt", key: "ca.crt" };

/** Paths inside pods. */
export const PATHS = {
  connectionDir: "/etc/ipp/connection",
  sshDir: "/etc/ipp/ssh",
  hostfileDir: "/etc/ipp/hostfile",
  controllerRunDir: "/var/run/ipp",
  /** the controller's stateVolumeClaim, when it has one: <dir>/<cluster>/profile holds its state */
  controllerStateVolumeDir: "/var/lib/ipp-controller",
  /** the API server's CA (the namespace's kube-root-ca.crt ConfigMap), for spec.controller.apiAuth kubernetes */
  kubeCaDir: "/etc/ipp/kube-ca",
  /** the controller-state ConfigMap (read only): the state a controller in a new pod restores from */
  controllerStateDir: "/etc/ipp/controller-state",
  workerEntrypoint: "/opt/ipp/entrypoint-worker.sh",
  launcherEntrypoint: "/opt/ipp/entrypoint-launcher.sh",
};

/** The uid/gid of the non-root users baked into native/engine and native/controller images. */
export const ENGINE_UID = 1000;
export const CONTROLLER_UID = 65532;
