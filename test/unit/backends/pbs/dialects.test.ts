/**
 * Dialect parsers against recorded output: slurm-*.txt were recorded from the rig
 * (scripts/setup/pbs-rig.sh: Slurm 22.05 + slurm-wlm-torque wrappers); the PBS Pro JSON and Torque
 * text samples are written from their documented formats.
 */
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import {
  PollScopeError,
  DETECT_COMMAND, dialects, parseDetect, parseDuration, parseQstatDate, parseQstatFText,
} from "../../../../src/backends/pbs/core/dialects.ts";
import { endedByWalltime } from "../../../../src/backends/pbs/core/plan.ts";

const fixture = (f: string) => readFileSync(join(dirname(fileURLToPath(import.meta.url)), "fixtures", f), "utf8");

test("dates and durations", () => {
  assert.equal(parseQstatDate("Thu Nov 26 12:00:13 2026"), "2026-11-26T12:00:13Z");
  assert.equal(parseQstatDate("Mon Jan  5 01:02:03 2026"), "2026-01-05T01:02:03Z");
  assert.equal(parseQstatDate(1795543200), "2026-11-24T18:00:00Z");
  assert.equal(parseQstatDate("yesterday"), undefined);
  assert.equal(parseDuration("01:00:00"), 3600);
  assert.equal(parseDuration("05:30"), 330);
  assert.equal(parseDuration("90"), 90);
  assert.equal(parseDuration("1h"), undefined);
});

test("slurm: qsub prints a bare id", () => {
  assert.equal(dialects.slurm.parseJobId("18\n"), "18");
  assert.equal(dialects.slurm.parseJobId("There was an error running the Slurm sbatch command.\n"), undefined);
  assert.deepEqual(dialects.slurm.submitArgv("ipp-x.log"), ["qsub", "-j", "oe", "-o", "ipp-x.log", "/dev/stdin"]);
});

test("pbspro/torque: qsub prints id.server", () => {
  assert.equal(dialects.pbspro.parseJobId("1041.pbs01\n"), "1041.pbs01");
  assert.equal(dialects.torque.parseJobId("5521.torque01.cluster\n"), "5521.torque01.cluster");
  assert.equal(dialects.pbspro.parseJobId("qsub: Unknown queue\n"), undefined);
});

test("slurm wrapper qstat -f (recorded): TAB indents, mtime is the start, ctime the end", () => {
  const r = dialects.slurm.parsePoll(fixture("slurm-qstat-f.txt"), 0);
  assert.ok(r.ok);
  assert.deepEqual(r.jobs.map((j) => [j.id, j.name, j.state, j.phase]), [
    ["1", "ipp-abcde-12345", "R", "running"],
    ["2", "ipp-wallt-00001", "R", "running"],
    ["3", "ipp-held0-00002", "Q", "queued"],
    ["4", "ipp-quick-00003", "C", "completed"],
    ["5", "ipp-big00-00004", "Q", "queued"],
  ]);
  const j1 = r.jobs[0]!;
  assert.equal(j1.owner, "ipphpc");
  assert.equal(j1.queue, "batch");
  assert.equal(j1.submittedAt, "2026-11-26T12:00:13Z");
  assert.equal(j1.startedAt, "2026-11-26T12:00:13Z");
  assert.equal(j1.endedAt, undefined, "a running job's ctime is a projection, not an end");
  assert.equal(j1.walltimeLimitSec, 300);
  assert.equal(r.jobs[2]!.startedAt, undefined);
});

test("slurm poll (recorded): a job killed at its walltime is recognised from start and end", () => {
  const r = dialects.slurm.parsePoll(fixture("slurm-poll.txt"), 0);
  assert.ok(r.ok);
  const wt = r.jobs.find((j) => j.id === "2")!;
  assert.equal(wt.phase, "completed");
  assert.equal(wt.walltimeLimitSec, 60, "walltime=00:00:10 became one minute");
  assert.equal(wt.walltimeUsedSec, 73);
  assert.ok(endedByWalltime(wt, dialects.slurm));
  const quick = r.jobs.find((j) => j.id === "4")!;
  assert.equal(quick.phase, "completed");
  assert.ok(!endedByWalltime(quick, dialects.slurm));
});

test("slurm poll (recorded): pending reasons come from the appended squeue listing", () => {
  const r = dialects.slurm.parsePoll(fixture("slurm-poll-pending.txt"), 0);
  assert.ok(r.ok);
  const by = new Map(r.jobs.map((j) => [j.id, j]));
  assert.equal(by.get("8")!.reason, "Resources");
  assert.equal(by.get("7")!.reason, "JobHeldUser");
  assert.equal(by.get("6")!.reason, undefined, "None is no reason");
  assert.equal(by.get("6")!.phase, "running");
});

test("slurm: an empty queue exits 153 with no output; other failures are errors", () => {
  assert.deepEqual(dialects.slurm.parsePoll("", 153), { ok: true, jobs: [] });
  assert.deepEqual(dialects.slurm.parsePoll("@@ipp-squeue-reasons 153\n", 0), { ok: true, jobs: [] });
  const bad = dialects.slurm.parsePoll("perl: fatal: Could not establish a configuration source\n@@ipp-squeue-reasons 255\n", 0);
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.error : "", /exited 255.*configuration source/);
});

