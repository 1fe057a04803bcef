/**
 * The pbs backend end to end on the real rig: a job submitted over SSH runs
 * `mpiexec -n 4 ipengine --mpi` on the "compute node" as the batch user, the engines register with
 * our controller (direct networking on 127.0.0.1), an ipyparallel 9.2 client computes psum = 496
 * on every engine, and qdel removes the job. Also: a replay after a crash between qsub and the
 * status write adopts the job instead of submitting twice, and shell metacharacters never reach
 * the remote shell unquoted.
 */
import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { Registry } from "prom-client";
import { PbsBackend } from "../../../src/api/engine-cluster.ts";
import { dialects } from "../../../src/backends/pbs/core/dialects.ts";
import { PbsHost, reconcilePbs, type PbsReconcileInput } from "../../../src/backends/pbs/host.ts";
import { startController, type ControllerHandle } from "../../../src/controller/controller.ts";
import { writeConnectionFiles } from "../../../src/controller/connection-files.ts";
import { createPbsMetrics } from "../../../src/metrics/operator.ts";
import { createLogger } from "../../../src/util/log.ts";
import { python } from "../../support/paths.ts";
import { startPbsRig, type PbsRig } from "../../support/pbs-rig.ts";

const run = promisify(execFile);
const logger = createLogger({ level: "error" });
const ENGINES = 4;
let rig: PbsRig;
let host: PbsHost;
let controller: ControllerHandle;
let dir: string;
const registry = new Registry();
const submittedIds: string[] = [];

before(async () => {
  rig = await startPbsRig();
  host = new PbsHost({ host: rig.host, port: rig.port, user: rig.user, privateKey: rig.privateKey, knownHosts: rig.knownHosts },
    { logger, metrics: createPbsMetrics(registry), pollIntervalMs: 500 });
  assert.ok(await host.link.waitConnected(15_000), `ssh: ${host.link.lastError}`);
  controller = await startController({ ip: "127.0.0.1", key: `pbs-${process.pid}-${Date.now()}`, heartbeatPeriodMs: 1000, taskScheme: "leastload", shutdownDelayMs: -1 },
    { logger, registry: new Registry() });
  dir = mkdtempSync(join(tmpdir(), "ipp-pbs-"));
});

after(async () => {
  // whatever a failed test left behind: cancel our jobs by id, as the batch user
  if (submittedIds.length > 0) await rig.asUser(`qdel ${submittedIds.join(" ")} 2>/dev/null || true`);
  host?.close();
  await controller?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  await rig?.stop();
});

