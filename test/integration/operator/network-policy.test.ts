/**
 * The controllers' NetworkPolicies as the real operator writes them to a real kube-apiserver, for
 * an mpi cluster, a pbs `direct` cluster and a pbs `sshTunnel` cluster. Every rule is evaluated
 * (test/support/network-policy.ts) for a matrix of sources — the operator's pod in its namespace,
 * impostors carrying its labels elsewhere, clients, engines, another cluster's engines, any pod,
 * Prometheus, a host outside the cluster — against each kind of port, and the admitted set must be
 * exactly what the security model says: the API only to clients and the operator, the metrics
 * port only to scrapers, engines only to the engine ports. Namespaces carry the labels the API
 * server gives them (kubernetes.io/metadata.name), read back from it. There is no CNI here, so
 * enforcement itself is not exercised; what the policy says is.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { CLIENT_PORTS, ENGINE_PORTS, HTTP_PORT, METRICS_PORT, labels, selector } from "../../../src/backends/mpi/core/names.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER } from "../../../src/operator/kube/resources.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { admits, type NetworkPolicyLike, type Source } from "../../support/network-policy.ts";
import { spawnOperator, waitFor, type OperatorProcess } from "./helpers.ts";

const NS = "science";
const OPERATOR_NS = "ipp-system";
const OPERATOR_LABELS = { "app.kubernetes.io/name": "ipp-operator", "app.kubernetes.io/instance": "ipp", "app.kubernetes.io/component": "operator", "ipp.dev/operator": "true" };

let api: ApiServer;
let op: OperatorProcess;
const nsLabels: Record<string, Record<string, string>> = {};

before(async () => {
  api = await startApiServer();
  for (const ns of [NS, OPERATOR_NS, "tenant", "monitoring"]) {
    await createNamespace(api.client, ns);
    nsLabels[ns] = (await api.client.request<{ metadata: { labels?: Record<string, string> } }>("GET", `/api/v1/namespaces/${ns}`)).metadata.labels ?? {};
  }
  assert.equal(nsLabels[NS]!["kubernetes.io/metadata.name"], NS, "the API server labels namespaces with their name");
  await api.client.request("POST", collectionPath(resourceType("v1", "Secret"), NS), {
    body: { apiVersion: "v1", kind: "Secret", metadata: { name: "hpc-ssh", namespace: NS }, type: "Opaque", data: { "ssh-privatekey": Buffer.from("not a key").toString("base64") } },
  });
  op = await spawnOperator(api, [
    "--namespace", NS, "--operator-namespace", OPERATOR_NS,
    "--operator-pod-selector", "app.kubernetes.io/name=ipp-operator,app.kubernetes.io/instance=ipp,app.kubernetes.io/component=operator",
    "--metrics-scraper-namespace-selector", "kubernetes.io/metadata.name=monitoring",
    "--metrics-scraper-pod-selector", "app.kubernetes.io/name=prometheus",
  ]);
  const pbs = (mode: "direct" | "sshTunnel") => ({
    pbs: {
      host: "127.0.0.1", port: 1, user: "alice", credentialsSecret: "hpc-ssh", dialect: "slurm", walltime: "00:05:00",
      network: mode === "direct" ? { mode, address: "10.1.2.3" } : { mode },
    },
  });
  for (const [name, backend] of [["mpi1", { mpi: { image: "registry.example.org/ipp-engine:1" } }], ["direct1", pbs("direct")], ["tunnel1", pbs("sshTunnel")]] as const) {
    await api.client.request("POST", collectionPath(ENGINECLUSTER, NS), {
      body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: NS }, spec: { engines: 2, backend } },
    });
  }
});

after(async () => {
  await op?.stop();
  await api?.stop();
});

const pod = (namespace: string, podLabels: Record<string, string>): Source => ({ pod: { namespace, namespaceLabels: nsLabels[namespace]!, labels: podLabels } });

function sources(cluster: string): Record<string, Source> {
  return {
    "operator": pod(OPERATOR_NS, OPERATOR_LABELS),
    "operator labels in a tenant namespace": pod("tenant", OPERATOR_LABELS),
    "operator labels in the cluster's namespace": pod(NS, OPERATOR_LABELS),
    "client": pod(NS, { "ipp.dev/client": cluster }),
    "client label in another namespace": pod("tenant", { "ipp.dev/client": cluster }),
    // the per-cluster key: any value; one pod can carry the keys of several clusters
    "client key": pod(NS, { [`ipp.dev/client-${cluster}`]: "" }),
    "client of two clusters": pod(NS, { [`ipp.dev/client-${cluster}`]: "true", "ipp.dev/client-other": "true" }),
    "another cluster's client key": pod(NS, { "ipp.dev/client-other": "true" }),
    "client key in another namespace": pod("tenant", { [`ipp.dev/client-${cluster}`]: "true" }),
    "worker": pod(NS, labels(cluster, "worker")),
    "launcher": pod(NS, labels(cluster, "launcher")),
    "another cluster's worker": pod(NS, { ...selector("other", "worker") }),
    "any pod in the namespace": pod(NS, { app: "notebook" }),
    "prometheus": pod("monitoring", { "app.kubernetes.io/name": "prometheus" }),
    "prometheus labels elsewhere": pod("tenant", { "app.kubernetes.io/name": "prometheus" }),
    "outside the cluster": "outside",
  };
}

const PORTS = {
  registration: ENGINE_PORTS.registration, engine: ENGINE_PORTS.mux, heartbeat: ENGINE_PORTS.hb_ping,
  client: CLIENT_PORTS.mux, notification: CLIENT_PORTS.notification, api: HTTP_PORT, metrics: METRICS_PORT,
};

/** Who each port admits: the policy evaluated over every source. */
async function admitted(cluster: string): Promise<Record<string, string[]>> {
  const np = await waitFor(`NetworkPolicy ${cluster}-controller`, () =>
    api.client.request<NetworkPolicyLike>("GET", objectPath(resourceType("networking.k8s.io/v1", "NetworkPolicy"), NS, `${cluster}-controller`)).catch(() => undefined), 60_000, 200);
  const out: Record<string, string[]> = {};
  for (const [portName, port] of Object.entries(PORTS)) {
    out[portName] = Object.entries(sources(cluster)).filter(([, s]) => admits(np, s, port)).map(([name]) => name);
  }
  return out;
}

