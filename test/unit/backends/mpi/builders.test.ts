import { test } from "node:test";
import assert from "node:assert/strict";
import { applyOrder, buildMpiObjects, buildNetworkPolicy, connectionFiles, controllerArgs, DEFAULT_BUILD_CONFIG, parseControllerState } from "../../../../src/backends/mpi/core/builders.ts";
import { parseHostfile, renderHostfile } from "../../../../src/backends/mpi/core/hostfile.ts";
import type { KubeObject } from "../../../../src/api/kube.ts";
import { clusterRef, labels } from "../../../../src/backends/mpi/core/names.ts";
import { cluster, MATERIAL, mpiSpec, UID, unb64 } from "./fixtures.ts";
import { splitOwnArgs } from "../../../../src/commands/controller.ts";

type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const build = (spec: Record<string, unknown>) => buildMpiObjects(cluster(spec), MATERIAL);
const OWNER = { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", name: "psum", uid: UID, controller: true, blockOwnerDeletion: true };

test("hostfile: Open MPI `host slots=N`, MPICH `host:N`, in worker order", () => {
  const o = build(mpiSpec({ slotsPerWorker: 4 }, 8));
  assert.equal((o.hostfile as J).data.hostfile,
    "psum-worker-0.psum-workers.science.svc.cluster.local slots=4\n" +
    "psum-worker-1.psum-workers.science.svc.cluster.local slots=4\n");
  const m = build(mpiSpec({ slotsPerWorker: 2, implementation: "mpich", workers: 3 }, 5));
  assert.equal((m.hostfile as J).data.hostfile,
    "psum-worker-0.psum-workers.science.svc.cluster.local:2\n" +
    "psum-worker-1.psum-workers.science.svc.cluster.local:2\n" +
    "psum-worker-2.psum-workers.science.svc.cluster.local:2\n");
  assert.deepEqual(parseHostfile(renderHostfile(["b", "a"], 3, "mpich")), [{ host: "b", slots: 3 }, { host: "a", slots: 3 }]);
  assert.deepEqual(parseHostfile("# c\nlocalhost slots=8\n"), [{ host: "localhost", slots: 8 }]);
});

test("workers default to ceil(engines / slotsPerWorker)", () => {
  assert.equal(build(mpiSpec({ slotsPerWorker: 3 }, 8)).shape.workers, 3);
  assert.equal(build(mpiSpec({}, 8)).shape.workers, 8);
  assert.equal((build(mpiSpec({ slotsPerWorker: 3 }, 8)).workers as J).spec.replicas, 3);
});

test("every object: namespace, labels, owner reference", () => {
  const o = build(mpiSpec());
  const all = applyOrder(o);
  assert.deepEqual(all.map((x) => `${x.kind}/${x.metadata.name}`), [
    "Secret/psum-connection", "Secret/psum-ssh", "ConfigMap/psum-hostfile", "ConfigMap/psum-controller-state", "Service/psum-controller", "Service/psum-workers",
    "NetworkPolicy/psum-controller", "Deployment/psum-controller", "StatefulSet/psum-worker", `Job/psum-launcher-${o.world}`,
  ]);
  for (const x of all) {
    assert.equal(x.metadata.namespace, "science");
    assert.deepEqual(x.metadata.ownerReferences, [OWNER]);
    assert.equal(x.metadata.labels?.["ipp.dev/cluster"], "psum");
    assert.equal(x.metadata.labels?.["app.kubernetes.io/instance"], "psum");
    assert.equal(x.metadata.labels?.["app.kubernetes.io/managed-by"], "ipp-operator");
  }
  assert.deepEqual(labels("psum", "worker"), {
    "app.kubernetes.io/name": "ipyparallel", "app.kubernetes.io/instance": "psum", "app.kubernetes.io/component": "worker",
    "app.kubernetes.io/part-of": "ipp-operator", "app.kubernetes.io/managed-by": "ipp-operator", "ipp.dev/cluster": "psum",
  });
});

test("connection Secret: client and engine JSON as ipcontroller writes them, with the given key", () => {
  const o = build(mpiSpec());
  const data = (o.connectionSecret as J).data;
  assert.deepEqual(Object.keys(data), ["ipcontroller-client.json", "ipcontroller-engine.json", "hmac-key", "api-token"]);
  assert.equal(unb64(data["hmac-key"]), MATERIAL.hmacKey);
  assert.equal(unb64(data["api-token"]), MATERIAL.apiToken);
  const client = JSON.parse(unb64(data["ipcontroller-client.json"]));
  const engine = JSON.parse(unb64(data["ipcontroller-engine.json"]));
  const host = "psum-controller.science.svc.cluster.local";
  assert.deepEqual(client, {
    ssh: "", interface: `tcp://${host}`, registration: 10101, control: 10110, mux: 10111, task: 10112, task_scheme: "leastload",
    iopub: 10113, notification: 10114, broadcast: 10115,
    key: MATERIAL.hmacKey, curve_serverkey: null, location: host, pack: "json", unpack: "json", signature_scheme: "hmac-sha256",
  });
  assert.deepEqual(Object.keys(engine), ["ssh", "interface", "registration", "control", "mux", "task", "iopub", "hb_ping", "hb_pong", "broadcast", "key", "curve_serverkey", "location", "pack", "unpack", "signature_scheme"]);
  assert.deepEqual([engine.registration, engine.control, engine.mux, engine.task, engine.iopub, engine.hb_ping, engine.hb_pong, engine.broadcast],
    [10101, 10102, 10103, 10104, 10105, 10106, 10107, [10108, 10109]]);
});

test("curve: server key in the client file, key pair in the Secret, flag and env on the controller", () => {
  const ec = cluster(mpiSpec({}, 8, { curve: true }));
  const m = { ...MATERIAL, curveSecretKey: "S".repeat(40), curvePublicKey: "P".repeat(40) };
  const o = buildMpiObjects(ec, m);
  assert.equal(connectionFiles(clusterRef(ec), ec, m, DEFAULT_BUILD_CONFIG).client.curve_serverkey, "P".repeat(40));
  assert.equal(unb64((o.connectionSecret as J).data["curve-secretkey"]), "S".repeat(40));
  const c = (o.controllerDeployment as J).spec.template.spec.containers[0];
  assert.ok(c.args.includes("--enable-curve"));
  assert.deepEqual(c.env.map((e: J) => e.name), ["HOME", "IPP_CURVE_SECRETKEY", "IPP_CURVE_PUBLICKEY"]);
});

test("SSH Secret: one key pair as user key and pinned host key", () => {
  const d = (build(mpiSpec()).sshSecret as J);
  assert.equal(d.type, "kubernetes.io/ssh-auth");
  assert.equal(unb64(d.data["ssh-privatekey"]), MATERIAL.sshPrivateKey);
  assert.equal(unb64(d.data.authorized_keys), MATERIAL.sshPublicKey + "\n");
  assert.equal(unb64(d.data.known_hosts), `[*.psum-workers.science.svc.cluster.local]:2222 ${MATERIAL.sshPublicKey}\n`);
});

test("controller Deployment: args, fixed named ports, probes, restricted security context", () => {
  const ec = cluster(mpiSpec({}, 8, { heartbeatPeriodMs: 1500, taskScheme: "lru", resources: { limits: { memory: "256Mi" } } }));
  const d = buildMpiObjects(ec, MATERIAL, { ...DEFAULT_BUILD_CONFIG, controllerImage: "ipp-operator:test" }).controllerDeployment as J;
  assert.deepEqual(controllerArgs(clusterRef(ec), ec, DEFAULT_BUILD_CONFIG), [
    "controller", "--ip=0.0.0.0", "--location=psum-controller.science.svc.cluster.local",
    "--engine-ports=10101-10109", "--client-ports=10110-10115", "--keyfile=/etc/ipp/connection/hmac-key",
    "--ping=1500", "--scheme=lru", "--http-port=8080", "--http-host=0.0.0.0", "--api-token-file=/etc/ipp/connection/api-token",
    "--metrics-port=8081", "--metrics-host=0.0.0.0", "--connection-dir=/var/run/ipp", "--profile-dir=/var/run/ipp/profile", "--restore",
    "--restore-fallback=/etc/ipp/controller-state/engines.json", "--shutdown-delay=15",
  ]);
  const sqlite = cluster(mpiSpec({}, 8, { taskRecords: "sqlite" }));
  assert.ok(controllerArgs(clusterRef(sqlite), sqlite, DEFAULT_BUILD_CONFIG).includes("--sqlitedb"), "spec.controller.taskRecords: sqlite");
  // the API token reaches the controller as a mounted file: never in args or env
  const token = MATERIAL.apiToken;
  assert.ok(!JSON.stringify(d).includes(token), "the token is not in the Deployment");
  assert.equal(d.spec.replicas, 1);
  assert.deepEqual(d.spec.strategy, { type: "Recreate" });
  assert.deepEqual(d.spec.selector.matchLabels, { "ipp.dev/cluster": "psum", "app.kubernetes.io/component": "controller" });
  const pod = d.spec.template.spec;
  const c = pod.containers[0];
  assert.equal(c.image, "ipp-operator:test");
  assert.deepEqual(c.resources, { limits: { memory: "256Mi" } });
  assert.deepEqual(c.ports.map((p: J) => `${p.name}:${p.containerPort}`), [
    "registration:10101", "eng-control:10102", "eng-mux:10103", "eng-task:10104", "eng-iopub:10105", "hb-ping:10106", "hb-pong:10107",
    "eng-bcast-0:10108", "eng-bcast-1:10109", "cli-control:10110", "cli-mux:10111", "cli-task:10112", "cli-iopub:10113",
    "notification:10114", "cli-bcast:10115", "http:8080", "metrics:8081",
  ]);
  for (const p of c.ports) assert.ok(p.name.length <= 15, p.name);
  assert.deepEqual(c.readinessProbe, { httpGet: { path: "/readyz", port: "metrics" }, periodSeconds: 2, failureThreshold: 2 });
  assert.deepEqual(c.livenessProbe.httpGet, { path: "/healthz", port: "metrics" });
  assert.deepEqual(c.securityContext, {
    runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" }, readOnlyRootFilesystem: true,
  });
  assert.deepEqual(pod.securityContext, { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: "RuntimeDefault" } });
  assert.deepEqual(pod.volumes[0], { name: "connection", secret: { secretName: "psum-connection", defaultMode: 0o440 } });
});

