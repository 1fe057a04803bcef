/**
 * The EngineCluster API (ipp.dev/v1alpha1): the single source of truth. The CRD in crds/ is
 * generated from these schemas (src/crd/), the operator parses objects with them (./parse.ts), and
 * the TypeScript types are inferred from them. Every default and every validation is written here
 * so that it shows up in the CRD; rules a schema can't express are CEL rules (./validation.ts),
 * mirrored by a JavaScript check.
 */
import { z } from "zod";
import {
  DNS_SUBDOMAIN, ENV_NAME, HOSTNAME, IMAGE, QUALIFIED_NAME, SELECT, SHELL_LINE, SHELL_WORD, USERNAME, WALLTIME, re,
} from "./patterns.ts";
import { withRules, type CrossFieldRule } from "./validation.ts";

export const GROUP = "ipp.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = "EngineCluster";
export const LIST_KIND = "EngineClusterList";
export const PLURAL = "engineclusters";
export const SINGULAR = "enginecluster";
export const SHORT_NAMES = ["ec"];
export const CATEGORIES = ["ipp"];

/** Largest engine count accepted (one MPI world); a bound keeps CEL cost estimates finite too. */
export const MAX_ENGINES = 4096;

const SHELL_SAFE = "must not contain shell metacharacters or spaces";
const LINE_SAFE = "must be words separated by single spaces, without shell metacharacters (; & | $ ` < > ( ) quotes, globs)";

const str = (max: number) => z.string().min(1).max(max);
const matching = (pattern: string, max: number, why: string) => str(max).regex(re(pattern), { error: why });

// ---------------------------------------------------------------------------------------------
// Kubernetes building blocks (subsets of core/v1 types, enough for our pods)

/** A resource quantity: an integer or a string such as "500m" or "4Gi" (int-or-string in the CRD). */
export const QUANTITY = "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$";
export const Quantity = z.union([z.int().min(0), z.string().regex(re(QUANTITY), { error: "must be a Kubernetes quantity, e.g. 500m or 4Gi" })])
  .meta({ description: "A Kubernetes resource quantity (e.g. 2, 500m, 4Gi)." });

export const Resources = z.object({
  requests: z.record(z.string().regex(re(QUALIFIED_NAME)), Quantity).optional().meta({ description: "Minimum resources (cpu, memory, ...)." }),
  limits: z.record(z.string().regex(re(QUALIFIED_NAME)), Quantity).optional().meta({ description: "Maximum resources (cpu, memory, ...)." }),
}).meta({ description: "Compute resources of a container, as in core/v1 ResourceRequirements." });

const KeyRef = z.object({ name: matching(DNS_SUBDOMAIN, 253, "must be a DNS subdomain name"), key: str(253), optional: z.boolean().optional() });

