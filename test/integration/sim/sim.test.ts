// The engine simulator (bench/sim/) against our controller: an unmodified ipyparallel 9.2 client
// gets the same client-visible results from simulated engines as from real ones, and 64 simulated
// engines carry the whole smoke workload (rc.ids, DirectView.apply, execute, LoadBalancedView.map,
// BroadcastView, queue_status).
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { startRig, type Rig } from "../controller/harness.ts";
import { readEngineConnection, startSimCluster, type SimCluster } from "../../../bench/sim/cluster.ts";
import { REPO_ROOT, python } from "../../support/paths.ts";

const WORKLOAD = join(REPO_ROOT, "bench/sim/workload_smoke.py");

function runWorkload(rig: Rig, n: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(python(9), [WORKLOAD, rig.clientFile, String(n)], { timeout: 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`workload failed: ${String(err)}\n${stderr.slice(-4000)}`));
      resolve(JSON.parse(stdout.trim().split("\n").pop()!) as Record<string, unknown>);
    });
  });
}

describe("engine simulator", { timeout: 900_000 }, () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  async function simRig(n: number): Promise<{ rig: Rig; sim: SimCluster }> {
    const rig = await startRig(9);
    cleanup.push(() => rig.stop());
    const sim = await startSimCluster({ conn: readEngineConnection(rig.engineFile), engines: n, registrationTimeoutMs: 60_000 });
    cleanup.push(() => sim.stop());
    await sim.waitRegistered(n, 120_000);
    await rig.waitForEngines(n, 120_000);
    return { rig, sim };
  }

  test("8 simulated engines give the client the same results as 8 real ipengines", async () => {
    const real = await startRig(9);
    cleanup.push(() => real.stop());
    await real.startEngines(8);
    await real.waitForEngines(8);
    const fromReal = await runWorkload(real, 8);
    const { rig } = await simRig(8);
    const fromSim = await runWorkload(rig, 8);
    assert.deepEqual(fromSim, fromReal);
    assert.equal(fromReal.ids, true);
  });

  test("64 simulated engines: rc.ids, DirectView.apply, execute, map, BroadcastView and queue_status", async () => {
    const n = 64;
    const { rig, sim } = await simRig(n);
    const r = await runWorkload(rig, n);
    const nones = Array.from({ length: n }, () => null);
    assert.equal(r.ids, true);
    assert.deepEqual(r.direct_apply, nones);
    assert.equal(r.direct_engine_ids, true);
    assert.deepEqual(r.direct_status, ["ok"]);
    assert.deepEqual(r.execute_status, ["ok"]);
    assert.deepEqual(r.lb_map, [4 * n, ["None"]]);
    assert.equal(r.lb_engines_used, true);
    assert.deepEqual(r.broadcast, nones);
    assert.deepEqual(r.broadcast_coalescing, nones);
    assert.equal(r.queue_status_keys, true);
    assert.equal(r.queue_status_idle, true);
    assert.equal(r.single_apply, null);
    // every request reached a simulated engine: n direct + n execute + 4n map + 2n broadcast + 1
    const { handled } = await sim.stats();
    assert.equal(handled.apply_request, n + 4 * n + 2 * n + 1);
    assert.equal(handled.execute_request, n);
    // the hub's per-engine completed counts cover direct and load-balanced work, not broadcasts
    assert.equal(r.completed_total, n + n + 4 * n);
  });
});