test("apiAuth kubernetes: the controller checks callers with a SelfSubjectAccessReview on this cluster, with the namespace's CA and no token of its own", () => {
  const ec = cluster(mpiSpec({}, 8, { apiAuth: "kubernetes" }));
  const d = buildMpiObjects(ec, MATERIAL).controllerDeployment as J;
  const c = d.spec.template.spec.containers[0];
  assert.deepEqual(c.args.slice(-4), [
    "--api-auth=kubernetes", "--api-auth-cluster=science/psum", "--api-auth-review=self", "--api-auth-ca=/etc/ipp/kube-ca/ca.crt",
  ]);
  const { api, rest } = splitOwnArgs(c.args.slice(1));
  assert.deepEqual(api, { tokenFile: "/etc/ipp/connection/api-token", auth: "kubernetes", cluster: { namespace: "science", name: "psum" }, review: "self", ca: "/etc/ipp/kube-ca/ca.crt" });
  assert.ok(!rest.some((a) => a.startsWith("--api-")));
  assert.equal(d.spec.template.spec.automountServiceAccountToken, false);
  assert.deepEqual(d.spec.template.spec.volumes.at(-1), { name: "kube-ca", configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } });
  assert.deepEqual(c.volumeMounts.at(-1), { name: "kube-ca", mountPath: "/etc/ipp/kube-ca", readOnly: true });
  const plain = buildMpiObjects(cluster(mpiSpec()), MATERIAL).controllerDeployment as J;
  assert.ok(!plain.spec.template.spec.containers[0].args.some((a: string) => a.startsWith("--api-auth")));
  assert.equal(plain.spec.template.spec.volumes.length, 3);
});

