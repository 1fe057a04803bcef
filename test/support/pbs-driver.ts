/**
 * One pbs planner step against a real login host, driven through the operator's own pbs runtime
 * (PbsOperatorRuntime: observe → planPbs → submit/qdel, the calls the operator's reconciler makes),
 * without the Kubernetes side. The backend's integration tests use it; the operator's own
 * reconcile (with status writes and restarts) is tested in test/integration/operator/.
 */
import type { PbsBackend } from "../../src/api/engine-cluster.ts";
import { dialects } from "../../src/backends/pbs/core/dialects.ts";
import { planPbs, submittedRecord, type PbsJobRecord, type PbsStep } from "../../src/backends/pbs/core/plan.ts";
import { clusterTag, jobName, renderScript, type JobInput } from "../../src/backends/pbs/core/script.ts";
import type { PbsOperatorRuntime } from "../../src/backends/pbs/runtime.ts";

export interface DriverInput {
  cluster: { namespace: string; name: string; uid: string };
  engines: number;
  pbs: PbsBackend;
  engineConnection: string;
  engineArgs?: string[];
  recorded: readonly PbsJobRecord[];
  generation: number;
  observedGeneration?: number;
  deleting: boolean;
}

export interface DriverResult {
  step: PbsStep;
  jobs: PbsJobRecord[];
  name: string;
  /** qsub answered with a job that already had the name (the runtime's fresh qstat found it) */
  adopted?: boolean;
  error?: string;
}

/** The EngineCluster object the runtime reads (spec and the recorded jobs in status). */
export function clusterObject(input: DriverInput): Record<string, unknown> {
  return {
    apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster",
    metadata: { namespace: input.cluster.namespace, name: input.cluster.name, uid: input.cluster.uid, generation: input.generation },
    spec: { engines: input.engines, backend: { pbs: input.pbs } },
    status: { pbs: { jobs: input.recorded } },
  };
}

/** Never throws: failures come back in `error`, as the operator reports them. */
export async function reconcileOnce(runtime: PbsOperatorRuntime, input: DriverInput): Promise<DriverResult> {
  const job: JobInput = { engines: input.engines, pbs: input.pbs, engineConnection: input.engineConnection, ...(input.engineArgs !== undefined ? { engineArgs: input.engineArgs } : {}) };
  const name = jobName(clusterTag(input.cluster), job);
  const cluster = clusterObject(input);
  const observed = await runtime.observe(cluster);
  const dialect = "error" in observed ? dialects[input.pbs.dialect === "auto" ? "slurm" : input.pbs.dialect] : dialects[observed.dialect];
  const step = planPbs({
    pbs: input.pbs, dialect, tag: clusterTag(input.cluster), name,
    observed: "error" in observed ? { error: observed.error } : observed.jobs,
    recorded: input.recorded, generation: input.generation, deleting: input.deleting, now: new Date(),
    ...(input.observedGeneration !== undefined ? { observedGeneration: input.observedGeneration } : {}),
  });
  if ("error" in observed) return { step, jobs: step.jobs, name, error: observed.error };
  const jobs = [...step.jobs];
  let adopted: boolean | undefined;
  try {
    for (const a of step.actions) {
      if (a.type === "qdel") await runtime.qdel(cluster, a.ids);
      else {
        const script = renderScript(dialect, name, job, `${input.cluster.namespace}/${input.cluster.name}`);
        const r = await runtime.submit(cluster, name, script);
        adopted = r.adopted;
        jobs.unshift(submittedRecord(r.id, input.pbs.queue, new Date()));
      }
    }
  } catch (e) {
    return { step, jobs, name, error: (e as Error).message };
  }
  return { step, jobs, name, ...(adopted !== undefined ? { adopted } : {}) };
}