function spec(extra: Record<string, unknown> = {}) {
  // the batch user's own virtualenv on the rig: the checkout may be out of its reach
  const venvActivate = join(rig.venv, "bin", "activate");
  return PbsBackend.parse({
    host: rig.host, port: rig.port, user: rig.user, credentialsSecret: "hpc-ssh", dialect: "auto", queue: rig.queue, walltime: "00:10:00",
    nodes: 1, ppn: ENGINES, setup: [`source ${venvActivate}`, "export OMPI_MCA_btl=self,vader,tcp"],
    network: { mode: "direct", address: "127.0.0.1" }, ...extra,
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

test("submit → qstat shows it → 4 MPI engines register with our controller → psum = 496 → qdel removes it", async () => {
  const input: PbsReconcileInput = {
    cluster: { namespace: "default", name: "psum", uid: `uid-${process.pid}-${Date.now()}` }, engines: ENGINES, pbs: spec(),
    engineConnection: JSON.stringify(controller.engineConnection), recorded: [], generation: 1, observedGeneration: 1, deleting: false,
  };
  const first = await reconcilePbs(host, input, logger);
  assert.equal(first.error, undefined);
  assert.deepEqual(first.step.actions, [{ type: "submit", name: first.name }]);
  assert.equal(first.jobs.length, 1);
  const id = first.jobs[0]!.id;
  submittedIds.push(id);
  assert.match(id, /^\d+$/);

  // qstat (through the wrapper, as the batch user) lists it under its deterministic name
  const q = await rig.asUser(`qstat -f ${id}`);
  assert.match(q.stdout, new RegExp(`Job_Name = ${first.name}`));

  // the next reconcile mirrors the scheduler's state and submits nothing
  const second = await until("the job to run", async () => {
    const r = await reconcilePbs(host, { ...input, recorded: first.jobs }, logger);
    assert.deepEqual(r.step.actions, []);
    return r.jobs[0]?.state === "R" ? r : undefined;
  }, 60_000);
  assert.equal(second.step.submitted.reason, "JobRunning");
  assert.ok(second.jobs[0]!.startedAt);

  await until("4 engines", async () => (controller.engines().filter((e) => e.alive).length >= ENGINES ? true : undefined), 120_000);
  const files = await writeConnectionFiles(dir, controller.clientConnection, controller.engineConnection);
  const code = [
    "import json, sys, numpy as np, ipyparallel as ipp",
    "rc = ipp.Client(sys.argv[1], timeout=30); rc.wait_for_engines(4, timeout=60)",
    "v = rc[:]; v.block = True",
    "v.execute('from mpi4py import MPI; import numpy as np')",
    "def psum(a):\n    from mpi4py import MPI\n    import numpy as np\n    s = np.array(0.0, 'd'); MPI.COMM_WORLD.Allreduce([np.sum(a), MPI.DOUBLE], [s, MPI.DOUBLE], op=MPI.SUM); return s",
    "v.scatter('a', np.arange(32, dtype=float)); v.push(dict(psum=psum))",
    "v.execute('totalsum = psum(a); size = MPI.COMM_WORLD.Get_size()')",
    "print(json.dumps({'ids': rc.ids, 'totalsum': [float(x) for x in v['totalsum']], 'size': v['size']})); rc.close()",
  ].join("\n");
  const out = await run(python(9), ["-c", code, files.client], { timeout: 120_000 });
  const r = JSON.parse(out.stdout) as { ids: number[]; totalsum: number[]; size: number[] };
  assert.equal(r.ids.length, ENGINES);
  assert.deepEqual(r.totalsum, [496, 496, 496, 496]);
  assert.deepEqual(r.size, [4, 4, 4, 4], "one MPI world of 4 ranks");

  // delete: qdel, then done once qstat no longer lists it as live
  const del = await reconcilePbs(host, { ...input, recorded: second.jobs, deleting: true }, logger);
  assert.deepEqual(del.step.actions, [{ type: "qdel", ids: [id], why: "deleting" }]);
  const done = await until("the job to end", async () => {
    const d = await reconcilePbs(host, { ...input, recorded: del.jobs, deleting: true }, logger);
    return d.step.done ? d : undefined;
  }, 30_000);
  assert.equal(done.jobs.find((j) => j.id === id)?.state, "C");
  const q2 = await rig.asUser(`qstat ${id}`);
  assert.match(q2.stdout, new RegExp(`^${id}\\s.*\\sC\\s`, "m"));
  await until("engines to unregister", async () => (controller.engines().filter((e) => e.alive).length === 0 ? true : undefined), 60_000);
});

test("crash after qsub: replaying the reconcile with the status write lost adopts the job, never submits twice", async () => {
  const input: PbsReconcileInput = {
    cluster: { namespace: "default", name: "replay", uid: `uid-r-${process.pid}-${Date.now()}` }, engines: 1,
    pbs: spec({ nodes: undefined, ppn: undefined, setup: ["sleep 120"], walltime: "00:05:00" }),
    engineConnection: "{}", recorded: [], generation: 1, observedGeneration: 1, deleting: false,
  };
  const first = await reconcilePbs(host, input, logger);
  assert.equal(first.error, undefined);
  const id = first.jobs[0]!.id;
  submittedIds.push(id);
  // the operator "crashed": status never got the id; replay twice with nothing recorded
  for (let i = 0; i < 2; i++) {
    const replay = await reconcilePbs(host, input, logger);
    assert.equal(replay.error, undefined);
    assert.deepEqual(replay.step.actions, [], "no qsub on replay");
    assert.equal(replay.jobs[0]?.id, id);
    assert.deepEqual(replay.step.events.map((e) => e.reason), ["JobAdopted"]);
  }
  const mine = await rig.asUser(`qstat -f | grep -c "Job_Name = ${first.name}"`);
  assert.equal(mine.stdout.trim(), "1", "exactly one job with the name");
  const del = await reconcilePbs(host, { ...input, deleting: true }, logger);
  assert.deepEqual(del.step.actions, [{ type: "qdel", ids: [id], why: "deleting" }]);
});

test("shell metacharacters never reach the remote shell unquoted", async () => {
  const marker = `${rig.home}/injected-${process.pid}`;
  const absent = async () => (await rig.asUser(`test -e ${marker} && echo present || echo absent`)).stdout.trim();
  const d = dialects.slurm;
  // a spec that bypassed the schema (as if the API server's validation were off): refused before any qsub
  const evil = { ...spec(), setup: [`source x; touch ${marker}`], queue: `batch;touch ${marker}` };
  const r = await reconcilePbs(host, {
    cluster: { namespace: "default", name: "evil", uid: `uid-e-${process.pid}` }, engines: 1, pbs: evil,
    engineConnection: `'; touch ${marker}; '`, recorded: [], generation: 1, observedGeneration: 1, deleting: false,
  }, logger);
  assert.match(r.error ?? "", /not shell-safe/);
  assert.equal(r.jobs.length, 0);
  // ids and names reaching qdel/qsub are quoted words: the wrapper gets them as literals
  // ids and names reaching qdel/qsub must be plain words: Slurm's qsub wrapper runs its sbatch line
  // through a shell again, so quoting for the login shell alone would not be enough
  for (const bad of [`1;touch ${marker}`, `$(touch ${marker})`]) {
    await assert.rejects(host.qdel(d, [bad]), /not a plain word/);
  }
  await assert.rejects(host.submit(d, `x$(touch ${marker})`, "#!/bin/bash\ntrue\n"), /not a plain word/);
  // the connection info is data inside the rendered job script: quoted, never executed
  const quoted = spec({ nodes: undefined, ppn: undefined, walltime: "00:02:00" });
  const job = await reconcilePbs(host, {
    cluster: { namespace: "default", name: "quoted", uid: `uid-q-${process.pid}-${Date.now()}` }, engines: 1, pbs: quoted,
    engineConnection: `'; touch ${marker}; echo '$(touch ${marker})`, recorded: [], generation: 1, observedGeneration: 1, deleting: false,
  }, logger);
  assert.equal(job.error, undefined);
  const jid = job.jobs[0]!.id;
  submittedIds.push(jid);
  await until("the quoted job to finish", async () => ((await rig.asUser(`qstat ${jid}`)).stdout.match(new RegExp(`^${jid}\\s.*\\sC\\s`, "m")) ? true : undefined), 60_000);
  await sleep(2000);
  assert.equal(await absent(), "absent");
});