test("controller-state ConfigMap: upstream's engine state file, mounted read only (optional) where --restore-fallback reads it", () => {
  const o = buildMpiObjects(cluster(mpiSpec()), MATERIAL, DEFAULT_BUILD_CONFIG, 0, { engines: [{ id: 2, uuid: "u-2" }, { id: 0, uuid: "u-0" }], nextId: 1 });
  const cm = o.controllerState as KubeObject & J;
  assert.equal(cm.metadata.name, "psum-controller-state");
  assert.equal(cm.metadata.labels?.["app.kubernetes.io/component"], "controller-state");
  // ids in order; next_id never below the highest id + 1
  assert.equal(cm.data["engines.json"], '{"engines":{"0":"u-0","2":"u-2"},"next_id":3}\n');
  assert.deepEqual(parseControllerState(cm), { engines: [{ id: 0, uuid: "u-0" }, { id: 2, uuid: "u-2" }], nextId: 3 });
  assert.equal(parseControllerState({ ...cm, data: { "engines.json": "not json" } }), undefined);
  assert.equal((buildMpiObjects(cluster(mpiSpec()), MATERIAL).controllerState as J).data["engines.json"], '{"engines":{},"next_id":0}\n');
  const pod = (o.controllerDeployment as J).spec.template.spec;
  assert.deepEqual(pod.volumes.find((v: J) => v.name === "state"), { name: "state", configMap: { name: "psum-controller-state", optional: true } });
  assert.deepEqual(pod.containers[0].volumeMounts.find((m: J) => m.name === "state"), { name: "state", mountPath: "/etc/ipp/controller-state", readOnly: true });
  assert.ok(pod.containers[0].args.includes("--restore-fallback=/etc/ipp/controller-state/engines.json"));
});