const CLIENTS = ["client", "client key", "client of two clusters"];
const API = ["operator", ...CLIENTS];
const METRICS = ["prometheus"];

test("mpi: engines (this cluster's launcher and workers) reach only the engine ports; the API: clients and the operator from its namespace; metrics: the scrapers", async () => {
  const engines = ["worker", "launcher"];
  assert.deepEqual(await admitted("mpi1"), {
    registration: [...CLIENTS, ...engines], engine: engines, heartbeat: engines, client: CLIENTS, notification: CLIENTS, api: API, metrics: METRICS,
  });
});

test("pbs direct: engines on compute nodes (outside the cluster, any address) reach the engine ports and nothing else", async () => {
  const everyone = Object.keys(sources("direct1"));
  assert.deepEqual(await admitted("direct1"), {
    registration: everyone, engine: everyone, heartbeat: everyone, client: CLIENTS, notification: CLIENTS, api: API, metrics: METRICS,
  });
});

test("pbs sshTunnel: only the operator (which forwards the login host's ports) reaches the engine ports", async () => {
  assert.deepEqual(await admitted("tunnel1"), {
    registration: ["operator", ...CLIENTS], engine: ["operator"], heartbeat: ["operator"], client: CLIENTS, notification: CLIENTS, api: API, metrics: METRICS,
  });
});

test("the Services publish no API port (spec.controller.service.exposeApi is off)", async () => {
  for (const name of ["mpi1", "direct1", "tunnel1"]) {
    const svc = await waitFor(`Service ${name}-controller`, () =>
      api.client.request<{ spec: { ports: Array<{ name: string; port: number }> } }>("GET", objectPath(resourceType("v1", "Service"), NS, `${name}-controller`)).catch(() => undefined), 60_000, 200);
    assert.ok(!svc.spec.ports.some((p) => p.port === HTTP_PORT || p.name === "http"), `${name}: ${JSON.stringify(svc.spec.ports)}`);
    assert.ok(svc.spec.ports.some((p) => p.port === METRICS_PORT));
  }
});
