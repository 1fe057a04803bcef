/**
 * rc.become_dask() and rc.stop_distributed() through our controller with real ipyparallel 9.2
 * engines (dask.distributed from PyPI in the 9.x venv): the hub starts the scheduler in a Python
 * helper process, the engines join it as workers, a small Dask computation runs, the scheduler
 * stops and can be started again.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { makeProfile } from "./harness.ts";
import { connectionFiles, runPython, startController, startEngines } from "./controllers.ts";

test("ipyparallel 9: become_dask runs a Dask computation on the engines; stop_distributed stops it", { timeout: 300_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  const ctl = await startController("ours", 9, profile.dir, "d");
  const engines = startEngines(9, connectionFiles(profile.dir, "d").engine, 2);
  try {
    const r = await runPython(9, "dask_flow.py", [connectionFiles(profile.dir, "d").client, "2"]);
    assert.deepEqual(r.errors, {}, JSON.stringify(r.errors));
    assert.deepEqual(r.become_dask, { workers: 2, address_is_tcp: true });
    assert.deepEqual(r.compute, { sum_squares: 285, bag_sum: 5050 });
    assert.equal(r.stop_distributed, true);
    assert.equal(r.again, 2);
    assert.match(ctl.output(), /stopping the dask.distributed scheduler/);
  } finally {
    await engines.stop("SIGKILL");
    await ctl.stop();
    await profile.cleanup();
  }
});
