import { test } from "node:test";
import assert from "node:assert/strict";
import type { EngineClusterStatus } from "../../../src/api/engine-cluster.ts";
import { shortReason, withShortReason } from "../../../src/operator/core/reason.ts";

const t = "2026-01-01T00:00:00Z";
const ready = (status: "True" | "False", reason: string): EngineClusterStatus["conditions"] => [{ type: "Ready", status, reason, message: "m", lastTransitionTime: t }];

test("status.reason is the Ready condition's reason while not Ready, absent when Ready", () => {
  assert.equal(shortReason({ conditions: ready("False", "WorkersNotReady") }), "WorkersNotReady");
  assert.equal(shortReason({ conditions: ready("False", "ImagePullFailed") }), "ImagePullFailed");
  assert.equal(shortReason({ conditions: ready("True", "Ready") }), undefined);
  assert.equal(shortReason({}), undefined);
  assert.deepEqual(withShortReason({ phase: "Ready", reason: "Old", conditions: ready("True", "Ready") }), { phase: "Ready", conditions: ready("True", "Ready") });
  assert.equal(withShortReason({ phase: "Starting", conditions: ready("False", "EnginesRegistering") }).reason, "EnginesRegistering");
});

test("a queued or held PBS job shows the scheduler's pending reason", () => {
  const jobs = (reason?: string) => ({ jobs: [{ id: "7", role: "engines" as const, state: "Q", ...(reason !== undefined ? { reason } : {}) }] });
  assert.equal(shortReason({ conditions: ready("False", "JobQueued"), pbs: jobs("Priority") }), "JobQueued:Priority");
  assert.equal(shortReason({ conditions: ready("False", "JobQueued"), pbs: jobs("(Resources)") }), "JobQueued:Resources");
  assert.equal(shortReason({ conditions: ready("False", "JobHeld"), pbs: jobs("JobHeldUser") }), "JobHeld:JobHeldUser");
  assert.equal(shortReason({ conditions: ready("False", "JobQueued"), pbs: jobs("Not Running: Insufficient amount of resource: ncpus (R: 8 A: 4 T: 4)") }), "JobQueued:InsufficientAmountOfResource");
  assert.equal(shortReason({ conditions: ready("False", "JobQueued"), pbs: jobs() }), "JobQueued");
  assert.equal(shortReason({ conditions: ready("False", "JobRunning"), pbs: jobs("x") }), "JobRunning", "only queued/held jobs carry the scheduler's reason");
});
