/**
 * The operator with a pbs EngineCluster, against a real kube-apiserver and the real PBS rig, on
 * both schedulers (Slurm + its PBS wrappers, and OpenPBS, behind the same sshd): the controller's
 * objects are applied, the engines' job is submitted over SSH exactly once (status.pbs.jobs has
 * its id and state, Submitted is True), and deleting the EngineCluster runs qdel before the
 * finalizer is removed.
 */
import { after, before, describe, test } from "node:test";
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
import { createRigSecret, RIG_SCHEDULERS, startPbsRig, type PbsRig } from "../../support/pbs-rig.ts";
import { getOrUndefined, waitFor } from "./helpers.ts";

const logger = createLogger({ level: "error" });
type EC = KubeObject & { status?: {
  phase?: string; backend?: string;
  conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
  pbs?: { jobs?: Array<{ id: string; role: string; state: string; queue?: string; submittedAt?: string }> };
} };

for (const scheduler of RIG_SCHEDULERS) {
  describe(`the operator with a pbs cluster on ${scheduler}`, () => {
    const NS = `hpc-${scheduler}`;
    let api: ApiServer;
    let rig: PbsRig;
    let runtime: PbsOperatorRuntime;
    let op: OperatorHandle;
    const ids: string[] = [];

    before(async () => {
      rig = await startPbsRig(scheduler);
      api = await startApiServer();
      await createNamespace(api.client, NS);
      await createRigSecret(api.client, NS, rig);
      const client = api.client;
      runtime = new PbsOperatorRuntime({
        logger, metrics: createPbsMetrics(new Registry()), pollIntervalMs: 500,
        readSecret: (namespace, name) => readSecretText(client, namespace, name),
      });
      op = await startOperator({
        client: api.client, planner: corePlanner, namespace: NS, workers: 2, ownedLabelSelector: CLUSTER_LABEL, probe: false, pbs: runtime, logger,
      });
    });

    after(async () => {
      // whatever a failed test left behind: cancel its jobs by id, as the batch user
      if (ids.length > 0) await rig?.asUser(`qdel ${ids.join(" ")} 2>/dev/null || true`);
      await op?.stop();
      runtime?.close();
      await api?.stop();
      await rig?.stop();
    });

    const ecPath = (name: string) => objectPath(ENGINECLUSTER, NS, name);

    test("a pbs EngineCluster: its job is submitted once and mirrored in status; delete → qdel → finalizer removed", async () => {
      await api.client.request("POST", collectionPath(ENGINECLUSTER, NS), {
        body: {
          apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: "hpc1", namespace: NS },
          spec: {
            engines: 2,
            backend: { pbs: {
              host: rig.host, port: rig.port, user: rig.user, credentialsSecret: "hpc-ssh", dialect: "auto", queue: rig.queue, walltime: "00:05:00",
              select: "1:ncpus=2:mpiprocs=2",
              // the job only has to stay alive here: no controller pod runs without a kubelet
              setup: ["sleep 240"], network: { mode: "direct", address: "127.0.0.1" },
            } },
          },
        },
      });

      const submitted = await waitFor("the job id in status.pbs.jobs with Submitted=True", async () => {
        const ec = await api.client.request<EC>("GET", ecPath("hpc1"));
        const sub = ec.status?.conditions?.find((c) => c.type === "Submitted");
        const j = ec.status?.pbs?.jobs?.[0];
        return j !== undefined && ["Q", "R"].includes(j.state) && sub?.status === "True" ? { ec, j, sub } : undefined;
      }, 60_000, 250);
      const id = submitted.j.id;
      ids.push(id);
      assert.match(id, scheduler === "openpbs" ? /^\d+\.ipp-openpbs$/ : /^\d+$/);
      assert.equal(submitted.j.role, "engines");
      assert.equal(submitted.j.queue, rig.queue);
      assert.match(submitted.sub.reason, /^Job(Queued|Running)$/);
      assert.equal(submitted.ec.status?.backend, "pbs");
      assert.ok(submitted.ec.metadata?.finalizers?.includes("ipp.dev/finalizer"));
      // the controller's objects exist as for mpi
      for (const [kind, name] of [["Secret", "hpc1-connection"], ["Service", "hpc1-controller"]] as const) {
        assert.ok(await getOrUndefined(api.client, objectPath(resourceType("v1", kind), NS, name)), `${kind}/${name}`);
      }
      assert.ok(await getOrUndefined(api.client, objectPath(resourceType("apps/v1", "Deployment"), NS, "hpc1-controller")), "Deployment/hpc1-controller");

      // the scheduler has the job under its deterministic name, running the engines for our controller
      const q = await rig.asUser(`qstat -f ${id}`);
      const jobName = /Job_Name = (\S+)/.exec(q.stdout)?.[1] ?? "";
      assert.match(jobName ?? "", /^ipp-[0-9a-f]{5}-[0-9a-f]{5}$/);
      const running = await waitFor("the job to run", async () => {
        const ec = await api.client.request<EC>("GET", ecPath("hpc1"));
        const j = ec.status?.pbs?.jobs?.find((x) => x.id === id);
        return j?.state === "R" ? ec : undefined;
      }, 60_000, 250);
      assert.equal(running.status?.conditions?.find((c) => c.type === "Submitted")?.reason, "JobRunning");
      // several reconciles later (requeues, status writes): still one job of that name
      await new Promise((r) => setTimeout(r, 6_000));
      assert.deepEqual(await rig.liveJobs(jobName), [id], "exactly one job, never submitted twice");

      // delete: the finalizer holds the object until qdel took the job down
      await api.client.request("DELETE", ecPath("hpc1"));
      const gone = await waitFor("the EngineCluster to be gone", async () => ((await getOrUndefined(api.client, ecPath("hpc1"))) === undefined ? true : undefined), 60_000, 250);
      assert.equal(gone, true);
      assert.ok(rig.isFinished(await rig.jobState(id)), `job ${id} ended by qdel`);
      assert.ok(!(await rig.liveJobs()).includes(id), "no live job left");
    });
  });
}
