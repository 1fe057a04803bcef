/**
 * --sqlitedb against upstream's SQLiteDB, with real ipyparallel 9.2 and 8.8 controllers, engines and
 * clients: records written by upstream ipcontroller are read by ours (db_query with every operator,
 * $glob on labels, get_result of results finished before the switch) and give the same answers a
 * client got from upstream itself; records written by ours are read by upstream's controller. A
 * corrupt or locked database stops our controller with a clear error and is left untouched.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { python, type IppMajor } from "../../support/paths.ts";
import { BIN, childEnv, makeProfile } from "./harness.ts";
import { connectionFiles, runPython, startController, startEngines, type Proc } from "./controllers.ts";

/**
 * Upstream compares PRAGMA table_info types case-sensitively, and SQLite 3.37+ reports "text" as
 * "TEXT", so upstream on a current SQLite never reuses an existing table (a new ipython-tasks_N
 * at every start). This config makes upstream's check what it is on an older SQLite, so upstream
 * can read back a table at all (its own or ours).
 */
const UPSTREAM_TABLE_CHECK_AS_ON_OLD_SQLITE = `
from ipyparallel.controller.sqlitedb import SQLiteDB
def _check_table(self):
    lines = self._db.execute(f"PRAGMA table_info('{self.table}')").fetchall()
    return not lines or ([l[1] for l in lines] == self._keys and all(l[2].lower() == self._types[l[1]] for l in lines))
SQLiteDB._check_table = _check_table
`;

async function submitAndQuery(major: IppMajor, profileDir: string, writer: "ours" | "upstream"): Promise<{ ids: Record<string, unknown>; seen: Record<string, unknown> }> {
  const ctl = await startController(writer, major, profileDir, "w", ["--sqlitedb"]);
  const files = connectionFiles(profileDir, "w");
  let engines: Proc | undefined;
  try {
    engines = startEngines(major, files.engine, 2);
    const sub = await runPython(major, "task_records.py", [files.client, "submit", "2"]);
    assert.deepEqual(sub.errors, {}, JSON.stringify(sub.errors));
    const ids = sub.ids as Record<string, unknown>;
    const seen = await runPython(major, "task_records.py", [files.client, "query", JSON.stringify(ids)]);
    // upstream's SQLiteDB commits every 2 s and not when it is stopped: give it a commit first
    if (writer === "upstream") await new Promise((r) => setTimeout(r, 3000));
    return { ids, seen };
  } finally {
    await engines?.stop("SIGKILL");
    assert.equal(await ctl.stop(), 0, ctl.output().slice(-3000));
  }
}

async function queryWith(reader: "ours" | "upstream", major: IppMajor, profileDir: string, ids: Record<string, unknown>): Promise<Record<string, unknown>> {
  const ctl = await startController(reader, major, profileDir, "r", ["--sqlitedb"]);
  try {
    return await runPython(major, "task_records.py", [connectionFiles(profileDir, "r").client, "query", JSON.stringify(ids)]);
  } finally {
    await ctl.stop();
  }
}

function withoutDurations(o: Record<string, unknown>): Record<string, unknown> {
  const { durations: _d, ...rest } = o;
  return rest;
}

