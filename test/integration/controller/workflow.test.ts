// The seed notebook's workflow and the client features, through our controller, with 8 real
// `ipengine --mpi` under mpiexec, for ipyparallel 9.2 and 8.8. One controller + engine set per
// version, shared by the tests of that version.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startRig, type Rig } from "./harness.ts";
import type { IppMajor } from "../../support/paths.ts";

const N = 8;
const SUM = "array(496.)";

for (const major of [9, 8] as IppMajor[]) {
  describe(`ipyparallel ${major}: workflow through our controller`, { timeout: 300_000 }, () => {
    let rig: Rig;
    before(async () => {
      rig = await startRig(major);
      // ipp 9 engines read IPP_CONNECTION_INFO, ipp 8 engines the --file: both paths covered
      await rig.startEngines(N, { viaEnv: major === 9 });
      await rig.waitForEngines(N);
    });
    after(async () => {
      await rig?.stop();
    });

    test("engine ids equal MPI ranks", () => {
      assert.deepEqual(rig.controller.engines().map((e) => e.id), [0, 1, 2, 3, 4, 5, 6, 7]);
    });

    test("seed notebook: %px, scatter, psum via Allreduce", async () => {
      const r = await rig.driver("workflow.py", [String(N)]);
      assert.deepEqual(r.errors, {}, JSON.stringify(r.errors, null, 1));
      assert.deepEqual(r.ids, [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.equal(r.len_view, 8);
      assert.deepEqual(r.size, Array(8).fill(8));
      const chunks = r.scatter as number[][];
      assert.equal(chunks.length, 8);
      chunks.forEach((c, i) => assert.deepEqual(c, [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3]));
      assert.deepEqual(r.px_totalsum, Array(8).fill(SUM));
      assert.deepEqual(r.exec_totalsum, Array(8).fill(SUM));
      assert.deepEqual(r.px_cell, [0, 10, 20, 30, 40, 50, 60, 70]);
    });

    test("client features: views, results, hub queries, broadcast, dependencies, retries, reconnect", async () => {
      const r = await rig.driver("features.py", [String(N)]);
      const errors = r.errors as Record<string, string>;
      assert.deepEqual(errors, {}, Object.entries(errors).map(([k, v]) => `${k}: ${v}`).join("\n"));
      assert.deepEqual(r.push_pull, Array(8).fill(5));
      assert.deepEqual(r.scatter_gather, [...Array(20).keys()]);
      assert.equal(r.gather_array, 2016);
      assert.deepEqual(r.apply_direct, Array(8).fill(4));
      assert.deepEqual(r.map_direct, [...Array(16).keys()].map((x) => 2 * x));
      assert.equal(r.apply_lb, 42);
      assert.deepEqual(r.map_lb, [...Array(32).keys()].map((x) => x * x));
      assert.deepEqual(r.apply_lb_many, [...Array(40).keys()].map((x) => 3 * x));
      assert.deepEqual(r.wait_interactive, [...Array(8).keys()]);
      assert.deepEqual(r.remote_error, ["ZeroDivisionError"]);
      assert.equal(r.abort, "TaskAborted");
      const qs = r.queue_status as { keys: string[]; engine0: string[]; unassigned: number };
      assert.deepEqual(qs.keys, ["0", "1", "2", "3", "4", "5", "6", "7", "unassigned"]);
      assert.deepEqual(qs.engine0, ["completed", "queue", "tasks"]);
      assert.deepEqual(r.result_status, { completed: 9, pending: 0 });
      assert.deepEqual(r.db_query, { n: 9, queues: ["mux", "task"], all_completed: true, recent: true });
      assert.equal(r.hub_history, true);
      assert.deepEqual(r.reconnect, { n: 8, lb: "lb-result", direct: "int" });
      assert.equal(r.purge, 0);
      assert.deepEqual(r.broadcast, { apply: Array(8).fill(1), pulled: Array(8).fill(7), coalesced_n: 8, coalesced_unique: 8 });
      assert.deepEqual(r.dependencies, { after_ordered: true, follow_same_engine: true, impossible: "RemoteError:ImpossibleDependency" });
      assert.deepEqual(r.retries, { with_retries: "second attempt ok", without: "RuntimeError" });
      assert.equal(r.timeout, "TaskTimeout");
    });

    test("metrics saw the traffic", async () => {
      const text = await rig.registry.metrics();
      assert.match(text, /ipp_controller_engines_registered 8/);
      assert.match(text, /ipp_controller_tasks_submitted_total\{queue="task"\} [1-9]/);
      assert.match(text, /ipp_controller_messages_total\{channel="mux",direction="in"\} [1-9]/);
      assert.match(text, /ipp_controller_time_to_first_engine_seconds [0-9.]+/);
      assert.match(text, /ipp_controller_queue_depth\{engine="7"\} 0/);
    });
  });
}