export const EnvVar = z.object({
  name: matching(ENV_NAME, 256, "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
  value: z.string().max(32768).optional(),
  valueFrom: z.object({
    secretKeyRef: KeyRef.optional(),
    configMapKeyRef: KeyRef.optional(),
    fieldRef: z.object({ fieldPath: str(256) }).optional(),
  }).optional(),
}).meta({ description: "An environment variable: a value, or a reference to a Secret/ConfigMap key or a pod field." });

export const Toleration = z.object({
  key: z.string().max(317).optional(),
  operator: z.enum(["Exists", "Equal"]).optional(),
  value: z.string().max(63).optional(),
  effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
  tolerationSeconds: z.int().optional(),
}).meta({ description: "A core/v1 Toleration." });

const Labels = z.record(z.string().regex(re(QUALIFIED_NAME)).max(317), z.string().max(63));
const Annotations = z.record(z.string().regex(re(QUALIFIED_NAME)).max(317), z.string().max(65536));
const PullPolicy = z.enum(["Always", "IfNotPresent", "Never"]);

// ---------------------------------------------------------------------------------------------
// spec.backend.mpi: Kubernetes pods (launcher Job + worker StatefulSet running sshd)

export const MpiBackend = z.object({
  image: matching(IMAGE, 512, "must be a container image reference").meta({ description: "Engine image: Open MPI or MPICH, mpi4py, ipyparallel, sshd and the entrypoints from native/engine." }),
  imagePullPolicy: PullPolicy.default("IfNotPresent"),
  imagePullSecrets: z.array(matching(DNS_SUBDOMAIN, 253, "must be a Secret name")).max(16).optional().meta({ description: "Names of Secrets used to pull the engine image." }),
  slotsPerWorker: z.int().min(1).max(1024).default(1).meta({ description: "MPI slots (engines) per worker pod." }),
  workers: z.int().min(1).max(MAX_ENGINES).optional().meta({ description: "Worker pods; default ceil(engines / slotsPerWorker). workers × slotsPerWorker must be at least engines." }),
  implementation: z.enum(["openmpi", "mpich"]).default("openmpi").meta({ description: "MPI implementation in the image; selects the hostfile format (`host slots=N` or `host:N`) and mpiexec flags." }),
  resources: Resources.optional().meta({ description: "Resources of each worker pod's container." }),
  launcherResources: Resources.optional().meta({ description: "Resources of the launcher pod's container." }),
  env: z.array(EnvVar).max(128).optional().meta({ description: "Extra environment for the engines (exported to every rank by mpiexec).", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] }),
  nodeSelector: Labels.optional().meta({ description: "Node selector for worker and launcher pods." }),
  tolerations: z.array(Toleration).max(64).optional().meta({ description: "Tolerations for worker and launcher pods." }),
  engineArgs: z.array(matching(SHELL_WORD, 256, SHELL_SAFE)).max(32).optional().meta({ description: "Extra ipengine arguments, e.g. --log-level=WARN." }),
  workersReadyTimeoutSeconds: z.int().min(10).max(86400).default(300).meta({ description: "How long the launcher waits for every worker's sshd before it gives up (exit 3, condition WorkersNotReadyTimeout); the launcher Job then retries within its backoff limit." }),
}).meta({ description: "Run engines as Kubernetes pods: workers run sshd, a launcher Job runs mpiexec over a hostfile so all engines share one MPI world." });

// ---------------------------------------------------------------------------------------------
// spec.backend.pbs: an HPC scheduler reached over SSH (built later; the schema is part of the API now)

const pbsResourceRules: CrossFieldRule<{ select?: string | undefined; nodes?: number | undefined; ppn?: number | undefined }>[] = [
  {
    rule: "!(has(self.select) && (has(self.nodes) || has(self.ppn)))",
    message: "spec.backend.pbs: set either select (PBS Pro) or nodes/ppn (Torque), not both",
    fieldPath: ".select",
    path: ["select"],
    check: (p) => !(p.select !== undefined && (p.nodes !== undefined || p.ppn !== undefined)),
  },
];

