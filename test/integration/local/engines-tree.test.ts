/**
 * launchEngines against a stand-in launcher that behaves like mpiexec + ipengine + nanny: children,
 * a grandchild that moves to its own session and is re-parented to init when its parent exits (as
 * an engine's nanny does), and one that ignores SIGTERM. stop() must leave none of them alive.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launchEngines } from "../../../src/local/engines.ts";
import { readProcTable, isLive } from "../../../src/local/proctree.ts";
import { silentLogger } from "../../../src/util/log.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("stop() terminates a whole launcher tree, including re-parented and TERM-ignoring processes", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "ipp-tree-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, "fake-mpiexec");
  writeFileSync(script, [
    "#!/bin/bash",
    'echo "launcher args: $*"',
    'echo "info=${IPP_CONNECTION_INFO}" >&2',
    "sleep 300 &",
    // an intermediate process that starts a session leader ignoring SIGTERM, then exits:
    // the grandchild is re-parented to init like an engine's nanny
    "bash -c 'setsid bash -c \"trap \\\"\\\" TERM; while true; do sleep 1; done\" & sleep 1.5' &",
    "wait",
  ].join("\n"));
  chmodSync(script, 0o755);

  const group = launchEngines({
    engines: 2, mpiexec: script, python: "ipengine", connectionInfo: { key: "k", registration: 1 }, trackIntervalMs: 100,
  }, { logger: silentLogger });
  let exitSeen = false;
  void group.exited.then(() => { exitSeen = true; });
  await sleep(2500); // the intermediate process has exited by now; its child lives on under init
  const tracked = group.tracked();
  assert.ok(tracked.some((p) => p.role === "launcher" && p.pid === group.pid));
  assert.ok(tracked.length >= 4, `tracked ${tracked.map((p) => `${p.pid}:${p.comm}`).join(" ")}`);
  const table = readProcTable();
  const orphan = tracked.find((p) => isLive(table, p.pid, p.start) && table.get(p.pid)!.ppid !== group.pid && p.role === "tree" && table.get(p.pid)!.comm === "bash");
  assert.ok(orphan, "the session-leader grandchild is tracked although it left the launcher's tree");

  const report = await group.stop({ graceMs: 700 });
  assert.ok(report.terminated.includes(group.pid));
  assert.ok(report.killed.includes(orphan.pid), `the TERM-ignoring process was SIGKILLed: ${JSON.stringify(report)}`);
  assert.deepEqual(report.survivors, []);
  const after = readProcTable();
  for (const p of group.tracked()) assert.equal(isLive(after, p.pid, p.start), false, `${p.pid} ${p.comm} still alive`);
  await group.exited;
  assert.ok(exitSeen);
  assert.match(group.outputTail(), /launcher args: -n 2 --oversubscribe -x IPP_CONNECTION_INFO ipengine --mpi/);
  assert.match(group.outputTail(), /info=\{"key":"k","registration":1\}/);
});

test("a launcher that cannot start resolves exited with 127", async () => {
  const group = launchEngines({
    engines: 1, mpiexec: "/nonexistent/mpiexec", python: "ipengine", connectionInfo: {},
  }, { logger: silentLogger });
  const e = await group.exited;
  assert.equal(e.code, 127);
  const report = await group.stop({ graceMs: 100 });
  assert.deepEqual(report.survivors, []);
});
