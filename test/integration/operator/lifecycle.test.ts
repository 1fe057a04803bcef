/**
 * The operator as a process (`ipp-operator operator`) on a real kube-apiserver: killed in the
 * middle of reconciling and restarted (no duplicate objects, no regenerated keys, no status
 * flapping), and two replicas with leader election (exactly one leader; a graceful stop hands the
 * Lease over at once).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { CLUSTER_LABEL } from "../../../src/backends/mpi/core/names.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { OWNED_KINDS } from "../../../src/operator/operator.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { listItems, metric, spawnOperator, waitFor, type OperatorProcess } from "./helpers.ts";

let api: ApiServer;
const running: OperatorProcess[] = [];
before(async () => {
  api = await startApiServer();
  await createNamespace(api.client, "restart");
  await createNamespace(api.client, "leader");
});
after(async () => {
  await Promise.all(running.map((p) => p.stop("SIGKILL")));
  await api?.stop();
});

async function start(args: string[]): Promise<OperatorProcess> {
  const p = await spawnOperator(api, args);
  running.push(p);
  return p;
}

type EC = KubeObject & { status?: { observedGeneration?: number; phase?: string; conditions?: Array<{ type: string; status: string; reason: string; lastTransitionTime: string }> } };
const summary = (ec: EC) => JSON.stringify({
  phase: ec.status?.phase,
  conditions: (ec.status?.conditions ?? []).map((c) => `${c.type}=${c.status}/${c.reason}@${c.lastTransitionTime}`).sort(),
});

test("an operator killed mid-reconcile and restarted creates no duplicates, keeps generated keys and does not flap status", async () => {
  const NS = "restart";
  const names = Array.from({ length: 6 }, (_, i) => `r${i}`);
  // record every status the EngineClusters go through, from a watch
  const history = new Map<string, string[]>(names.map((n) => [n, []]));
  const abort = new AbortController();
  const watching = (async () => {
    try {
      for await (const ev of api.client.watch(collectionPath(ENGINECLUSTER, NS), { signal: abort.signal, query: { resourceVersion: "0" } })) {
        const ec = ev.object as EC;
        const h = history.get(ec.metadata?.name ?? "");
        if (!h || !ec.status) continue;
        const s = summary(ec);
        if (h[h.length - 1] !== s) h.push(s);
      }
    } catch (err) { if (!abort.signal.aborted) throw err; }
  })();

  const first = await start(["--namespace", NS, "--workers", "2"]);
  await waitFor("first operator ready", async () => (await fetch(`http://127.0.0.1:${first.metricsPort}/readyz`)).ok, 60_000, 200);
  for (const name of names) {
    await api.client.request("POST", collectionPath(ENGINECLUSTER, NS), {
      body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: NS },
        spec: { engines: 2, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } } },
    });
  }
  // kill it hard as soon as it has written part of the owned objects
  await waitFor("first objects written", async () => (await listItems(api.client, collectionPath(resourceType("v1", "Secret"), NS), CLUSTER_LABEL)).length > 0, 60_000, 20);
  await first.stop("SIGKILL");
  const secretsBefore = new Map((await listItems(api.client, collectionPath(resourceType("v1", "Secret"), NS), CLUSTER_LABEL))
    .map((s) => [s.metadata!.name!, JSON.stringify(s.data)]));
  const partial = await Promise.all(names.map(async (n) => (await listItems(api.client, collectionPath(resourceType("apps/v1", "StatefulSet"), NS), `${CLUSTER_LABEL}=${n}`)).length));
  assert.ok(partial.some((c) => c === 0) || secretsBefore.size < names.length * 2,
    "the first operator was stopped before finishing (else this test shows nothing)");

  const second = await start(["--namespace", NS, "--workers", "2"]);
  const converged = async () => {
    const ecs = await listItems(api.client, collectionPath(ENGINECLUSTER, NS)) as EC[];
    return ecs.length === names.length && ecs.every((e) => e.status?.observedGeneration === e.metadata?.generation && e.status?.phase === "Starting") && ecs;
  };
  await waitFor("all clusters converged after the restart", converged, 90_000, 250);

  for (const name of names) {
    const counts: Record<string, number> = {};
    for (const [v, k] of OWNED_KINDS) counts[k] = (await listItems(api.client, collectionPath(resourceType(v, k), NS), `${CLUSTER_LABEL}=${name}`)).length;
    assert.deepEqual(counts, { Deployment: 1, Service: 2, Secret: 2, ConfigMap: 2, StatefulSet: 1, Job: 1, NetworkPolicy: 1 }, `objects of ${name}`);
  }
  for (const s of await listItems(api.client, collectionPath(resourceType("v1", "Secret"), NS), CLUSTER_LABEL)) {
    const before = secretsBefore.get(s.metadata!.name!);
    if (before !== undefined) assert.equal(JSON.stringify(s.data), before, `Secret ${s.metadata!.name} was not regenerated`);
  }

  // converged: a later periodic reconcile (every 5 s while starting) writes nothing
  const rvs = new Map(((await converged()) || []).map((e) => [e.metadata!.name!, e.metadata!.resourceVersion]));
  const before = await metric(second.metricsPort, 'ipp_operator_reconcile_total{result="requeue_after"}');
  await waitFor("periodic reconciles", async () => (await metric(second.metricsPort, 'ipp_operator_reconcile_total{result="requeue_after"}'))! >= before! + names.length, 30_000, 250);
  for (const e of (await converged()) || []) assert.equal(e.metadata!.resourceVersion, rvs.get(e.metadata!.name!), `${e.metadata!.name} not rewritten`);

  abort.abort();
  await watching;
  for (const [name, h] of history) {
    assert.ok(h.length >= 1, `${name} has a status`);
    assert.equal(new Set(h).size, h.length, `${name}'s status never returns to an earlier state:\n${h.join("\n")}`);
  }
  assert.equal(await second.stop("SIGTERM"), 0);
});

test("two replicas with leader election: exactly one leads; a graceful stop releases the Lease to the other", async () => {
  const NS = "leader";
  const common = ["--namespace", NS, "--leader-elect", "--lease-namespace", NS, "--lease-name", "ipp-operator"];
  const a = await start([...common, "--identity", "replica-a"]);
  const b = await start([...common, "--identity", "replica-b"]);
  const leasePath = objectPath(resourceType("coordination.k8s.io/v1", "Lease"), NS, "ipp-operator");
  const holder = async () => (await api.client.request<{ spec?: { holderIdentity?: string } }>("GET", leasePath)).spec?.holderIdentity;
  const leaderOf = async () => {
    const [la, lb] = [await metric(a.metricsPort, "ipp_operator_leader"), await metric(b.metricsPort, "ipp_operator_leader")];
    return la !== undefined && lb !== undefined ? [la, lb] : undefined;
  };
  const first = await waitFor("a leader", async () => {
    const h = await holder().catch(() => undefined);
    const l = await leaderOf().catch(() => undefined);
    return h && l && l[0]! + l[1]! === 1 && h;
  }, 90_000, 250);
  // several retry periods later there is still exactly one leader, the same one
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 2_000));
    assert.equal(await holder(), first);
    assert.deepEqual(await leaderOf(), first === "replica-a" ? [1, 0] : [0, 1]);
  }
  // both serve /healthz and /readyz (the follower stands by); only the leader reconciles
  for (const p of [a, b]) {
    assert.equal((await fetch(`http://127.0.0.1:${p.metricsPort}/healthz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${p.metricsPort}/readyz`)).status, 200);
  }
  await api.client.request("POST", collectionPath(ENGINECLUSTER, NS), {
    body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: "led", namespace: NS },
      spec: { engines: 1, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } } },
  });
  await waitFor("reconciled by the leader", async () => ((await api.client.request<EC>("GET", objectPath(ENGINECLUSTER, NS, "led"))).status?.phase) === "Starting", 30_000);
  const [leader, follower] = first === "replica-a" ? [a, b] : [b, a];
  assert.equal(await metric(follower.metricsPort, 'ipp_operator_reconcile_total{result="requeue_after"}'), 0, "the follower reconciled nothing");

  // graceful stop: the Lease is released, so the follower takes over without waiting for it to expire (15 s)
  const stoppedAt = Date.now();
  assert.equal(await leader.stop("SIGTERM"), 0);
  const next = await waitFor("the other replica leads", async () => { const h = await holder(); return h && h !== first && h; }, 30_000, 100);
  assert.equal(next, first === "replica-a" ? "replica-b" : "replica-a");
  assert.ok(Date.now() - stoppedAt < 15_000, "taken over before the old lease would have expired");
  await waitFor("follower reports leadership", async () => (await metric(follower.metricsPort, "ipp_operator_leader")) === 1, 10_000);
});