export const PbsBackend = withRules(z.object({
  host: matching(HOSTNAME, 253, "must be a host name or IPv4 address").meta({ description: "Login host running qsub/qstat/qdel." }),
  port: z.int().min(1).max(65535).default(22).meta({ description: "SSH port of the login host." }),
  user: matching(USERNAME, 64, "must be a user name ([A-Za-z_][A-Za-z0-9_.-]*)").meta({ description: "SSH user." }),
  credentialsSecret: matching(DNS_SUBDOMAIN, 253, "must be a Secret name").meta({ description: "Secret in the cluster's namespace with keys `ssh-privatekey` and `known_hosts` (host keys are always verified)." }),
  dialect: z.enum(["auto", "pbspro", "torque", "slurm"]).default("auto").meta({ description: "Scheduler dialect; auto detects it from qstat --version." }),
  queue: matching(SHELL_WORD, 64, SHELL_SAFE).optional().meta({ description: "Queue (#PBS -q)." }),
  walltime: str(32).regex(re(WALLTIME), { error: "must be HH:MM:SS, MM:SS or seconds" }).optional().meta({ description: "Walltime (#PBS -l walltime=)." }),
  account: matching(SHELL_WORD, 64, SHELL_SAFE).optional().meta({ description: "Account/project (#PBS -A)." }),
  select: matching(SELECT, 256, SHELL_SAFE).optional().meta({ description: "PBS Pro select statement, e.g. 2:ncpus=8:mpiprocs=8." }),
  nodes: z.int().min(1).max(MAX_ENGINES).optional().meta({ description: "Torque nodes (#PBS -l nodes=N:ppn=M)." }),
  ppn: z.int().min(1).max(1024).optional().meta({ description: "Torque processors per node." }),
  modules: z.array(matching(SHELL_WORD, 128, SHELL_SAFE)).max(32).optional().meta({ description: "Environment modules loaded before mpiexec (module load ...)." }),
  setup: z.array(str(512).regex(re(SHELL_LINE), { error: LINE_SAFE })).max(32).optional().meta({ description: "Lines run before mpiexec (e.g. `source /opt/env.sh`): commands with arguments only." }),
  extraDirectives: z.array(str(256).regex(re(SHELL_LINE), { error: LINE_SAFE })).max(32).optional().meta({ description: "Extra #PBS directive arguments, e.g. `-m abe` or `-l mem=4gb`." }),
  network: z.object({
    mode: z.enum(["direct", "sshTunnel"]).default("sshTunnel").meta({ description: "direct: engines reach the controller at address; sshTunnel: through the login host." }),
    address: matching(HOSTNAME, 253, "must be a host name or IPv4 address").optional().meta({ description: "mode direct: the address compute nodes reach the controller at. With a NodePort controller Service, a node's address (the engines get the Service's node ports); with a LoadBalancer Service it may be left out (the Service's load-balancer address is used once it has one); with ClusterIP, an address routed to the Service. Changing it does not resubmit a running job." }),
  }).prefault({}).meta({ description: "How engines on compute nodes reach the controller." }),
  resubmitOnWalltime: z.boolean().default(true).meta({ description: "Resubmit jobs that end by reaching their walltime." }),
}), pbsResourceRules, "Run engines as a batch job on a PBS Pro / Torque / Slurm (PBS wrappers) cluster over SSH. Every field that reaches the remote shell is restricted to shell-safe characters.");

export const Backend = withRules(z.object({
  mpi: MpiBackend.optional(),
  pbs: PbsBackend.optional(),
}), [{
  rule: "(has(self.mpi) ? 1 : 0) + (has(self.pbs) ? 1 : 0) == 1",
  message: "spec.backend: exactly one of mpi or pbs must be set",
  check: (b) => (b.mpi !== undefined ? 1 : 0) + (b.pbs !== undefined ? 1 : 0) === 1,
}], "Where engines run: exactly one of mpi (Kubernetes pods) or pbs (HPC batch jobs).");

// ---------------------------------------------------------------------------------------------
// spec.controller.clients: who may reach the controller's client ports (the NetworkPolicy's peers)

const LabelValue = z.string().max(63).regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/, { error: "must be a label value" });
const LabelKey = z.string().max(317).regex(re(QUALIFIED_NAME), { error: "must be a label key" });

export const LabelSelector = withRules(z.object({
  matchLabels: z.record(LabelKey, LabelValue).optional(),
  matchExpressions: z.array(z.object({
    key: LabelKey,
    operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
    values: z.array(LabelValue).max(64).optional(),
  })).max(16).optional(),
}), [{
  rule: "!has(self.matchExpressions) || self.matchExpressions.all(e, (e.operator == 'In' || e.operator == 'NotIn') ? (has(e.values) && size(e.values) > 0) : !has(e.values) || size(e.values) == 0)",
  message: "spec.controller.clients[] selector matchExpressions: In and NotIn need values, Exists and DoesNotExist take none",
  fieldPath: ".matchExpressions",
  path: ["matchExpressions"],
  check: (s) => (s.matchExpressions ?? []).every((e) => (e.operator === "In" || e.operator === "NotIn") ? (e.values?.length ?? 0) > 0 : (e.values?.length ?? 0) === 0),
}], "A metav1.LabelSelector (matchLabels and matchExpressions are ANDed; an empty selector matches everything).");

export const ClientPeer = withRules(z.object({
  namespaceSelector: LabelSelector.optional().meta({ description: "Namespaces whose pods may connect; omitted: the cluster's own namespace only." }),
  podSelector: LabelSelector.optional().meta({ description: "Pods that may connect (in the selected namespaces); omitted: every pod there." }),
}), [{
  rule: "has(self.namespaceSelector) || has(self.podSelector)",
  message: "spec.controller.clients[]: set namespaceSelector, podSelector or both",
  check: (p) => p.namespaceSelector !== undefined || p.podSelector !== undefined,
}], "Pods admitted to the controller's client ports and API: a NetworkPolicy peer (both selectors: pods matching podSelector in namespaces matching namespaceSelector).");

