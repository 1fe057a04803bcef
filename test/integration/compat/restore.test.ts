/**
 * --restore: the controller process is killed while a client is connected and started again with
 * the same --cluster-id, profile and --reuse; the MPI engines (not relaunched) re-attach with their
 * ids, a new client sees the same rc.ids and runs the seed flow (scatter, %px psum = 496), and with
 * --sqlitedb a result finished before the kill is still there. A state file of another cluster is
 * refused with both ids named. Real ipyparallel 9.2 and 8.8 engines and clients.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, python, type IppMajor } from "../../support/paths.ts";
import { BIN, childEnv, makeProfile } from "./harness.ts";
import { connectionFiles, runPython, startController, startEngines, waitUntil } from "./controllers.ts";

/** Waits until the engine state file at `path` lists `n` engines. */
const stateFileLists = (path: string, n: number) => waitUntil(
  () => existsSync(path) && Object.keys((JSON.parse(readFileSync(path, "utf8")) as { engines: object }).engines).length === n,
  30_000, `the state file lists ${n} engines`);

const ARGS = ["--reuse", "--restore", "--sqlitedb", "--HeartMonitor.period=1000"];

for (const major of [9, 8] as IppMajor[]) {
  test(`ipyparallel ${major}: a killed controller restarted with --restore takes back the running MPI engines`, { timeout: 600_000 }, async () => {
    const profile = await makeProfile({ ours: true });
    const files = connectionFiles(profile.dir, "rs");
    let ctl = await startController("ours", major, profile.dir, "rs", ARGS);
    const engines = startEngines(major, files.engine, 4);
    const holder = spawn(python(major), [join(REPO_ROOT, "test/python/hold_client.py"), files.client, "4"], { env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let holderOut = "";
    let holderErr = "";
    holder.stdout!.on("data", (d: Buffer) => { holderOut += d.toString(); });
    holder.stderr!.on("data", (d: Buffer) => { holderErr += d.toString(); });
    try {
      await waitUntil(() => holderOut.includes("\n"), 120_000, `the first client: ${holderErr.slice(-2000)}`);
      const before = JSON.parse(holderOut.trim()) as { ids: number[]; msg_id: string; result: number; engine_pids: number[] };
      assert.deepEqual(before.ids, [0, 1, 2, 3]);
      assert.equal(before.result, 42);

      // the result is on disk (the store commits within 100 ms), then the controller dies with a
      // client connected and engines running
      const committed = () => spawnSync(python(major), ["-c",
        "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); r=d.execute(\"select completed from 'ipython-tasks' where msg_id=?\", (sys.argv[2],)).fetchone(); print('yes' if r and r[0] else 'no')",
        join(profile.dir, "tasks.db"), before.msg_id], { encoding: "utf8" }).stdout.trim() === "yes";
      await waitUntil(committed, 30_000, "the result committed to tasks.db");
      await ctl.stop("SIGKILL");
      const state = JSON.parse(readFileSync(join(profile.dir, "log", "enginesrs.json"), "utf8")) as { engines: Record<string, string>; next_id: number; cluster_id: string };
      assert.deepEqual(Object.keys(state.engines).sort(), ["0", "1", "2", "3"]);
      assert.equal(state.cluster_id, "rs");

      ctl = await startController("ours", major, profile.dir, "rs", ARGS);
      assert.match(ctl.output(), /restored engines from the engine state file/);
      const after = await runPython(major, "after_restore.py", [files.client, "4", before.msg_id]);
      assert.deepEqual(after.errors, {});
      assert.deepEqual(after.ids, before.ids, "rc.ids unchanged for a new client");
      assert.deepEqual(after.engine_pids, before.engine_pids, "the same engine processes, not relaunched");
      assert.equal(after.old_result, 42, "a result finished before the restart, from SQLite");
      assert.equal(after.new_task, 42);
      assert.equal(engines.child.exitCode, null, "mpiexec still running");

      const flow = await runPython(major, "workflow.py", [files.client, "4"]);
      assert.deepEqual(flow.errors, {});
      assert.deepEqual(flow.ids, [0, 1, 2, 3]);
      assert.deepEqual(flow.px_totalsum, ["array(496.)", "array(496.)", "array(496.)", "array(496.)"]);
    } finally {
      holder.kill("SIGKILL");
      await engines.stop("SIGKILL");
      await ctl.stop();
      await profile.cleanup();
    }
  });
}

test("a controller whose profile has no state file (a new volume) restores from --restore-fallback: the running engines re-attach with their ids", { timeout: 600_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  const copy = join(profile.dir, "operator-copy.json");
  const args = ["--reuse", "--restore", `--restore-fallback=${copy}`, "--HeartMonitor.period=1000"];
  const files = connectionFiles(profile.dir, "fb");
  // the first start: no state anywhere yet (the fallback file does not exist): nothing restored
  let ctl = await startController("ours", 9, profile.dir, "fb", args);
  assert.doesNotMatch(ctl.output(), /restored engines/);
  const engines = startEngines(9, files.engine, 4);
  try {
    const before = await runPython(9, "after_restore.py", [files.client, "4", "none"]);
    assert.deepEqual(before.ids, [0, 1, 2, 3]);
    // the copy is what the operator keeps (ids, uuids, next id); the profile's own file is lost
    // with the volume, and the controller is stopped as a pod's is, with SIGTERM
    const state = join(profile.dir, "log", "enginesfb.json");
    await stateFileLists(state, 4);
    copyFileSync(state, copy);
    await ctl.stop("SIGTERM");
    rmSync(state);

    ctl = await startController("ours", 9, profile.dir, "fb", args);
    assert.match(ctl.output(), /restored engines from the engine state file/);
    assert.ok(ctl.output().includes(copy), "restored from the fallback copy");
    const after = await runPython(9, "after_restore.py", [files.client, "4", "none"]);
    assert.deepEqual(after.ids, before.ids, "rc.ids unchanged for a new client");
    assert.deepEqual(after.engine_pids, before.engine_pids, "the same engine processes");
    assert.equal(after.new_task, 42);
    assert.equal(engines.child.exitCode, null, "mpiexec still running");
    // the profile's own file is written again and, present, wins over the copy at the next start
    await waitUntil(() => existsSync(state), 30_000, "the state file written again");
  } finally {
    await engines.stop("SIGKILL");
    await ctl.stop();
    await profile.cleanup();
  }
});

test("restored engines that never answer (their world was relaunched while the controller was down) give their ids to the new world's engines", { timeout: 600_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  const args = ["--reuse", "--restore", "--HeartMonitor.period=1000"];
  const files = connectionFiles(profile.dir, "rl");
  let ctl = await startController("ours", 9, profile.dir, "rl", args);
  let engines = startEngines(9, files.engine, 4);
  try {
    const before = await runPython(9, "after_restore.py", [files.client, "4", "none"]);
    assert.deepEqual(before.ids, [0, 1, 2, 3]);
    const state = join(profile.dir, "log", "enginesrl.json");
    await stateFileLists(state, 4);
    // controller and world both gone; the state file still lists the old world's engines
    await ctl.stop("SIGKILL");
    await engines.stop("SIGKILL");
    ctl = await startController("ours", 9, profile.dir, "rl", args);
    assert.match(ctl.output(), /restored engines from the engine state file/);
    // the relaunched world's ranks ask for ids 0-3, which the restored (dead) engines hold
    engines = startEngines(9, files.engine, 4);
    await waitUntil(() => (ctl.output().match(/engine registered/g) ?? []).length >= 4, 120_000, `the new world's 4 engines registered: ${ctl.output().slice(-3000)}`);
    const after = await runPython(9, "after_restore.py", [files.client, "4", "none"]);
    assert.deepEqual(after.ids, [0, 1, 2, 3], "the new world's engines have the ranks' ids, not 4-7");
    assert.notDeepEqual(after.engine_pids, before.engine_pids, "new engine processes");
    assert.equal(after.new_task, 42);
  } finally {
    await engines.stop("SIGKILL");
    await ctl.stop();
    await profile.cleanup();
  }
});

test("--restore with a state file of another cluster id is refused, naming both", { timeout: 120_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  try {
    const log = join(profile.dir, "log");
    spawnSync("mkdir", ["-p", log]);
    writeFileSync(join(log, "enginesmine.json"), JSON.stringify({ engines: { 0: "u-0" }, next_id: 1, cluster_id: "theirs" }));
    const r = spawnSync(BIN, ["controller", `--profile-dir=${profile.dir}`, "--cluster-id=mine", "--ip=127.0.0.1", "--restore"], { env: childEnv(), encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /refusing to restore/);
    assert.match(r.stderr, /cluster id 'theirs'/);
    assert.match(r.stderr, /cluster id is 'mine'/);
    // a file upstream wrote (no cluster_id) is taken as this cluster's
    writeFileSync(join(log, "enginesmine.json"), JSON.stringify({ engines: {}, next_id: 5 }));
    const ctl = await startController("ours", 9, profile.dir, "mine", ["--restore"]);
    await ctl.stop();
  } finally {
    await profile.cleanup();
  }
});