test("controller stateVolumeClaim: the profile (state file, task database) on the claim, in the cluster's own sub-directory; without it, the run volume", () => {
  const withClaim = cluster(mpiSpec({}, 8, { stateVolumeClaim: "ipp-state", taskRecords: "sqlite" }));
  const pod = (buildMpiObjects(withClaim, MATERIAL).controllerDeployment as J).spec.template.spec;
  assert.deepEqual(pod.volumes.find((v: J) => v.name === "state-volume"), { name: "state-volume", persistentVolumeClaim: { claimName: "ipp-state" } });
  assert.deepEqual(pod.containers[0].volumeMounts.find((m: J) => m.name === "state-volume"), { name: "state-volume", mountPath: "/var/lib/ipp-controller" });
  assert.ok(pod.containers[0].args.includes("--profile-dir=/var/lib/ipp-controller/psum/profile"));
  assert.ok(pod.containers[0].args.includes("--sqlitedb"));
  assert.ok(pod.containers[0].args.includes("--restore"));
  const plain = (buildMpiObjects(cluster(mpiSpec()), MATERIAL).controllerDeployment as J).spec.template.spec;
  assert.ok(plain.containers[0].args.includes("--profile-dir=/var/run/ipp/profile"));
  assert.equal(plain.volumes.some((v: J) => v.name === "state-volume"), false);
  assert.throws(() => cluster(mpiSpec({}, 8, { stateVolumeClaim: "Not_A_Name" })), /PersistentVolumeClaim name/);
});

test("controller Service: ZeroMQ ports and metrics, no API port unless the spec exposes it", () => {
  const plain = build(mpiSpec()).controllerService as J;
  assert.equal(plain.spec.ports.length, 16);
  assert.ok(!plain.spec.ports.some((p: J) => p.name === "http" || p.port === 8080), "the API is not on the Service by default");
  assert.deepEqual(plain.spec.ports.at(-1), { name: "metrics", port: 8081, targetPort: "metrics", protocol: "TCP" });
});

test("controller Service names every port with exposeApi; type and annotations from the spec", () => {
  const s = build(mpiSpec({}, 8, { service: { type: "LoadBalancer", annotations: { "example.com/lb": "internal" }, exposeApi: true } })).controllerService as J;
  assert.equal(s.spec.type, "LoadBalancer");
  assert.deepEqual(s.metadata.annotations, { "example.com/lb": "internal" });
  assert.equal(s.spec.ports.length, 17);
  assert.deepEqual(s.spec.ports[0], { name: "registration", port: 10101, targetPort: "registration", protocol: "TCP" });
  assert.deepEqual(s.spec.ports.slice(-2), [
    { name: "http", port: 8080, targetPort: "http", protocol: "TCP" },
    { name: "metrics", port: 8081, targetPort: "metrics", protocol: "TCP" },
  ]);
  assert.deepEqual(s.spec.selector, { "ipp.dev/cluster": "psum", "app.kubernetes.io/component": "controller" });
});