// ---------------------------------------------------------------------------------------------
// spec.controller: our ipyparallel-compatible controller (a Deployment + Service per cluster)

export const TASK_SCHEMES = ["leastload", "lru", "plainrandom", "twobin", "weighted"] as const;

export const ControllerSpec = z.object({
  image: matching(IMAGE, 512, "must be a container image reference").optional().meta({ description: "Controller image; default: the operator's own image." }),
  imagePullPolicy: PullPolicy.default("IfNotPresent"),
  resources: Resources.optional().meta({ description: "Resources of the controller container." }),
  service: z.object({
    type: z.enum(["ClusterIP", "NodePort", "LoadBalancer"]).default("ClusterIP"),
    annotations: Annotations.optional(),
    exposeApi: z.boolean().default(false).meta({ description: "Publish the controller's JSON API (port 8080, `http`) on the Service. Every API request needs the cluster's API token (key `api-token` of the connection Secret) or, with Kubernetes authentication, the API verb on this EngineCluster; off by default, so the Service carries only the ZeroMQ ports and metrics." }),
  }).prefault({}).meta({ description: "The controller Service clients and engines connect to." }),
  heartbeatPeriodMs: z.int().min(100).max(60000).default(3000).meta({ description: "Heartbeat period in milliseconds (ipcontroller --ping)." }),
  taskScheme: z.enum(TASK_SCHEMES).default("leastload").meta({ description: "Load-balancing scheme of the task scheduler." }),
  curve: z.boolean().default(false).meta({ description: "Encrypt ZeroMQ traffic with CurveZMQ." }),
  taskRecords: z.enum(["memory", "sqlite"]).default("memory").meta({ description: "Where the controller keeps task records (results clients can fetch again, db_query): memory (bounded, ipcontroller's DictDB) or sqlite (ipcontroller --sqlitedb, upstream's format, in the controller's state directory: kept across a controller container restart, and across the controller pod's replacement with stateVolumeClaim)." }),
  stateVolumeClaim: matching(DNS_SUBDOMAIN, 253, "must be a PersistentVolumeClaim name").optional().meta({
    description: "An existing PersistentVolumeClaim in the cluster's namespace for the controller's state directory (its engine state file and, with taskRecords: sqlite, the task database), in the sub-directory named after this EngineCluster, so one claim may serve several clusters. With it, a replaced controller pod (deleted, evicted, rescheduled) keeps the task records and restores the registrations from the volume. The claim's root must be writable by uid/gid 65532 (the pod's fsGroup sets this for volume types that support it). Default: the pod's own emptyDir, kept across container restarts only. The operator never creates or deletes the claim.",
  }),
  apiAuth: z.enum(["token", "kubernetes"]).default("token").meta({ description: "Who may call the controller's JSON API. token: holders of the cluster's API token (key `api-token` of the connection Secret). kubernetes: also any Kubernetes user or ServiceAccount allowed `create` on `engineclusters/api` (group ipp.dev) of this EngineCluster, e.g. through the chart's aggregated ClusterRole; the controller checks the caller's bearer token with a SelfSubjectAccessReview." }),
  clients: z.array(ClientPeer).min(1).max(16).optional().meta({ description: "Who may connect as a client (the NetworkPolicy's peers for the client ports and the API). Default: pods in the cluster's namespace labelled `ipp.dev/client-<cluster>` (any value) or `ipp.dev/client: <cluster>`. When set, exactly these peers; list the default too to keep it." }),
  reattachTimeoutSeconds: z.int().min(10).max(3600).default(120).meta({
    description: "mpi: after the controller pod is replaced (deleted, evicted, rescheduled) or its container restarted, how long the running MPI world's engines have to re-attach to the new controller with their ids before the operator relaunches the world instead.",
  }),
  maxMessageBytes: z.int().min(1024).max(2 ** 32).optional().meta({
    description: "Largest message a client or engine may send, in bytes (ipp-operator controller --max-message-size); a peer that announces a larger frame is disconnected before the controller allocates it. Default when unset: 1073741824 (1 GiB).",
  }),
}).meta({ description: "The per-cluster controller." });

