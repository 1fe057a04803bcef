/**
 * ipcontroller_config.py in the profile: read (with traitlets, by a Python helper) and applied as
 * the same options on the command line would be: supported settings take effect, the command line
 * wins, a setting rejected on the command line is rejected from the file too (naming the file),
 * settings of other classes are noted and ignored, a broken file stops the start with a clear error.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { python } from "../../support/paths.ts";
import { BIN, childEnv, makeProfile } from "./harness.ts";
import { startController } from "./controllers.ts";

function run(profileDir: string, args: string[], cwd?: string) {
  return spawnSync(BIN, ["controller", `--profile-dir=${profileDir}`, ...args], {
    env: childEnv({ IPP_CONTROLLER_PYTHON: python(9) }), encoding: "utf8", timeout: 60_000, ...(cwd !== undefined ? { cwd } : {}),
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

test("--config=FILE is loaded after the profile's ipcontroller_config.py (its settings win, the command line wins over both); relative names from the working directory, then the profile", { timeout: 180_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  const elsewhere = mkdtempSync(join(tmpdir(), "ipp-extra-config-"));
  try {
    writeFileSync(join(profile.dir, "ipcontroller_config.py"), "c = get_config()  # noqa\nc.HeartMonitor.period = 1500\nc.TaskScheduler.scheme_name = 'lru'\n");
    const extra = join(elsewhere, "extra.py");
    writeFileSync(extra, "c = get_config()  # noqa\nc.TaskScheduler.scheme_name = 'twobin'\nc.TaskScheduler.hwm = 5\n");
    const shown = run(profile.dir, ["--show-config-json", `--config=${extra}`]);
    assert.equal(shown.status, 0, shown.stderr);
    const v = JSON.parse(shown.stdout) as Record<string, unknown>;
    assert.equal(v.heartbeatPeriodMs, 1500, "the profile's file still applies");
    assert.equal(v.taskScheme, "twobin", "--config's file wins over the profile's");
    assert.equal(v.hwm, 5);
    const cli = JSON.parse(run(profile.dir, ["--show-config-json", `--config=${extra}`, "--scheme=weighted"]).stdout) as Record<string, unknown>;
    assert.equal(cli.taskScheme, "weighted", "the command line wins over both");

    // a relative name: the working directory first, then the profile directory; JSON files too
    writeFileSync(join(profile.dir, "in-profile.json"), JSON.stringify({ TaskScheduler: { hwm: 7 } }));
    const rel = run(profile.dir, ["--show-config-json", "--config=in-profile.json"], elsewhere);
    assert.equal(rel.status, 0, rel.stderr);
    assert.equal((JSON.parse(rel.stdout) as Record<string, unknown>).hwm, 7);
    const cwdFirst = run(profile.dir, ["--show-config-json", "--config=extra.py"], elsewhere);
    assert.equal((JSON.parse(cwdFirst.stdout) as Record<string, unknown>).hwm, 5);

    // not found: skipped with a warning, as IPython does
    const missing = run(profile.dir, ["--show-config-json", "--config=no-such-file.py"], elsewhere);
    assert.equal(missing.status, 0, missing.stderr);
    assert.match(missing.stderr, /config file not found, skipping: no-such-file\.py/);

    // a setting rejected on the command line is rejected from the file, naming it
    writeFileSync(extra, "c.IPController.db_class = 'MongoDB'\n");
    const rejected = run(profile.dir, ["--ip=127.0.0.1", `--config=${extra}`]);
    assert.equal(rejected.status, 2, rejected.stderr);
    assert.match(rejected.stderr, /extra\.py: c\.IPController\.db_class=MongoDB is not supported/);

    // it is really used: the controller starts with the SQLite file the extra config names
    rmSync(join(profile.dir, "ipcontroller_config.py"));
    writeFileSync(extra, "c.IPController.db_class = 'SQLiteDB'\nc.SQLiteDB.filename = 'extra-records.db'\n");
    const ctl = await startController("ours", 9, profile.dir, "xcfg", [`--config=${extra}`]);
    assert.ok(existsSync(join(profile.dir, "extra-records.db")));
    await ctl.stop();
  } finally {
    rmSync(elsewhere, { recursive: true, force: true });
    await profile.cleanup();
  }
});
