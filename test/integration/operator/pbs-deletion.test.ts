/**
 * Deleting a pbs EngineCluster never hangs, against a real kube-apiserver and the real PBS rig
 * (Slurm + its PBS wrappers behind sshd):
 * - `kubectl delete namespace` with a live cluster: the namespace's content goes in discovery
 *   order (test/support/namespace-deleter.ts does what kube-controller-manager's namespace
 *   controller does; the test API server runs no controllers), so the credentials Secret is gone
 *   before the EngineCluster is deleted. The cluster says so (Degraded/CredentialsNotFound) and
 *   keeps its finalizer while the grace period runs, then lets go: the namespace goes, and the
 *   operator's log names the job that may still run (Events can't be created in a namespace being
 *   deleted, so the log and the status carry it).
 * - deleting an EngineCluster whose Secret is gone: the Warning Event, then the annotation
 *   ipp.dev/abandon-jobs=true lets it go at once, with an Event naming the job id.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Registry } from "prom-client";
import { CLUSTER_LABEL } from "../../../src/backends/mpi/core/names.ts";
import { PbsOperatorRuntime } from "../../../src/backends/pbs/runtime.ts";
import { createPbsMetrics } from "../../../src/metrics/operator.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { readSecretText } from "../../../src/operator/kube/secrets.ts";
import { startOperator, type OperatorHandle } from "../../../src/operator/operator.ts";
import { corePlanner } from "../../../src/operator/planner.ts";
import { createLogger } from "../../../src/util/log.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { startNamespaceDeleter } from "../../support/namespace-deleter.ts";
import { createRigSecret, startPbsRig, type PbsRig } from "../../support/pbs-rig.ts";
import { getOrUndefined, waitFor } from "./helpers.ts";

const GRACE_SECONDS = 45;
const logLines: string[] = [];
const logger = createLogger({ level: "warn", sink: (l) => logLines.push(l) });
let api: ApiServer;
let rig: PbsRig;
let runtime: PbsOperatorRuntime;
let op: OperatorHandle;
const ids: string[] = [];

type Cond = { type: string; status: string; reason: string; message: string };
type EC = KubeObject & { status?: { phase?: string; conditions?: Cond[]; pbs?: { jobs?: Array<{ id: string; state: string }> } } };
type Ev = { reason: string; type: string; message: string; involvedObject: { name: string } };
const SECRET = resourceType("v1", "Secret");

before(async () => {
  rig = await startPbsRig();
  api = await startApiServer();
  const client = api.client;
  runtime = new PbsOperatorRuntime({
    logger, metrics: createPbsMetrics(new Registry()), pollIntervalMs: 500,
    readSecret: (namespace, name) => readSecretText(client, namespace, name),
  });
  op = await startOperator({
    client, planner: corePlanner, workers: 2, ownedLabelSelector: CLUSTER_LABEL, probe: false, pbs: runtime, logger,
    plannerConfig: { pbsDeletionGraceSeconds: GRACE_SECONDS },
  });
});

after(async () => {
  // the abandoned jobs really are still there: cancel them as the batch user
  if (ids.length > 0) await rig?.asUser(`qdel ${ids.join(" ")} 2>/dev/null || true`);
  await op?.stop();
  runtime?.close();
  await api?.stop();
  await rig?.stop();
});

async function liveCluster(ns: string, name: string): Promise<string> {
  await createNamespace(api.client, ns);
  await createRigSecret(api.client, ns, rig);
  await api.client.request("POST", collectionPath(ENGINECLUSTER, ns), {
    body: {
      apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: ns },
      spec: {
        engines: 1,
        backend: { pbs: {
          host: rig.host, port: rig.port, user: rig.user, credentialsSecret: "hpc-ssh", dialect: "auto", queue: rig.queue, walltime: "00:05:00",
          // the job only has to stay alive: no controller pod runs without a kubelet
          setup: ["sleep 280"], network: { mode: "direct", address: "127.0.0.1" },
        } },
      },
    },
  });
  const id = await waitFor(`${ns}/${name}'s job id in status`, async () => {
    const ec = await api.client.request<EC>("GET", objectPath(ENGINECLUSTER, ns, name));
    const j = ec.status?.pbs?.jobs?.[0];
    return j !== undefined && ["Q", "R"].includes(j.state) ? j.id : undefined;
  }, 90_000, 250);
  ids.push(id);
  return id;
}

const liveJobs = async () => (await rig.asUser(`squeue -h -u ${rig.user} -o %i`)).stdout.split("\n").filter((l) => l !== "");
const degraded = (ec: EC | undefined) => ec?.status?.conditions?.find((c) => c.type === "Degraded");
const eventsOf = async (ns: string, name: string) =>
  (await api.client.request<{ items: Ev[] }>("GET", collectionPath(resourceType("v1", "Event"), ns))).items.filter((e) => e.involvedObject.name === name);

test("kubectl delete namespace with a live pbs cluster: reported while the grace period runs, then the namespace goes and the log names the job", async () => {
  const ns = "doomed";
  const id = await liveCluster(ns, "hpc-ns");
  await api.client.request("DELETE", `/api/v1/namespaces/${ns}`);
  const deleter = startNamespaceDeleter(api.client, ns);
  try {
    const blocked = await waitFor("Degraded/CredentialsNotFound while the namespace terminates", async () => {
      const ec = await getOrUndefined(api.client, objectPath(ENGINECLUSTER, ns, "hpc-ns")) as EC | undefined;
      return degraded(ec)?.reason === "CredentialsNotFound" ? ec : undefined;
    }, 60_000, 250);
    assert.equal(blocked.status?.phase, "Terminating");
    assert.match(degraded(blocked)!.message, new RegExp(`job\\(s\\) ${id} may still be running`));
    assert.match(degraded(blocked)!.message, /ipp\.dev\/abandon-jobs=true/);
    assert.ok(blocked.metadata?.finalizers?.includes("ipp.dev/finalizer"), "the finalizer is kept while the job may run");
    assert.equal((await api.client.request<{ status: { phase: string } }>("GET", `/api/v1/namespaces/${ns}`)).status.phase, "Terminating");
    // the grace period ends: the finalizer goes, the namespace with it
    await Promise.race([deleter.done, new Promise((_, reject) => setTimeout(() => reject(new Error("namespace still there")), (GRACE_SECONDS + 90) * 1000))]);
    assert.equal(await getOrUndefined(api.client, `/api/v1/namespaces/${ns}`), undefined);
  } finally {
    deleter.stop();
  }
  const abandoned = logLines.map((l) => JSON.parse(l) as { msg: string; reason?: string; message?: string }).find((l) => l.reason === "JobsAbandoned");
  assert.ok(abandoned !== undefined, "a JobsAbandoned warning in the operator's log");
  assert.match(abandoned.message!, /grace period of 45 s is over/);
  assert.match(abandoned.message!, new RegExp(`job\\(s\\) ${id} may still be running`));
  assert.ok((await liveJobs()).includes(id), "without credentials nothing could qdel it: the job the message names is still there");
  assert.ok(!logLines.some((l) => l.includes("PRIVATE KEY")), "no key material in the log");
});

test("an EngineCluster deleted after its Secret: a Warning Event, then ipp.dev/abandon-jobs=true lets it go at once, the Event naming the job", async () => {
  const ns = "hpc2";
  const id = await liveCluster(ns, "hpc-ann");
  await api.client.request("DELETE", objectPath(SECRET, ns, "hpc-ssh"));
  await api.client.request("DELETE", objectPath(ENGINECLUSTER, ns, "hpc-ann"));
  const warn = await waitFor("the CredentialsNotFound Warning Event", async () =>
    (await eventsOf(ns, "hpc-ann")).find((e) => e.type === "Warning" && e.reason === "CredentialsNotFound"), 60_000, 250);
  assert.match(warn.message, new RegExp(`job\\(s\\) ${id} may still be running`));
  assert.ok(await getOrUndefined(api.client, objectPath(ENGINECLUSTER, ns, "hpc-ann")), "held by its finalizer");
  await api.client.request("PATCH", objectPath(ENGINECLUSTER, ns, "hpc-ann"), {
    body: { metadata: { annotations: { "ipp.dev/abandon-jobs": "true" } } }, contentType: "application/merge-patch+json",
  });
  await waitFor("the EngineCluster to be gone", async () => ((await getOrUndefined(api.client, objectPath(ENGINECLUSTER, ns, "hpc-ann"))) === undefined ? true : undefined), 60_000, 250);
  const events = await eventsOf(ns, "hpc-ann");
  const ev = events.find((e) => e.reason === "JobsAbandoned");
  assert.ok(ev !== undefined, JSON.stringify(events.map((e) => e.reason)));
  assert.equal(ev.type, "Warning");
  assert.match(ev.message, /annotation ipp\.dev\/abandon-jobs=true is set/);
  assert.match(ev.message, new RegExp(`job\\(s\\) ${id} may still be running on ${rig.user}@`));
  assert.ok(!events.some((e) => e.message.includes("PRIVATE KEY")), "no key material in an Event");
});
