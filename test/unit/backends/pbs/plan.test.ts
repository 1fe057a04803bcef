import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { dialects, type QstatJob } from "../../../../src/backends/pbs/core/dialects.ts";
import { planPbs, submittedRecord, type PbsJobRecord, type PbsStepInput } from "../../../../src/backends/pbs/core/plan.ts";

const NOW = new Date("2026-11-26T12:10:00Z");
const TAG = "abcde";
const NAME = "ipp-abcde-11111";

const job = (id: string, name: string, state: string, extra: Partial<QstatJob> = {}): QstatJob => ({
  id, name, state, owner: "ipphpc", queue: "batch",
  phase: state === "C" ? "completed" : state === "R" ? "running" : state === "H" ? "held" : "queued",
  submittedAt: "2026-11-26T12:00:00Z", ...extra,
});

const input = (over: Partial<PbsStepInput>): PbsStepInput => ({
  pbs: { user: "ipphpc", walltime: "00:05:00", resubmitOnWalltime: true },
  dialect: dialects.slurm, tag: TAG, name: NAME, observed: [], recorded: [], generation: 1, observedGeneration: 1, deleting: false, now: NOW, ...over,
});

test("first reconcile: nothing in qstat → submit", () => {
  const s = planPbs(input({ observed: [job("3", "someone-else", "R", { owner: "bob" })] }));
  assert.deepEqual(s.actions, [{ type: "submit", name: NAME }]);
  assert.equal(s.phase, "Submitting");
  assert.deepEqual(s.jobs, []);
  assert.equal(s.submitted.reason, "Submitting");
});

test("crash after qsub: the job is in qstat but not in status → adopted, no second submit", () => {
  const s = planPbs(input({ observed: [job("7", NAME, "Q", { reason: "Resources" })], recorded: [] }));
  assert.deepEqual(s.actions, []);
  assert.equal(s.jobs[0]!.id, "7");
  assert.equal(s.phase, "Queued");
  assert.equal(s.submitted.reason, "JobQueued");
  assert.match(s.submitted.message, /job 7 \(ipp-abcde-11111\) is queued in batch: Resources/);
  assert.deepEqual(s.events.map((e) => e.reason), ["JobAdopted"]);
});

test("recorded live job: status mirrors qstat, no action", () => {
  const rec: PbsJobRecord[] = [submittedRecord("7", "batch", new Date("2026-11-26T12:00:00Z"))];
  const s = planPbs(input({ observed: [job("7", NAME, "R", { startedAt: "2026-11-26T12:00:02Z" })], recorded: rec }));
  assert.deepEqual(s.actions, []);
  assert.deepEqual(s.jobs, [{ id: "7", role: "engines", state: "R", queue: "batch", submittedAt: "2026-11-26T12:00:00Z", startedAt: "2026-11-26T12:00:02Z" }]);
  assert.equal(s.phase, "Starting");
  assert.equal(s.submitted.reason, "JobRunning");
  assert.deepEqual(s.events, []);
});

test("scale change: the live job of the old shape is deleted and the new one submitted", () => {
  const rec: PbsJobRecord[] = [{ id: "7", role: "engines", state: "R" }];
  const s = planPbs(input({ observed: [job("7", "ipp-abcde-00000", "R")], recorded: rec, generation: 2, observedGeneration: 1 }));
  assert.deepEqual(s.actions, [{ type: "qdel", ids: ["7"], why: "specChanged" }, { type: "submit", name: NAME }]);
  assert.deepEqual(s.events.map((e) => e.reason), ["Resubmitting"]);
});

test("a stale job found only by its name prefix (not recorded) is deleted too", () => {
  const s = planPbs(input({ observed: [job("9", "ipp-abcde-99999", "Q"), job("10", "ipp-zzzzz-99999", "Q")] }));
  assert.deepEqual(s.actions, [{ type: "qdel", ids: ["9"], why: "specChanged" }, { type: "submit", name: NAME }]);
});

test("two live jobs with the current name: the oldest is kept", () => {
  const s = planPbs(input({ observed: [job("12", NAME, "Q"), job("9", NAME, "R")], recorded: [{ id: "9", role: "engines", state: "R" }] }));
  assert.deepEqual(s.actions, [{ type: "qdel", ids: ["12"], why: "duplicate" }]);
  assert.equal(s.current?.id, "9");
});

