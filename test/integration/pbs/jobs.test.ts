/**
 * The pbs backend end to end on the real rig, against both real schedulers: Slurm behind its PBS
 * wrappers, and OpenPBS (PBS Professional's open-source release). Driven through the operator's own
 * pbs runtime (observe → plan → qsub/qdel). A job submitted over SSH with select (ncpus/mpiprocs)
 * runs `mpiexec -n 4 ipengine --mpi` on the "compute node" as the batch user, the engines register
 * with our controller (direct networking on 127.0.0.1), an ipyparallel 9.2 client computes
 * psum = 496 on every engine, and qdel removes the job. Also: a held job's pending reason; a job
 * killed at its walltime is seen as such and resubmitted; a replay after a crash between qsub and
 * the status write adopts the job instead of submitting twice; shell metacharacters never reach
 * the remote shell unquoted.
 */
import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Registry } from "prom-client";
import { PbsBackend } from "../../../src/api/engine-cluster.ts";
import { dialects } from "../../../src/backends/pbs/core/dialects.ts";
import { renderScript, ScriptError } from "../../../src/backends/pbs/core/script.ts";
import { PbsHost } from "../../../src/backends/pbs/host.ts";
import { PbsOperatorRuntime } from "../../../src/backends/pbs/runtime.ts";
import { startController, type ControllerHandle } from "../../../src/controller/controller.ts";
import { writeConnectionFiles } from "../../../src/controller/connection-files.ts";
import { createPbsMetrics } from "../../../src/metrics/operator.ts";
import { createLogger } from "../../../src/util/log.ts";
import { python } from "../../support/paths.ts";
import { reconcileOnce, type DriverInput } from "../../support/pbs-driver.ts";
import { RIG_SCHEDULERS, startPbsRig, type PbsRig } from "../../support/pbs-rig.ts";

const run = promisify(execFile);
const logger = createLogger({ level: "error" });
const ENGINES = 4;
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