test("poll commands ask only for the login user's jobs (and tracked ids), in one remote command", () => {
  const slurm = dialects.slurm.pollCommand({ user: "alice", ids: ["7"] });
  assert.match(slurm, /^set -f; reasons=\$\(squeue -h -u alice -t all -o '%i\|%r'\) \|\| exit \$\?; /);
  assert.match(slurm, /if \[ \$# -gt 0 \]; then qstat -f "\$@"; fi; echo @@ipp-squeue-reasons "\$\?"/);
  const pro = dialects.pbspro.pollCommand({ user: "alice", ids: ["1041.pbs01", "1039.pbs01", "1041.pbs01"] });
  assert.equal(pro, `set -f; ids=$(qselect -u alice) || exit $?; set -- $ids 1041.pbs01 1039.pbs01; if [ $# -gt 0 ]; then qstat -f -F json -x "$@"; else printf '%s' '{"Jobs":{}}'; fi`);
  assert.match(dialects.torque.pollCommand({ user: "alice", ids: [] }), /^set -f; ids=\$\(qselect -u alice\) \|\| exit \$\?; set -- \$ids; if .* then qstat -f "\$@"; else printf '%s' ''; fi$/);
  // nothing unquoted from outside: a user or id that is not a plain word is refused
  assert.throws(() => dialects.pbspro.pollCommand({ user: "a;b", ids: [] }), PollScopeError);
  assert.throws(() => dialects.pbspro.pollCommand({ user: "alice", ids: ["1$(x)"] }), PollScopeError);
  assert.throws(() => dialects.slurm.pollCommand({ user: "alice bob", ids: [] }), PollScopeError);
});

test("pbspro qstat -f -F json (documented format)", () => {
  const r = dialects.pbspro.parsePoll(fixture("pbspro-qstat-f-json.json"), 0);
  assert.ok(r.ok);
  const by = new Map(r.jobs.map((j) => [j.id, j]));
  const run = by.get("1041.pbs01")!;
  assert.deepEqual([run.name, run.owner, run.phase, run.queue, run.startedAt, run.walltimeLimitSec], ["ipp-1a2b3-c4d5e", "alice", "running", "workq", "2026-11-26T11:47:29Z", 7200]);
  const q = by.get("1042.pbs01")!;
  assert.equal(q.phase, "queued");
  assert.match(q.reason!, /Insufficient amount of resource: ncpus/);
  assert.equal(by.get("1043.pbs01")!.phase, "held");
  const fin = by.get("1039.pbs01")!;
  assert.equal(fin.phase, "completed");
  assert.equal(fin.exitStatus, -29);
  assert.ok(endedByWalltime(fin, dialects.pbspro));
  assert.deepEqual(dialects.pbspro.parsePoll('{"timestamp":1,"pbs_version":"2022.1.1","pbs_server":"s"}', 0), { ok: true, jobs: [] });
  assert.equal(dialects.pbspro.parsePoll("not json", 0).ok, false);
  // an empty scope answers {"Jobs":{}}; a tracked id gone from the history exits 153 but the JSON counts
  assert.deepEqual(dialects.pbspro.parsePoll('{"Jobs":{}}', 0), { ok: true, jobs: [] });
  assert.equal(dialects.pbspro.parsePoll(fixture("pbspro-qstat-f-json.json"), 153).ok, true);
  assert.equal(dialects.pbspro.parsePoll("qstat: cannot connect to server", 2).ok, false);
});

test("torque qstat -f text (documented format): wrapped values, exit_status, comment", () => {
  const blocks = parseQstatFText(fixture("torque-qstat-f.txt"));
  assert.match(blocks.get("5521.torque01.cluster")!.Variable_List!, /PBS_O_WORKDIR=\/home\/alice,PBS_O_HOST=login01\.cluster/);
  const r = dialects.torque.parsePoll(fixture("torque-qstat-f.txt"), 0);
  assert.ok(r.ok);
  const by = new Map(r.jobs.map((j) => [j.id, j]));
  const run = by.get("5521.torque01.cluster")!;
  assert.deepEqual([run.phase, run.startedAt, run.walltimeUsedSec, run.walltimeLimitSec], ["running", "2026-11-26T11:52:05Z", 190, 3600]);
  const done = by.get("5519.torque01.cluster")!;
  assert.equal(done.exitStatus, -11);
  assert.equal(done.endedAt, "2026-11-26T11:30:05Z");
  assert.ok(endedByWalltime(done, dialects.torque));
  assert.equal(by.get("5522.torque01.cluster")!.reason, "Not Running: insufficient resources");
});

test("qdel: already-gone exit codes per dialect", () => {
  assert.ok(dialects.slurm.qdelGone(1, ""));
  assert.ok(!dialects.slurm.qdelGone(1, "qdel: Kill job error on job id 0: Invalid argument"));
  assert.ok(!dialects.slurm.qdelGone(0, ""));
  assert.ok(dialects.pbspro.qdelGone(153, "qdel: Unknown Job Id 9.s"));
  assert.ok(dialects.pbspro.qdelGone(35, "qdel: Job has finished 9.s"));
  assert.ok(dialects.torque.qdelGone(153, ""));
  assert.ok(!dialects.torque.qdelGone(1, ""));
  assert.deepEqual(dialects.torque.qdelArgv(["1.s", "2.s"]), ["qdel", "1.s", "2.s"]);
});

test("dialect detection", () => {
  assert.equal(parseDetect("dialect=slurm\nUnknown option: version\n"), "slurm");
  assert.equal(parseDetect("pbs_version = 2022.1.1\n"), "pbspro");
  assert.equal(parseDetect("Version: 6.1.3\nCommit: abc\n"), "torque");
  assert.equal(parseDetect("bash: qstat: command not found\n"), undefined);
  // PBS's qstat first on PATH wins over an sbatch that is also installed (observed on the rig)
  assert.equal(parseDetect("pbs_version = 23.06.06\ndialect=slurm\n"), "pbspro");
  assert.match(DETECT_COMMAND, /command -v sbatch/);
});