test("walltime: resubmitted by default, Failed with resubmitOnWalltime false", () => {
  const ended = job("7", NAME, "C", { startedAt: "2026-11-26T12:00:00Z", walltimeLimitSec: 300, walltimeUsedSec: 301 });
  const rec: PbsJobRecord[] = [{ id: "7", role: "engines", state: "R", startedAt: "2026-11-26T12:00:00Z" }];
  const s = planPbs(input({ observed: [ended], recorded: rec }));
  assert.deepEqual(s.actions, [{ type: "submit", name: NAME }]);
  assert.deepEqual(s.events.map((e) => e.reason), ["WalltimeResubmit"]);
  assert.equal(s.jobs[0]!.reason, "walltime");
  const off = planPbs(input({ observed: [ended], recorded: rec, pbs: { user: "ipphpc", walltime: "00:05:00", resubmitOnWalltime: false } }));
  assert.deepEqual(off.actions, []);
  assert.equal(off.phase, "Failed");
  assert.equal(off.submitted.reason, "WalltimeReached");
});

test("a job that vanished from qstat after running its walltime counts as a walltime end (PBS Pro without history)", () => {
  const rec: PbsJobRecord[] = [{ id: "7.s", role: "engines", state: "R", startedAt: "2026-11-26T12:04:58Z" }];
  const s = planPbs(input({ observed: [], recorded: rec, dialect: dialects.pbspro }));
  assert.deepEqual(s.actions, [{ type: "submit", name: NAME }]);
  const early = planPbs(input({ observed: [], recorded: [{ ...rec[0]!, startedAt: "2026-11-26T12:09:00Z" }], dialect: dialects.pbspro }));
  assert.deepEqual(early.actions, [], "gone after 60 s of a 300 s walltime: not resubmitted");
  assert.equal(early.phase, "Failed");
  assert.equal(early.jobs[0]!.state, "Gone");
});

test("a job that exited is not resubmitted until the spec changes", () => {
  const rec: PbsJobRecord[] = [{ id: "7", role: "engines", state: "R" }];
  const ended = job("7", NAME, "C", { startedAt: "2026-11-26T12:00:00Z", walltimeLimitSec: 300, walltimeUsedSec: 20 });
  const s = planPbs(input({ observed: [ended], recorded: rec }));
  assert.deepEqual(s.actions, []);
  assert.equal(s.submitted.reason, "JobEnded");
  const next = planPbs(input({ observed: [ended], recorded: s.jobs, generation: 2, observedGeneration: 1 }));
  assert.deepEqual(next.actions, [{ type: "submit", name: NAME }]);
  assert.deepEqual(next.jobs, [], "ended jobs of the old generation are forgotten");
});

test("deletion: qdel every live job, done when none is left", () => {
  const rec: PbsJobRecord[] = [{ id: "7", role: "engines", state: "R" }];
  const s = planPbs(input({ deleting: true, observed: [job("7", NAME, "R"), job("8", "ipp-abcde-22222", "Q"), job("6", NAME, "C")], recorded: rec }));
  assert.deepEqual(s.actions, [{ type: "qdel", ids: ["7", "8"], why: "deleting" }]);
  assert.equal(s.done, false);
  const after = planPbs(input({ deleting: true, observed: [job("7", NAME, "C"), job("8", "ipp-abcde-22222", "C")], recorded: s.jobs }));
  assert.deepEqual(after.actions, []);
  assert.equal(after.done, true);
});

test("qstat unreadable: no action at all, recorded jobs kept", () => {
  const rec: PbsJobRecord[] = [{ id: "7", role: "engines", state: "R" }];
  const s = planPbs(input({ observed: { error: "connect ECONNREFUSED 127.0.0.1:22522" }, recorded: rec }));
  assert.deepEqual(s.actions, []);
  assert.deepEqual(s.jobs, rec);
  assert.equal(s.submitted.status, "Unknown");
  const d = planPbs(input({ deleting: true, observed: { error: "x" }, recorded: rec }));
  assert.equal(d.done, false, "deletion never completes without seeing the queue");
});

test("recorded slurm poll: pending reason reaches the Submitted condition", () => {
  const text = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "fixtures", "slurm-poll-pending.txt"), "utf8");
  const r = dialects.slurm.parsePoll(text, 0);
  assert.ok(r.ok);
  const s = planPbs(input({ tag: "bbbbb", name: "ipp-bbbbb-33333", observed: r.jobs }));
  assert.deepEqual(s.actions, []);
  assert.match(s.submitted.message, /job 8 \(ipp-bbbbb-33333\) is queued in batch: Resources/);
  const other = planPbs(input({ tag: "aaaaa", name: "ipp-aaaaa-22222", observed: r.jobs }));
  assert.deepEqual(other.actions, [{ type: "qdel", ids: ["6"], why: "specChanged" }], "aaaaa-11111 is stale; the held 22222 is current and kept");
  assert.equal(other.submitted.reason, "JobQueued");
  assert.match(other.submitted.message, /JobHeldUser/);
});