// ---------------------------------------------------------------------------------------------
// spec

type SpecShape = { engines: number; backend: z.output<typeof Backend>; controller?: { service?: { type?: string } } };
const specRules: CrossFieldRule<SpecShape>[] = [{
  rule: "!has(self.backend.mpi) || !has(self.backend.mpi.workers) || self.backend.mpi.workers * self.backend.mpi.slotsPerWorker >= self.engines",
  message: "spec.backend.mpi.workers × spec.backend.mpi.slotsPerWorker must be at least spec.engines",
  fieldPath: ".backend.mpi.workers",
  path: ["backend", "mpi", "workers"],
  check: (s) => {
    const m = s.backend.mpi;
    return m === undefined || m.workers === undefined || m.workers * m.slotsPerWorker >= s.engines;
  },
}, {
  rule: "!has(self.backend.pbs) || !has(self.backend.pbs.network) || self.backend.pbs.network.mode != 'direct' || has(self.backend.pbs.network.address) || (has(self.controller) && has(self.controller.service) && has(self.controller.service.type) && self.controller.service.type == 'LoadBalancer')",
  message: "spec.backend.pbs.network.address is required when network.mode is direct, unless spec.controller.service.type is LoadBalancer",
  fieldPath: ".backend.pbs.network.address",
  path: ["backend", "pbs", "network", "address"],
  reason: "FieldValueRequired",
  check: (s) => {
    const n = (s.backend.pbs as { network?: { mode?: string; address?: string } } | undefined)?.network;
    return n === undefined || n.mode !== "direct" || n.address !== undefined || s.controller?.service?.type === "LoadBalancer";
  },
}];

export const EngineClusterSpec = withRules(z.object({
  engines: z.int().min(1).max(MAX_ENGINES).meta({ description: "Number of engines (MPI ranks); the scale subresource's replicas. Changing it relaunches the MPI world." }),
  backend: Backend,
  controller: ControllerSpec.prefault({}),
}), specRules, "Desired state of an EngineCluster.");

// ---------------------------------------------------------------------------------------------
// status

export const PHASES = ["Pending", "Submitting", "Queued", "Starting", "Ready", "Degraded", "Terminating", "Failed"] as const;
export const Phase = z.enum(PHASES);

export const CONDITION_TYPES = ["Ready", "Progressing", "Degraded", "ControllerReady", "EnginesReady", "Submitted", "TunnelReady"] as const;

/** metav1.Condition. */
export const Condition = z.object({
  type: str(316).regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/),
  status: z.enum(["True", "False", "Unknown"]),
  observedGeneration: z.int().min(0).optional(),
  lastTransitionTime: z.string().meta({ format: "date-time" }),
  reason: str(1024).regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
  message: z.string().max(32768),
}).meta({ description: "A metav1.Condition." });

export const PbsJobStatus = z.object({
  id: str(256),
  role: z.enum(["engines", "controller"]),
  state: str(64),
  queue: z.string().max(64).optional(),
  submittedAt: z.string().meta({ format: "date-time" }).optional(),
  startedAt: z.string().meta({ format: "date-time" }).optional(),
  reason: z.string().max(1024).optional(),
});