for (const major of [9, 8] as IppMajor[]) {
  test(`ipyparallel ${major}: a database upstream's controller wrote is read by ours with the same answers`, { timeout: 600_000 }, async () => {
    const profile = await makeProfile({ ours: false });
    try {
      const { ids, seen: fromUpstream } = await submitAndQuery(major, profile.dir, "upstream");
      assert.deepEqual(fromUpstream.errors, {});
      const fromOurs = await queryWith("ours", major, profile.dir, ids);
      assert.deepEqual(withoutDurations(fromOurs), withoutDurations(fromUpstream));
      // and what that is
      assert.deepEqual(fromOurs.results, [0, 1, 4, 9]);
      assert.deepEqual(fromOurs.direct_result, [49, 49]);
      if (major === 9) {
        assert.deepEqual((fromOurs.glob_lb as Array<{ label: string }>).map((r) => r.label).sort(), ["lb-0", "lb-1", "lb-2", "lb-3"]);
        assert.deepEqual(fromOurs.glob_class, ["direct-7", "direct-7", "fail-1"]);
      }
      if (major === 9) assert.equal(fromOurs.glob_queue, 5);
      assert.equal((fromOurs.failed_result as string[])[0], "RemoteError");
      assert.deepEqual(fromOurs.stdout, ["hello from the engine\n", "hello from the engine\n"]);
      assert.match(String((fromOurs.unknown_operator as string[])[1]), /Unsupported operator: '\$regex'/);
      if (major === 8) assert.match(String((fromOurs.label_on_8 as string[])[1]), /Illegal testing key/);
      assert.match(String((fromOurs.in_empty as string[])[1]), /syntax error/);
      assert.match(String((fromOurs.in_null as string[])[1]), /Cannot use '\$in' test with NULL/);
    } finally {
      await profile.cleanup();
    }
  });

  test(`ipyparallel ${major}: a database our controller wrote is read by upstream's controller with the same answers`, { timeout: 600_000 }, async () => {
    const profile = await makeProfile({ ours: true });
    try {
      // 8.x has no label column, and upstream 8.x reads only a table without one: let it make the table, ours writes into it
      if (major === 8) await (await startController("upstream", major, profile.dir, "init", ["--sqlitedb"])).stop();
      const { ids, seen: fromOurs } = await submitAndQuery(major, profile.dir, "ours");
      assert.deepEqual(fromOurs.errors, {});
      assert.deepEqual(fromOurs.results, [0, 1, 4, 9]);
      // upstream on this SQLite: a new table, so none of the records (its own bug, see above)
      const blind = await queryWith("upstream", major, profile.dir, ids);
      assert.equal(blind.ne_none_completed, 0, "upstream reads a fresh table on SQLite >= 3.37");
      assert.ok((fromOurs.ne_none_completed as number) >= 8);
      writeFileSync(join(profile.dir, "ipcontroller_config.py"), UPSTREAM_TABLE_CHECK_AS_ON_OLD_SQLITE);
      const fromUpstream = await queryWith("upstream", major, profile.dir, ids);
      assert.deepEqual(withoutDurations(fromUpstream), withoutDurations(fromOurs));
    } finally {
      await profile.cleanup();
    }
  });
}

test("a corrupt or locked SQLite file stops our controller with a clear error and is left untouched", { timeout: 120_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  try {
    const db = join(profile.dir, "tasks.db");
    const start = () => spawnSync(BIN, ["controller", `--profile-dir=${profile.dir}`, "--ip=127.0.0.1", "--sqlitedb"], { env: childEnv(), encoding: "utf8", timeout: 60_000 });
    const digest = () => createHash("sha256").update(readFileSync(db)).digest("hex");

    writeFileSync(db, Buffer.concat([Buffer.from("not a database at all\n"), Buffer.alloc(4096, 7)]));
    const before = digest();
    const r = start();
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /tasks\.db is not a SQLite database or is damaged/);
    assert.match(r.stderr, /left as it is/);
    assert.equal(digest(), before);

    // a real database with its header damaged
    const py = `import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); d.execute("create table t(x)"); d.executemany("insert into t values (?)", [(i,) for i in range(2000)]); d.commit()`;
    writeFileSync(db, "");
    assert.equal(spawnSync(python(9), ["-c", py, db]).status, 0);
    const bytes = readFileSync(db);
    bytes.fill(0xff, 4096, 8192); // page 2, a b-tree page, overwritten
    writeFileSync(db, bytes);
    const before2 = digest();
    const r2 = start();
    assert.equal(r2.status, 1, r2.stderr);
    assert.match(r2.stderr, /not a SQLite database or is damaged/);
    assert.equal(digest(), before2);

    // locked: another process holds an exclusive transaction on a good database
    writeFileSync(db, "");
    const holder = `import sqlite3,sys,time; d=sqlite3.connect(sys.argv[1], isolation_level=None); d.execute("create table t(x)"); d.execute("begin exclusive"); d.execute("insert into t values (1)"); print("locked", flush=True); time.sleep(60)`;
    const { spawn } = await import("node:child_process");
    const h = spawn(python(9), ["-c", holder, db], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((res) => h.stdout!.once("data", () => res()));
    try {
      const r3 = start();
      assert.equal(r3.status, 1, r3.stderr);
      assert.match(r3.stderr, /is locked by another process/);
    } finally {
      h.kill("SIGKILL");
    }
  } finally {
    await profile.cleanup();
  }
});
