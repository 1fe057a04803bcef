/**
 * Dialect parsers against recorded output: slurm-*.txt were recorded from the rig
 * (scripts/setup/pbs-rig.sh: Slurm 22.05 + slurm-wlm-torque wrappers); the PBS Pro JSON and Torque
 * text samples are written from their documented formats.
 */
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import {
  PollScopeError,
  parseQstatDsv,
  parseQstatJson,
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
  assert.equal(pro, `set -f; ids=$(qselect -u alice) || exit $?; set -- $ids; for t in 1041.pbs01 1039.pbs01; do case " $(echo $ids) " in *" $t "*) ;; *) set -- "$@" "$t" ;; esac; done; if [ $# -gt 0 ]; then qstat -f -F dsv -x "$@"; else printf '%s' ''; fi`);
  // run by a real shell: a tracked id the listing has is asked for once, the others appended
  const shown = execFileSync("bash", ["-c", pro.replace("qselect -u alice", "printf '1041.pbs01\\n7.pbs01\\n'").replace('qstat -f -F dsv -x "$@"', 'echo "$@"')], { encoding: "utf8" });
  assert.equal(shown.trim(), "1041.pbs01 7.pbs01 1039.pbs01");
  assert.match(dialects.torque.pollCommand({ user: "alice", ids: [] }), /^set -f; ids=\$\(qselect -u alice\) \|\| exit \$\?; set -- \$ids; if .* then qstat -f "\$@"; else printf '%s' ''; fi$/);
  // nothing unquoted from outside: a user or id that is not a plain word is refused
  assert.throws(() => dialects.pbspro.pollCommand({ user: "a;b", ids: [] }), PollScopeError);
  assert.throws(() => dialects.pbspro.pollCommand({ user: "alice", ids: ["1$(x)"] }), PollScopeError);
  assert.throws(() => dialects.slurm.pollCommand({ user: "alice bob", ids: [] }), PollScopeError);
});

test("pbspro qstat -f -F json (documented format)", () => {
  const r = parseQstatJson(fixture("pbspro-qstat-f-json.json"));
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
  assert.deepEqual(parseQstatJson('{"timestamp":1,"pbs_version":"2022.1.1","pbs_server":"s"}'), { ok: true, jobs: [] });
  assert.equal(parseQstatJson("not json").ok, false);
});

test("pbspro poll: real OpenPBS 23.06 `qstat -f -F dsv -x` of running, queued, held, walltime-killed and deleted jobs", () => {
  const r = dialects.pbspro.parsePoll(fixture("openpbs-23.06-qstat-f-dsv-x.txt"), 0);
  assert.ok(r.ok);
  const by = new Map(r.jobs.map((j) => [j.id, j]));
  assert.deepEqual([...by.keys()], ["16.ipp-openpbs", "17.ipp-openpbs", "18.ipp-openpbs", "12.ipp-openpbs", "14.ipp-openpbs"]);
  const run = by.get("16.ipp-openpbs")!;
  assert.deepEqual([run.name, run.owner, run.state, run.phase, run.queue, run.walltimeLimitSec], ["ipp-fx000-run00", "ippbs", "R", "running", "workq", 600]);
  assert.match(run.startedAt!, /^2026-12-07T04:53:\d\dZ$/);
  assert.equal(by.get("17.ipp-openpbs")!.phase, "queued");
  const held = by.get("18.ipp-openpbs")!;
  assert.deepEqual([held.phase, held.reason], ["held", "Job held by ippbs on Mon Dec  7 04:53:35 2026"]);
  const wall = by.get("12.ipp-openpbs")!;
  assert.deepEqual([wall.phase, wall.exitStatus, wall.walltimeLimitSec, wall.walltimeUsedSec], ["completed", -29, 5, 10]);
  assert.ok(endedByWalltime(wall, dialects.pbspro));
  assert.match(wall.reason!, /exceeded resource walltime$/);
  const deleted = by.get("14.ipp-openpbs")!;
  assert.deepEqual([deleted.phase, deleted.exitStatus], ["completed", 271]);
  assert.ok(!endedByWalltime(deleted, dialects.pbspro));
  // a tracked id gone from the history: qstat exits 153 but prints the others; nothing asked: no output
  assert.equal(dialects.pbspro.parsePoll(fixture("openpbs-23.06-qstat-f-dsv-x.txt"), 153).ok, true);
  assert.deepEqual(dialects.pbspro.parsePoll("", 0), { ok: true, jobs: [] });
  assert.equal(dialects.pbspro.parsePoll("qstat: cannot connect to server ipp-openpbs (errno=111)", 2).ok, false);
  // a delimiter inside a value is escaped
  assert.deepEqual(parseQstatDsv("Job Id: 1.s|Job_Name=a\\|b|comment=x=y\n").get("1.s"), { Job_Name: "a|b", comment: "x=y" });
});

test("pbspro JSON: the real OpenPBS 23.06 document (tabs) parses like the documented one", () => {
  const r = parseQstatJson(fixture("openpbs-23.06-qstat-f-json-x-walltime.json"));
  assert.ok(r.ok);
  assert.deepEqual(r.jobs.map((j) => [j.id, j.state, j.exitStatus, j.walltimeLimitSec]), [["12.ipp-openpbs", "F", -29, 5]]);
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