test("headless workers Service and worker StatefulSet running sshd", () => {
  const o = build(mpiSpec({ slotsPerWorker: 4, nodeSelector: { pool: "mpi" }, tolerations: [{ key: "hpc", operator: "Exists", effect: "NoSchedule" }], resources: { requests: { cpu: 4 } } }, 8));
  const svc = o.workersService as J;
  assert.equal(svc.spec.clusterIP, "None");
  assert.equal(svc.spec.publishNotReadyAddresses, true);
  assert.deepEqual(svc.spec.ports, [{ name: "ssh", port: 2222, targetPort: "ssh", protocol: "TCP" }]);
  const sts = o.workers as J;
  assert.equal(sts.spec.serviceName, "psum-workers");
  assert.equal(sts.spec.replicas, 2);
  assert.equal(sts.spec.podManagementPolicy, "Parallel");
  const pod = sts.spec.template.spec;
  assert.deepEqual(pod.nodeSelector, { pool: "mpi" });
  assert.deepEqual(pod.tolerations, [{ key: "hpc", operator: "Exists", effect: "NoSchedule" }]);
  const c = pod.containers[0];
  assert.deepEqual(c.command, ["/opt/ipp/entrypoint-worker.sh"]);
  assert.deepEqual(c.resources, { requests: { cpu: 4 } });
  assert.deepEqual(c.securityContext, {
    runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" },
  });
  assert.equal(pod.automountServiceAccountToken, false);
});

test("launcher Job: entrypoint env, connection info from the Secret, world label and name", () => {
  const o = build(mpiSpec({ env: [{ name: "OMP_NUM_THREADS", value: "1" }], engineArgs: ["--log-level=WARN"] }, 8));
  const job = o.launcher as J;
  assert.match(o.world, /^[0-9a-f]{10}$/);
  assert.equal(job.metadata.name, `psum-launcher-${o.world}`);
  assert.equal(job.metadata.labels["ipp.dev/world"], o.world);
  assert.equal(job.spec.template.metadata.labels["ipp.dev/world"], o.world);
  const c = job.spec.template.spec.containers[0];
  assert.deepEqual(c.command, ["/opt/ipp/entrypoint-launcher.sh"]);
  assert.deepEqual(c.env, [
    { name: "IPP_CONNECTION_INFO", valueFrom: { secretKeyRef: { name: "psum-connection", key: "ipcontroller-engine.json" } } },
    { name: "IPP_ENGINES", value: "8" },
    { name: "IPP_MPI", value: "openmpi" },
    { name: "IPP_HOSTFILE", value: "/etc/ipp/hostfile/hostfile" },
    { name: "IPP_SSH_DIR", value: "/etc/ipp/ssh" },
    { name: "IPP_SSH_PORT", value: "2222" },
    { name: "IPP_ENGINE_ARGS", value: "--log-level=WARN" },
    { name: "IPP_WAIT_TIMEOUT", value: "300" },
    { name: "IPP_FORWARD_ENV", value: "OMP_NUM_THREADS" },
    { name: "OMP_NUM_THREADS", value: "1" },
  ]);
  assert.deepEqual(job.spec.template.spec.volumes, [
    { name: "ssh", secret: { secretName: "psum-ssh", defaultMode: 0o440 } },
    { name: "hostfile", configMap: { name: "psum-hostfile" } },
  ]);
  assert.equal(job.spec.template.spec.restartPolicy, "OnFailure");
});

test("world generation: changes with engines, slots, workers, image; not with controller settings", () => {
  const w = (spec: Record<string, unknown>) => build(spec).world;
  const base = w(mpiSpec({}, 8));
  assert.equal(w(mpiSpec({}, 8)), base, "deterministic");
  assert.notEqual(w(mpiSpec({}, 16)), base);
  assert.notEqual(w(mpiSpec({ slotsPerWorker: 2 }, 8)), base);
  assert.notEqual(w(mpiSpec({ workers: 9 }, 8)), base);
  assert.notEqual(w(mpiSpec({ image: "ghcr.io/ipp/engine:9.3" }, 8)), base);
  assert.notEqual(w(mpiSpec({ implementation: "mpich" }, 8)), base);
  assert.equal(w(mpiSpec({}, 8, { heartbeatPeriodMs: 1000 })), base);
});

