/**
 * ipcontroller_config.py in the profile: read (with traitlets, by a Python helper) and applied as
 * the same options on the command line would be: supported settings take effect, the command line
 * wins, a setting rejected on the command line is rejected from the file too (naming the file),
 * settings of other classes are noted and ignored, a broken file stops the start with a clear error.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { python } from "../../support/paths.ts";
import { BIN, childEnv, makeProfile } from "./harness.ts";
import { startController } from "./controllers.ts";

function run(profileDir: string, args: string[]) {
  return spawnSync(BIN, ["controller", `--profile-dir=${profileDir}`, ...args], {
    env: childEnv({ IPP_CONTROLLER_PYTHON: python(9) }), encoding: "utf8", timeout: 60_000,
  });
}

test("ipcontroller_config.py: supported settings apply, the command line wins, rejected ones fail as on the command line", { timeout: 180_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  const cfg = join(profile.dir, "ipcontroller_config.py");
  try {
    writeFileSync(cfg, [
      "c = get_config()  # noqa",
      "c.HeartMonitor.period = 1500",
      "c.TaskScheduler.hwm = 0",
      "c.TaskScheduler.scheme_name = 'lru'",
      "c.IPController.db_class = 'SQLiteDB'",
      "c.SQLiteDB.filename = 'records.db'",
      "c.IPController.ports = [15101, 15102]",
      "c.IPController.ports.append(15103)" ,
      "c.IPClusterEngines.n = 4",
      "c.IPController.use_threads = True",
    ].join("\n") + "\n");
    const shown = run(profile.dir, ["--show-config-json", "--ping=2000"]);
    assert.equal(shown.status, 0, shown.stderr);
    const v = JSON.parse(shown.stdout) as Record<string, unknown>;
    assert.equal(v.heartbeatPeriodMs, 2000, "the command line wins");
    assert.equal(v.hwm, 0);
    assert.equal(v.taskScheme, "lru");
    assert.deepEqual(v.db, { sqlite: join(profile.dir, "records.db"), table: "ipython-tasks" });
    assert.deepEqual((v.ports as { common: number[] }).common, [15101, 15102, 15103]);
    const notes = (v.notes as Array<{ flag: string }>).map((n) => n.flag);
    assert.ok(notes.includes("ipcontroller_config.py: c.IPClusterEngines.n"), JSON.stringify(notes));
    assert.ok(notes.includes("ipcontroller_config.py: c.IPController.use_threads"), JSON.stringify(notes));

    // it is really used: the controller starts with the SQLite file the config names
    writeFileSync(cfg, "c.IPController.db_class = 'SQLiteDB'\nc.SQLiteDB.filename = 'records.db'\n");
    const ctl = await startController("ours", 9, profile.dir, "cfg");
    assert.ok(existsSync(join(profile.dir, "records.db")));
    await ctl.stop();

    writeFileSync(cfg, "c.IPController.db_class = 'MongoDB'\n");
    const rejected = run(profile.dir, ["--ip=127.0.0.1"]);
    assert.equal(rejected.status, 2, rejected.stderr);
    assert.match(rejected.stderr, /ipcontroller_config\.py: c\.IPController\.db_class=MongoDB is not supported/);

    writeFileSync(cfg, "c.IPController.transport = 'ipc'\n");
    const rejected2 = run(profile.dir, ["--ip=127.0.0.1"]);
    assert.equal(rejected2.status, 2, rejected2.stderr);
    assert.match(rejected2.stderr, /ipcontroller_config\.py: c\.IPController\.transport=ipc/);

    writeFileSync(cfg, "c.IPController.ip = (\n");
    const broken = run(profile.dir, ["--ip=127.0.0.1"]);
    assert.equal(broken.status, 1, broken.stderr);
    assert.match(broken.stderr, /cannot read .*ipcontroller_config\.py/);
  } finally {
    await profile.cleanup();
  }
});