export const EngineClusterStatus = z.object({
  observedGeneration: z.int().min(0).optional(),
  phase: Phase.optional(),
  backend: z.enum(["mpi", "pbs"]).optional().meta({ description: "The backend in use (for the printer column)." }),
  reason: z.string().max(64).optional().meta({ description: "Why the cluster is not Ready, in one word (the Ready condition's reason; for a queued PBS job with the scheduler's pending reason, e.g. JobQueued:Priority). Absent when Ready. The condition's message has the details." }),
  engines: z.object({
    desired: z.int().min(0),
    registered: z.int().min(0),
    alive: z.int().min(0),
  }).optional(),
  conditions: z.array(Condition).max(32).optional().meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] }),
  controller: z.object({
    service: z.string().optional().meta({ description: "Name of the controller Service." }),
    connectionSecret: z.string().optional().meta({ description: "Secret holding ipcontroller-client.json and ipcontroller-engine.json." }),
    httpEndpoint: z.string().optional().meta({ description: "The controller's HTTP API (metrics, health, JSON API)." }),
  }).optional(),
  mpi: z.object({
    worldGeneration: z.string().optional().meta({ description: "Hash of what fixes MPI_COMM_WORLD (engines, slots, workers, image, implementation)." }),
    launcherJob: z.string().optional(),
    workers: z.int().min(0).optional(),
    readyWorkers: z.int().min(0).optional(),
    relaunches: z.int().min(0).optional().meta({ description: "How many times the operator relaunched the MPI world (a spec change, or engines that did not re-attach to a replaced controller in time)." }),
    worldEpoch: z.int().min(0).optional().meta({ description: "Bumped when the engines did not re-attach to a replaced controller within spec.controller.reattachTimeoutSeconds, so the world is relaunched." }),
    controllerPod: z.string().max(512).optional().meta({ description: "The controller pod (name:restarts) the running world's engines are attached to." }),
    reattach: z.object({
      since: z.string().max(64).meta({ description: "When the replacement was observed (RFC 3339)." }),
      from: z.string().max(512).meta({ description: "The controller pod (name:restarts) the engines were attached to." }),
      engines: z.int().min(0).meta({ description: "Engines registered with it before." }),
    }).optional().meta({ description: "Present while the engines of the running world re-attach to a replaced (or restarted) controller; gone once they are back, or when the world is relaunched after spec.controller.reattachTimeoutSeconds." }),
    launcherRestarts: z.int().min(0).optional().meta({ description: "Restarts of the current launcher's mpiexec (a worker lost, mpiexec failed, workers not ready in time)." }),
  }).optional(),
  pbs: z.object({
    jobs: z.array(PbsJobStatus).max(64).optional(),
    tunnel: z.object({
      portBase: z.int().min(1).max(65535).optional().meta({ description: "First port of the block forwarded on the login host's loopback (network.mode sshTunnel); the job's connection info names these ports." }),
      skippedBlocks: z.array(z.int().min(1).max(65535)).max(16).optional().meta({ description: "Blocks tried first and found taken on the login host (other users or clusters held a port)." }),
    }).optional(),
  }).optional(),
}).meta({ description: "Observed state of an EngineCluster, written by the operator." });

// ---------------------------------------------------------------------------------------------
// the object

/**
 * Cluster names become parts of child names (`<name>-controller`, `<name>-launcher-<hash>`, the
 * worker pods' host names), which must be DNS labels of at most 63 characters.
 */
export const MAX_NAME_LENGTH = 40;
export const NAME_PATTERN = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
export const NAME_RULE = {
  rule: `self.metadata.name.size() <= ${MAX_NAME_LENGTH} && self.metadata.name.matches('${NAME_PATTERN}')`,
  message: `metadata.name must be a DNS label starting with a letter, at most ${MAX_NAME_LENGTH} characters (child objects append suffixes such as -launcher-<hash>)`,
};

export const EngineClusterMetadata = z.object({
  name: str(MAX_NAME_LENGTH).regex(re(NAME_PATTERN), { error: NAME_RULE.message }),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  generation: z.int().optional(),
  resourceVersion: z.string().optional(),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  finalizers: z.array(z.string()).optional(),
});

export const EngineCluster = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(KIND),
  metadata: EngineClusterMetadata,
  spec: EngineClusterSpec,
  status: EngineClusterStatus.optional(),
});

export type EngineClusterSpec = z.output<typeof EngineClusterSpec>;
export type EngineClusterSpecInput = z.input<typeof EngineClusterSpec>;
export type EngineClusterStatus = z.output<typeof EngineClusterStatus>;
export type EngineCluster = z.output<typeof EngineCluster>;
export type MpiBackend = z.output<typeof MpiBackend>;
export type PbsBackend = z.output<typeof PbsBackend>;
export type ControllerSpec = z.output<typeof ControllerSpec>;
export type Condition = z.output<typeof Condition>;
export type Phase = z.output<typeof Phase>;
export type ConditionType = (typeof CONDITION_TYPES)[number];
export type EnvVar = z.output<typeof EnvVar>;
export type LabelSelector = z.output<typeof LabelSelector>;
export type ClientPeer = z.output<typeof ClientPeer>;
export type Resources = z.output<typeof Resources>;
export type Toleration = z.output<typeof Toleration>;
