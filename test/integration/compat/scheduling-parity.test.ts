/**
 * Retries and dependencies as upstream: the same client scenarios (tasks that fail on every engine
 * with retries left, timeouts, dependencies that cannot be met now but might later) run against
 * upstream ipcontroller and against ours, with two real MPI engines; the outcomes must match.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { IppMajor } from "../../support/paths.ts";
import { makeProfile } from "./harness.ts";
import { connectionFiles, runPython, startController, startEngines } from "./controllers.ts";

async function outcomes(kind: "ours" | "upstream", major: IppMajor): Promise<Record<string, unknown>> {
  const profile = await makeProfile({ ours: kind === "ours" });
  const ctl = await startController(kind, major, profile.dir, "s");
  const engines = startEngines(major, connectionFiles(profile.dir, "s").engine, 2);
  try {
    const r = await runPython(major, "scheduling.py", [connectionFiles(profile.dir, "s").client, "2"]);
    const { durations: _d, ...rest } = r;
    return rest;
  } finally {
    await engines.stop("SIGKILL");
    await ctl.stop();
    await profile.cleanup();
  }
}

for (const major of [9, 8] as IppMajor[]) {
  test(`ipyparallel ${major}: retries and dependencies end as with upstream ipcontroller`, { timeout: 600_000 }, async () => {
    const upstream = await outcomes("upstream", major);
    const ours = await outcomes("ours", major);
    assert.deepEqual(ours, upstream);
    assert.deepEqual(ours.errors, {});
    assert.deepEqual(ours.retries_exhausted_wait, ["still waiting", "TaskTimeout"]);
    assert.equal(ours.retries_used_up, "RuntimeError");
    assert.equal(ours.after_failed, "ImpossibleDependency");
    assert.equal(ours.follow_elsewhere, "TaskTimeout");
    assert.equal(ours.after_pending_timeout, "TaskTimeout");
  });
}