for (const scheduler of RIG_SCHEDULERS) {
  describe(`pbs backend on ${scheduler}`, () => {
    let rig: PbsRig;
    let runtime: PbsOperatorRuntime;
    let controller: ControllerHandle;
    let dir: string;
    const submittedIds: string[] = [];
    const uid = (what: string) => `uid-${what}-${process.pid}-${Date.now()}`;

    before(async () => {
      rig = await startPbsRig(scheduler);
      runtime = new PbsOperatorRuntime({
        logger, metrics: createPbsMetrics(new Registry()), pollIntervalMs: 500, connectWaitMs: 15_000,
        readSecret: async () => ({ "ssh-privatekey": rig.privateKey, known_hosts: rig.knownHosts }),
      });
      controller = await startController({ ip: "127.0.0.1", key: `pbs-${process.pid}-${Date.now()}`, heartbeatPeriodMs: 1000, taskScheme: "leastload", shutdownDelayMs: -1 },
        { logger, registry: new Registry() });
      dir = mkdtempSync(join(tmpdir(), "ipp-pbs-"));
    });

    after(async () => {
      // whatever a failed test left behind: cancel our jobs by id, as the batch user
      if (submittedIds.length > 0) await rig?.asUser(`qdel ${submittedIds.join(" ")} 2>/dev/null || true`);
      runtime?.close();
      await controller?.stop();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      await rig?.stop();
    });

    function spec(extra: Record<string, unknown> = {}) {
      // the batch user's own virtualenv on the rig: the checkout may be out of its reach
      return PbsBackend.parse({
        host: rig.host, port: rig.port, user: rig.user, credentialsSecret: "hpc-ssh", dialect: "auto", queue: rig.queue, walltime: "00:10:00",
        select: `1:ncpus=${ENGINES}:mpiprocs=${ENGINES}`,
        setup: [`source ${join(rig.venv, "bin", "activate")}`, "export OMPI_MCA_btl=self,vader,tcp", ...rig.mpiSetup],
        network: { mode: "direct", address: "127.0.0.1" }, ...extra,
      });
    }
    const input = (name: string, pbs: PbsBackend, engines = ENGINES, engineConnection = "{}"): DriverInput => ({
      cluster: { namespace: "default", name, uid: uid(name) }, engines, pbs, engineConnection, recorded: [], generation: 1, observedGeneration: 1, deleting: false,
    });

    test("select with ncpus/mpiprocs and place → 4 MPI engines register with our controller → psum = 496 → qdel removes it", async () => {
      const inp = input("psum", spec({ extraDirectives: ["-l place=pack"] }), ENGINES, JSON.stringify(controller.engineConnection));
      const first = await reconcileOnce(runtime, inp);
      assert.equal(first.error, undefined);
      assert.deepEqual(first.step.actions, [{ type: "submit", name: first.name }]);
      assert.equal(first.jobs.length, 1);
      const id = first.jobs[0]!.id;
      submittedIds.push(id);
      assert.match(id, scheduler === "openpbs" ? /^\d+\.ipp-openpbs$/ : /^\d+$/);
      assert.deepEqual(await rig.liveJobs(first.name), [id]);

      // the next reconcile mirrors the scheduler's state and submits nothing
      const second = await until("the job to run", async () => {
        const r = await reconcileOnce(runtime, { ...inp, recorded: first.jobs });
        assert.deepEqual(r.step.actions, []);
        return r.jobs[0]?.state === "R" ? r : undefined;
      }, 120_000);
      assert.equal(second.step.submitted.reason, "JobRunning");
      assert.ok(second.jobs[0]!.startedAt);

      await until("4 engines", async () => (controller.engines().filter((e) => e.alive).length >= ENGINES ? true : undefined), 180_000);
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
      const out = await run(python(9), ["-c", code, files.client], { timeout: 180_000 });
      const r = JSON.parse(out.stdout) as { ids: number[]; totalsum: number[]; size: number[] };
      assert.equal(r.ids.length, ENGINES);
      assert.deepEqual(r.totalsum, [496, 496, 496, 496]);
      assert.deepEqual(r.size, [4, 4, 4, 4], "one MPI world of 4 ranks");

      // delete: qdel, then done once qstat no longer lists it as live
      const del = await reconcileOnce(runtime, { ...inp, recorded: second.jobs, deleting: true });
      assert.deepEqual(del.step.actions, [{ type: "qdel", ids: [id], why: "deleting" }]);
      const done = await until("the job to end", async () => {
        const d = await reconcileOnce(runtime, { ...inp, recorded: del.jobs, deleting: true });
        return d.step.done ? d : undefined;
      }, 60_000);
      assert.equal(done.jobs.find((j) => j.id === id)?.state, scheduler === "openpbs" ? "F" : "C");
      assert.ok(rig.isFinished(await rig.jobState(id)), "qdel ended the job");
      await until("engines to unregister", async () => (controller.engines().filter((e) => e.alive).length === 0 ? true : undefined), 60_000);
    });

    test("a held job: status carries the scheduler's pending reason; released, it runs", async () => {
      const inp = input("held", spec({ select: "1:ncpus=1:mpiprocs=1", setup: ["sleep 300"], walltime: "00:05:00" }), 1);
      // a hold only keeps a job from starting: keep it queued until it is held
      await rig.setScheduling(false);
      let id: string;
      let first;
      try {
        first = await reconcileOnce(runtime, inp);
        assert.equal(first.error, undefined);
        id = first.jobs[0]!.id;
        submittedIds.push(id);
        const hold = await rig.asUser(`qhold ${id}`);
        assert.equal(hold.code, 0, `qhold: ${hold.stdout}`);
      } finally {
        await rig.setScheduling(true);
      }
      const held = await until("the hold in status", async () => {
        const r = await reconcileOnce(runtime, { ...inp, recorded: first.jobs });
        const reason = r.jobs.find((j) => j.id === id)?.reason ?? "";
        return /held/i.test(reason) || /Held/.test(r.step.submitted.reason) ? r : undefined;
      }, 60_000);
      assert.deepEqual(held.step.actions, [], "nothing submitted while the job is held");
      assert.equal(held.step.phase, "Queued");
      assert.match(held.step.submitted.message, new RegExp(`job ${id.replace(/\./g, "\\.")} \\(${held.name}\\) is (held|queued)`));
      assert.match(held.step.submitted.message, /held/i, "the pending reason is in the condition");
      await rig.asUser(`qrls ${id}`);
      await until("the released job to run", async () => ((await reconcileOnce(runtime, { ...inp, recorded: held.jobs })).jobs.find((j) => j.id === id)?.state === "R" ? true : undefined), 120_000);
      await rig.asUser(`qdel ${id}`);
    });

    test("a job killed at its walltime is seen as such and resubmitted", { timeout: 300_000 }, async () => {
      // OpenPBS checks limits about every 10 s; Slurm's limits are whole minutes
      const walltime = scheduler === "openpbs" ? "00:00:05" : "00:01:00";
      const inp = input("wall", spec({ select: "1:ncpus=1:mpiprocs=1", setup: ["sleep 600"], walltime }), 1);
      const first = await reconcileOnce(runtime, inp);
      assert.equal(first.error, undefined);
      const id = first.jobs[0]!.id;
      submittedIds.push(id);
      let recorded = first.jobs;
      const resubmitted = await until("the walltime resubmit", async () => {
        const r = await reconcileOnce(runtime, { ...inp, recorded });
        recorded = r.jobs;
        for (const j of r.jobs) if (!submittedIds.includes(j.id)) submittedIds.push(j.id);
        return r.step.events.some((e) => e.reason === "WalltimeResubmit") ? r : undefined;
      }, 240_000);
      const old = resubmitted.jobs.find((j) => j.id === id)!;
      assert.equal(old.reason, "walltime");
      assert.deepEqual(resubmitted.step.actions, [{ type: "submit", name: resubmitted.name }]);
      const fresh = resubmitted.jobs[0]!;
      assert.notEqual(fresh.id, id, "a new job");
      assert.deepEqual(await rig.liveJobs(resubmitted.name), [fresh.id]);
      if (scheduler === "openpbs") {
        // qstat -x keeps the finished job with the walltime kill's exit status
        const q = JSON.parse((await rig.asUser(`qstat -x -f -F json ${id}`)).stdout) as { Jobs: Record<string, { Exit_status?: number }> };
        assert.equal(Object.values(q.Jobs)[0]?.Exit_status, -29);
      }
      await rig.asUser(`qdel ${fresh.id}`);
    });

    test("crash after qsub: replaying the reconcile with the status write lost adopts the job, never submits twice", async () => {
      const inp = input("replay", spec({ select: "1:ncpus=1:mpiprocs=1", setup: ["sleep 120"], walltime: "00:05:00" }), 1);
      const first = await reconcileOnce(runtime, inp);
      assert.equal(first.error, undefined);
      const id = first.jobs[0]!.id;
      submittedIds.push(id);
      // the operator "crashed": status never got the id; replay twice with nothing recorded
      for (let i = 0; i < 2; i++) {
        const replay = await reconcileOnce(runtime, inp);
        assert.equal(replay.error, undefined);
        assert.deepEqual(replay.step.actions, [], "no qsub on replay");
        assert.equal(replay.jobs[0]?.id, id);
        assert.deepEqual(replay.step.events.map((e) => e.reason), ["JobAdopted"]);
      }
      assert.deepEqual(await rig.liveJobs(first.name), [id], "exactly one job with the name");
      const del = await reconcileOnce(runtime, { ...inp, deleting: true });
      assert.deepEqual(del.step.actions, [{ type: "qdel", ids: [id], why: "deleting" }]);
    });

    test("shell metacharacters never reach the remote shell unquoted", async () => {
      const marker = `${rig.home}/injected-${process.pid}`;
      const absent = async () => (await rig.asUser(`test -e ${marker} && echo present || echo absent`)).stdout.trim();
      const d = dialects[rig.dialect];
      // a spec that bypassed the schema (as if the API server's validation were off): the runtime
      // refuses it, and the script renderer refuses it again
      const evil = { ...spec(), setup: [`source x; touch ${marker}`], queue: `batch;touch ${marker}` } as PbsBackend;
      const r = await reconcileOnce(runtime, { ...input("evil", evil, 1), engineConnection: `'; touch ${marker}; '` });
      assert.match(r.error ?? "", /not a valid pbs EngineCluster/);
      assert.equal(r.jobs.length, 0);
      assert.throws(() => renderScript(d, "ipp-aaaaa-bbbbb", { engines: 1, pbs: evil, engineConnection: "{}" }, "default/evil"), ScriptError);
      // ids and names reaching qdel/qsub must be plain words: Slurm's qsub wrapper runs its sbatch line
      // through a shell again, so quoting for the login shell alone would not be enough
      const host = new PbsHost({ host: rig.host, port: rig.port, user: rig.user, privateKey: rig.privateKey, knownHosts: rig.knownHosts }, { logger });
      try {
        assert.ok(await host.link.waitConnected(15_000));
        for (const bad of [`1;touch ${marker}`, `$(touch ${marker})`]) await assert.rejects(host.qdel(d, [bad]), /not a plain word/);
        await assert.rejects(host.submit(d, `x$(touch ${marker})`, "#!/bin/bash\ntrue\n"), /not a plain word/);
      } finally {
        host.close();
      }
      // the connection info is data inside the rendered job script: quoted, never executed
      const quoted = input("quoted", spec({ select: "1:ncpus=1:mpiprocs=1", walltime: "00:02:00" }), 1, `'; touch ${marker}; echo '$(touch ${marker})`);
      const job = await reconcileOnce(runtime, quoted);
      assert.equal(job.error, undefined);
      const jid = job.jobs[0]!.id;
      submittedIds.push(jid);
      await until("the quoted job to finish", async () => (rig.isFinished(await rig.jobState(jid)) ? true : undefined), 120_000);
      await sleep(2000);
      assert.equal(await absent(), "absent");
    });
  });
}
