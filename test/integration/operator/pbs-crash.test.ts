/**
 * The operator's own crash adoption, against a real kube-apiserver and both real schedulers: the
 * operator (`ipp-operator operator`, a child process) is killed with SIGKILL while it creates a pbs
 * EngineCluster's job, at a random moment, and started again. Half the trials kill a random few
 * milliseconds after the operator logged the qsub's answer (just before or just after its status
 * write), which also measures how long create → qsub takes; the other half kill at a random time up
 * to 600 ms before that measured moment, so mostly while the qsub runs on the login host (the job
 * then exists and status does not name it). In every trial the restarted operator must end up with exactly one live
 * job for the cluster and that job's id in status: never a duplicate. IPP_CRASH_TRIALS sets the
 * number of trials per scheduler (default 10: 20 in all, about 6 minutes).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { clusterTag, jobPrefix } from "../../../src/backends/pbs/core/script.ts";
import { collectionPath, objectPath, ENGINECLUSTER, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { createRigSecret, RIG_SCHEDULERS, startPbsRig, type PbsRig } from "../../support/pbs-rig.ts";
import { getOrUndefined, spawnOperator, waitFor, type OperatorProcess } from "./helpers.ts";

const TRIALS = Number(process.env.IPP_CRASH_TRIALS ?? 10);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type EC = KubeObject & { metadata: { uid?: string }; status?: { pbs?: { jobs?: Array<{ id: string; state: string }> }; conditions?: Array<{ type: string; status: string; reason: string }> } };

for (const scheduler of RIG_SCHEDULERS) {
  describe(`operator crash adoption on ${scheduler}`, () => {
    const NS = `crash-${scheduler}`;
    let api: ApiServer;
    let rig: PbsRig;
    let op: OperatorProcess | undefined;
    const outcomes: Array<{ trial: number; mode: string; delayMs: number; statusHadJob: boolean; jobsAtKill: number; live: number }> = [];

    before(async () => {
      rig = await startPbsRig(scheduler);
      api = await startApiServer();
      await createNamespace(api.client, NS);
      await createRigSecret(api.client, NS, rig);
    });

    after(async () => {
      await op?.stop("SIGKILL");
      // anything a failed trial left: the batch user's jobs of these clusters
      const left = (await rig?.asUser(scheduler === "openpbs" ? `qselect -u ${rig.user}` : `squeue -h -u ${rig.user} -o %i`))?.stdout.trim();
      if (left) await rig.asUser(`qdel ${left.split(/\s+/).join(" ")} 2>/dev/null || true`);
      await api?.stop();
      await rig?.stop();
      if (outcomes.length > 0) console.log(`# crash trials on ${scheduler}: ${JSON.stringify(outcomes)}`);
    });

    const ecPath = (name: string) => objectPath(ENGINECLUSTER, NS, name);
    const liveOf = async (prefix: string): Promise<string[]> => {
      const ids = await rig.liveJobs();
      const out: string[] = [];
      for (const id of ids) {
        const q = await rig.asUser(scheduler === "openpbs" ? `qstat -f -F json ${id}` : `qstat -f ${id}`);
        const name = scheduler === "openpbs"
          ? Object.values((JSON.parse(q.stdout || "{}") as { Jobs?: Record<string, { Job_Name?: string }> }).Jobs ?? {})[0]?.Job_Name
          : /Job_Name = (\S+)/.exec(q.stdout)?.[1];
        if (name?.startsWith(prefix)) out.push(id);
      }
      return out;
    };

    test(`${TRIALS} kills at random moments around qsub and the status write: never a duplicate job`, { timeout: TRIALS * 120_000 + 60_000 }, async () => {
      op = await spawnOperator(api, ["--namespace", NS, "--workers", "2"]);
      let submitMs: number | undefined; // create → the qsub's answer, measured in after-qsub-log trials
      for (let trial = 0; trial < TRIALS; trial++) {
        const name = `crash${trial}`;
        const mode = trial % 2 === 1 && submitMs !== undefined ? "after-create" : "after-qsub-log";
        // after-qsub-log: 0-40 ms after the line the operator logs between qsub and the status write;
        // after-create: up to 600 ms before the measured create → qsub answer time
        const delayMs = mode === "after-create" ? Math.max(0, submitMs! - Math.floor(Math.random() * 600)) : Math.floor(Math.random() * 40);
        const logBefore = op.output().length;
        const createdAt = Date.now();
        const created = await api.client.request<EC>("POST", collectionPath(ENGINECLUSTER, NS), {
          body: {
            apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: NS },
            spec: { engines: 1, backend: { pbs: {
              host: rig.host, port: rig.port, user: rig.user, credentialsSecret: "hpc-ssh", dialect: "auto", queue: rig.queue, walltime: "00:05:00",
              select: "1:ncpus=1:mpiprocs=1", setup: ["sleep 280"], network: { mode: "direct", address: "127.0.0.1" },
            } } },
          },
        });
        const prefix = jobPrefix(clusterTag({ namespace: NS, name, uid: created.metadata.uid! }));
        if (mode === "after-create") await sleep(delayMs);
        else {
          const current = op;
          await waitFor("the operator to log its qsub", () => current.output().slice(logBefore).includes("pbs job submitted"), 60_000, 2);
          submitMs = Date.now() - createdAt;
          await sleep(delayMs);
        }
        await op.stop("SIGKILL");
        const atKill = await getOrUndefined<EC>(api.client, ecPath(name));
        const statusHadJob = (atKill?.status?.pbs?.jobs?.length ?? 0) > 0;
        const jobsAtKill = (await liveOf(prefix)).length;

        op = await spawnOperator(api, ["--namespace", NS, "--workers", "2"]);
        const restarted = op;
        const settled = await waitFor(`trial ${trial}: a job in status after the restart`, async () => {
          const ec = await getOrUndefined<EC>(api.client, ecPath(name));
          const j = ec?.status?.pbs?.jobs?.find((x) => ["Q", "R", "H"].includes(x.state));
          return j !== undefined && ec?.status?.conditions?.some((c) => c.type === "Submitted" && c.status === "True") ? j : undefined;
        }, 90_000, 200);
        // a few more reconciles (requeues, status writes, polls) must not add a job
        await sleep(3_000);
        const live = await liveOf(prefix);
        outcomes.push({ trial, mode, delayMs, statusHadJob, jobsAtKill, live: live.length });
        assert.deepEqual(live, [settled.id], `trial ${trial} (${mode}, ${delayMs} ms): exactly one live job, the one in status\n${restarted.output().slice(-2000)}`);

        // delete: the restarted operator qdels it and removes the finalizer
        await api.client.request("DELETE", ecPath(name));
        await waitFor(`trial ${trial}: the EngineCluster to be gone`, async () => ((await getOrUndefined(api.client, ecPath(name))) === undefined ? true : undefined), 90_000, 200);
        await waitFor(`trial ${trial}: no live job left`, async () => ((await liveOf(prefix)).length === 0 ? true : undefined), 60_000, 500);
      }
      // the trials did hit the window that matters: the job existed while status did not name it
      const inWindow = outcomes.filter((o) => o.jobsAtKill > 0 && !o.statusHadJob).length;
      console.log(`# ${scheduler}: ${outcomes.length} trials, ${inWindow} killed between qsub and the status write, ${outcomes.filter((o) => o.jobsAtKill === 0).length} before qsub, ${outcomes.filter((o) => o.statusHadJob).length} after the status write`);
    });
  });
}