const OPERATOR = { namespace: "ipp-system", podLabels: { "app.kubernetes.io/name": "ipp-operator", "app.kubernetes.io/instance": "ipp" } };

test("NetworkPolicy: engines reach only the engine ports, labelled clients ZeroMQ and the API, the operator (its namespace and pods) the API, scrapers only the metrics port", () => {
  const np = buildMpiObjects(cluster(mpiSpec()), MATERIAL, { ...DEFAULT_BUILD_CONFIG, operator: OPERATOR }).networkPolicy as J;
  assert.deepEqual(np.spec.podSelector.matchLabels, { "ipp.dev/cluster": "psum", "app.kubernetes.io/component": "controller" });
  assert.deepEqual(np.spec.policyTypes, ["Ingress"]);
  const [engines, clients, operator, scrapers, ...more] = np.spec.ingress;
  assert.deepEqual(more, []);
  assert.deepEqual(engines.from.map((f: J) => f.podSelector.matchLabels["app.kubernetes.io/component"]), ["launcher", "worker"]);
  assert.deepEqual(engines.ports.map((p: J) => p.port), [10101, 10102, 10103, 10104, 10105, 10106, 10107, 10108, 10109]);
  // default: this namespace's pods with the per-cluster key (any value), or the older single-valued label
  assert.deepEqual(clients.from, [
    { podSelector: { matchExpressions: [{ key: "ipp.dev/client-psum", operator: "Exists" }] } },
    { podSelector: { matchLabels: { "ipp.dev/client": "psum" } } },
  ]);
  assert.deepEqual(clients.ports.map((p: J) => p.port), [10101, 10110, 10111, 10112, 10113, 10114, 10115, 8080]);
  // the operator: its pods' labels AND its namespace's name, in one peer (both must match)
  assert.deepEqual(operator.from, [{
    namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ipp-system" } },
    podSelector: { matchLabels: { "app.kubernetes.io/name": "ipp-operator", "app.kubernetes.io/instance": "ipp" } },
  }]);
  assert.deepEqual(operator.ports, [{ protocol: "TCP", port: 8080 }]);
  // default: any pod in any namespace, metrics port only
  assert.deepEqual(scrapers.from, [{ namespaceSelector: {} }]);
  assert.deepEqual(scrapers.ports, [{ protocol: "TCP", port: 8081 }]);
  for (const rule of np.spec.ingress) {
    const ports = rule.ports.map((p: J) => p.port);
    assert.ok(!(ports.includes(8081) && ports.includes(8080)), "no rule opens both the API and the metrics port");
  }
});

test("NetworkPolicy: spec.controller.clients replaces the default client peers, selectors as given", () => {
  const spec = mpiSpec();
  const clients = [
    { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "jupyterhub" } }, podSelector: { matchLabels: { "component": "singleuser-server" } } },
    { podSelector: { matchExpressions: [{ key: "ipp.dev/client-psum", operator: "Exists" as const }] } },
  ];
  const ec = cluster({ ...spec, controller: { ...(spec as { controller?: object }).controller, clients } });
  const np = buildMpiObjects(ec, MATERIAL).networkPolicy as J;
  assert.deepEqual(np.spec.ingress[1].from, clients);
  assert.deepEqual(np.spec.ingress[1].ports.map((p: J) => p.port), [10101, 10110, 10111, 10112, 10113, 10114, 10115, 8080]);
  // the engines' rule is untouched
  assert.deepEqual(np.spec.ingress[0].from.map((f: J) => f.podSelector.matchLabels["app.kubernetes.io/component"]), ["launcher", "worker"]);
});

