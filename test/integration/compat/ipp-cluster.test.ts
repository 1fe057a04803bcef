/**
 * ipp.Cluster with the controller launcher pointed at `ipp-operator controller` (one line in the
 * profile's ipcluster_config.py): start_and_connect_sync with MPI engines, the seed notebook's
 * workflow, stop_engines_sync / start_engines_sync / restart_engines_sync, then a second Python
 * process reattaching with ipp.Cluster.from_file and stopping everything with stop_cluster_sync.
 * Against ipyparallel 9.2 (8 engines) and 8.8 (4 engines).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BIN, makeProfile, reap, requireMpiexec, runDriver, type IppMajor } from "./harness.ts";

const expectedWorkflow = (n: number) => ({
  ids: Array.from({ length: n }, (_, i) => i),
  mpi_size: Array(n).fill(n),
  mpi_ranks: Array.from({ length: n }, (_, i) => i),
  totalsum: Array(n).fill(((4 * n) * (4 * n - 1)) / 2),
  lb_map: Array.from({ length: 16 }, (_, i) => 2 * i),
  gather: Array.from({ length: 4 * n }, (_, i) => i),
});

function checkWorkflow(line: Record<string, unknown>, n: number, what: string) {
  const exp = expectedWorkflow(n);
  assert.deepEqual(line.ids, exp.ids, `${what}: engine ids`);
  assert.deepEqual(line.mpi_size, exp.mpi_size, `${what}: one MPI_COMM_WORLD of ${n}`);
  assert.deepEqual(line.mpi_ranks, exp.mpi_ranks, `${what}: ranks`);
  assert.deepEqual(line.totalsum, exp.totalsum, `${what}: psum on every engine`);
  assert.deepEqual(line.totalsum_exec, exp.totalsum, `${what}: psum via execute`);
  assert.deepEqual(line.lb_map, exp.lb_map, `${what}: load-balanced map`);
  assert.deepEqual(line.gather, exp.gather, `${what}: gather`);
  assert.deepEqual((line.a as number[][]).flat(), exp.gather, `${what}: scatter`);
}

for (const [major, n] of [[9, 8], [8, 4]] as Array<[IppMajor, number]>) {
  test(`ipyparallel ${major}: ipp.Cluster runs our controller through its launcher, from start to stop_cluster`, { timeout: 600_000 }, async () => {
    requireMpiexec();
    const profile = await makeProfile({ ours: true });
    const clusterId = `compat${major}-${process.pid}`;
    const params = { profile_dir: profile.dir, cluster_id: clusterId, n, engines: "mpi", stop_restart: true, timeout: 120 };
    let pids: Array<[number, number]> = [];
    try {
      const start = await runDriver(major, "start", params, 420_000);
      pids = start.pids;
      const started = start.step("start_and_connect_sync");
      assert.deepEqual(started.controller_cmd, [BIN, "controller"], "the launcher ran bin/ipp-operator controller");
      const files = started.files as Record<string, { mode: string; data: Record<string, unknown> } | null>;
      for (const kind of ["client", "engine"]) {
        assert.ok(files[kind], `${kind} file written where the launcher looks`);
        assert.equal(files[kind]!.mode, "0o600", `${kind} file mode`);
      }
      checkWorkflow(start.step("workflow"), n, "first start");
      assert.deepEqual(start.step("stop_engines_sync").ids_after_stop, [], "stopped engines unregister");
      checkWorkflow(start.step("workflow_after_start"), n, "after start_engines");
      const restarted = start.step("restart_engines_sync");
      assert.equal(restarted.new_engines, true, "restart_engines replaced every engine");
      checkWorkflow(start.step("workflow_after_restart"), n, "after restart_engines");
      assert.equal(start.code, 0, start.stderr.slice(-2000));

      const attach = await runDriver(major, "attach", params, 180_000);
      const att = attach.step("from_file");
      assert.equal(att.controller_pid, started.controller_pid, "from_file found the running controller");
      checkWorkflow(attach.step("workflow"), n, "reattached with from_file");
      const stopped = attach.step("stop_cluster_sync");
      assert.equal(stopped.controller_alive, false, "stop_cluster stopped our controller");
      assert.deepEqual(stopped.files, { client: null, engine: null }, "connection files removed on a clean exit");
      assert.equal(stopped.cluster_file_exists, false);
      assert.equal(attach.code, 0, attach.stderr.slice(-2000));
    } finally {
      const killed = await reap(pids);
      await profile.cleanup();
      assert.deepEqual(killed, [], "every process the cluster started exited by itself");
    }
  });
}