test("NetworkPolicy: the operator's metrics-scraper selectors choose who reaches the metrics port", () => {
  const ec = cluster(mpiSpec());
  const only = (config: Partial<typeof DEFAULT_BUILD_CONFIG>) =>
    (buildMpiObjects(ec, MATERIAL, { ...DEFAULT_BUILD_CONFIG, operator: OPERATOR, ...config }).networkPolicy as J).spec.ingress[3];
  assert.deepEqual(only({ metricsScrapers: { namespaceSelector: { "kubernetes.io/metadata.name": "monitoring" } } }).from,
    [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }]);
  assert.deepEqual(only({ metricsScrapers: { namespaceSelector: { team: "obs" }, podSelector: { "app.kubernetes.io/name": "prometheus" } } }).from,
    [{ namespaceSelector: { matchLabels: { team: "obs" } }, podSelector: { matchLabels: { "app.kubernetes.io/name": "prometheus" } } }]);
  assert.deepEqual(only({ metricsScrapers: { namespaceSelector: {}, podSelector: { "app.kubernetes.io/name": "prometheus" } } }).from,
    [{ namespaceSelector: {}, podSelector: { matchLabels: { "app.kubernetes.io/name": "prometheus" } } }]);
  assert.deepEqual(only({ metricsScrapers: { namespaceSelector: {}, podSelector: {} } }).from, [{ namespaceSelector: {} }]);
});

test("NetworkPolicy: no operator rule when the operator's namespace is unknown (it runs outside the cluster); empty pod labels mean the chart's operator label", () => {
  const ec = cluster(mpiSpec());
  const without = (buildMpiObjects(ec, MATERIAL).networkPolicy as J).spec.ingress;
  assert.equal(without.length, 3);
  assert.ok(!without.some((r: J) => JSON.stringify(r.from ?? []).includes("ipp.dev/operator")));
  const withDefault = (buildMpiObjects(ec, MATERIAL, { ...DEFAULT_BUILD_CONFIG, operator: { namespace: "ops", podLabels: {} } }).networkPolicy as J).spec.ingress[2];
  assert.deepEqual(withDefault.from, [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ops" } }, podSelector: { matchLabels: { "ipp.dev/operator": "true" } } }]);
});

test("NetworkPolicy for pbs: direct engines reach the engine ports from anywhere, tunnelled ones only from the operator; never the API", () => {
  const ref = clusterRef(cluster(mpiSpec()));
  const config = { ...DEFAULT_BUILD_CONFIG, operator: OPERATOR };
  const direct = (buildNetworkPolicy(ref, config, "anywhere") as J).spec.ingress[0];
  assert.equal(direct.from, undefined);
  assert.deepEqual(direct.ports.map((p: J) => p.port), [10101, 10102, 10103, 10104, 10105, 10106, 10107, 10108, 10109]);
  const tunnel = (buildNetworkPolicy(ref, config, "operator") as J).spec.ingress[0];
  assert.deepEqual(tunnel.from, [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "ipp-system" } }, podSelector: { matchLabels: OPERATOR.podLabels } }]);
  assert.deepEqual(tunnel.ports.map((p: J) => p.port), [10101, 10102, 10103, 10104, 10105, 10106, 10107, 10108, 10109]);
});

test("every pod is restricted-PSS compliant", () => {
  const o = build(mpiSpec());
  for (const w of [o.controllerDeployment, o.workers, o.launcher] as J[]) {
    const pod = w.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
    assert.ok(!pod.hostNetwork && !pod.hostPID && !pod.hostIPC);
    for (const v of pod.volumes) assert.ok(v.secret || v.configMap || v.emptyDir, `volume ${v.name}`);
    for (const c of pod.containers) {
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities, { drop: ["ALL"] });
      assert.ok(c.securityContext.runAsUser > 0);
    }
  }
});

test("controller args: spec.controller.maxMessageBytes becomes --max-message-size (absent: the controller's default)", () => {
  const ec = cluster(mpiSpec({}, 8, { maxMessageBytes: 536870912 }));
  assert.equal(controllerArgs(clusterRef(ec), ec, DEFAULT_BUILD_CONFIG).filter((a) => a.startsWith("--max-message-size")).join(), "--max-message-size=536870912");
  const plain = cluster(mpiSpec());
  assert.equal(controllerArgs(clusterRef(plain), plain, DEFAULT_BUILD_CONFIG).some((a) => a.startsWith("--max-message-size")), false);
});
