// An engine whose heart first answers after the registration timeout (on a loaded node, a slow
// start-up): real ipyparallel 9.2 `ipengine` processes whose start-up code waits at a gate file,
// so the heart (which ipengine starts after the kernel's start-up code) answers only when the test
// opens the gate; our controller in-process with a 1 s registration timeout; a real 9.2 Client.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startRig, type Rig } from "./harness.ts";
import { venvBin } from "../../support/paths.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The start-up code of a gated engine: wait until the gate file exists. */
const GATE_CODE = `import os, time
while not os.path.exists(os.environ["IPP_TEST_GATE"]):
    time.sleep(0.05)
`;

interface Engine {
  proc: ChildProcess;
  gate: string;
  open(): void;
}

let engineCount = 0;

/** A real ipengine (no MPI) asking for `id`; with `gated`, its heart starts only once open() is called. */
function startEngine(rig: Rig, opts: { id?: number; gated: boolean }): Engine {
  const n = engineCount++;
  const gate = join(rig.dir, `gate-${n}`);
  const startup = join(rig.dir, `startup-${n}.py`);
  writeFileSync(startup, GATE_CODE);
  if (!opts.gated) writeFileSync(gate, "");
  const args = [`--file=${rig.engineFile}`, "--log-level=WARN", `--IPKernelApp.exec_files=${startup}`];
  if (opts.id !== undefined) args.push(`--IPEngine.id=${opts.id}`);
  const proc = spawn(venvBin(9, "ipengine"), args, {
    env: { ...process.env, IPYTHONDIR: join(rig.dir, "ipython"), IPP_TEST_GATE: gate, PYTHONUNBUFFERED: "1" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  proc.stderr!.on("data", (d: Buffer) => rig.logs.push(`[engine ${n}] ${d.toString().slice(0, 500)}`));
  return { proc, gate, open: () => { if (!existsSync(gate)) writeFileSync(gate, ""); } };
}

async function counter(rig: Rig, name: string, result: string): Promise<number> {
  const m = await rig.registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => v.labels.result === result)?.value ?? 0;
}

async function until(what: string, rig: Rig, f: () => Promise<boolean> | boolean, timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!(await f())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}:\n${rig.logs.slice(-30).join("\n")}`);
    await sleep(100);
  }
}

const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;

describe("a registration purged for a missing first heartbeat (ipyparallel 9)", { timeout: 400_000 }, () => {
  let rig: Rig;
  const engines: Engine[] = [];
  before(async () => {
    rig = await startRig(9, { registrationTimeoutMs: 1000, heartbeatPeriodMs: 500 });
  });
  after(async () => {
    for (const e of engines) if (alive(e.proc)) e.proc.kill("SIGKILL");
    await rig?.stop();
  });

  test("is completed when the engine's heart answers later: the client lists it and it runs tasks", async () => {
    const a = startEngine(rig, { id: 2, gated: true });
    engines.push(a);
    await until("the registration to be purged", rig, async () => (await counter(rig, "ipp_controller_registrations_total", "stalled")) === 1);
    assert.equal(rig.controller.engines().length, 0);
    assert.ok(alive(a.proc), "the engine process waits at its gate");

    a.open();
    await rig.waitForEngines(1, 120_000);
    assert.deepEqual(rig.controller.engines().map((e) => e.id), [2], "under the id of its registration reply");
    assert.equal(await counter(rig, "ipp_controller_late_registrations_total", "completed"), 1);
    assert.ok(rig.logs.some((l) => l.includes("completing a purged registration")));

    const out = await rig.driver("engines_run.py", ["[2]"]);
    assert.deepEqual(out.ids, [2], JSON.stringify(out));
    assert.deepEqual(out.pids, { 2: a.proc.pid }, "the task ran in the late engine's process");
    assert.equal(out.sum, 42);
  });

  test("stays out when another engine took its id meanwhile; the one holding the id keeps it", async () => {
    const earlier = rig.controller.engines().map((e) => e.id);
    const late = startEngine(rig, { id: 7, gated: true });
    engines.push(late);
    await until("the registration to be purged", rig, async () => (await counter(rig, "ipp_controller_registrations_total", "stalled")) === 2);

    // a new engine asks for id 7 (as a relaunched MPI rank would) and registers in time
    const holder = startEngine(rig, { id: 7, gated: false });
    engines.push(holder);
    await rig.waitForEngines(earlier.length + 1, 120_000);
    const holderUuid = rig.controller.engines().find((e) => e.id === 7)?.uuid;
    assert.ok(holderUuid, "the new engine got id 7");

    late.open();
    await until("the late heart to be refused", rig, async () => (await counter(rig, "ipp_controller_late_registrations_total", "id_taken")) === 1);
    await sleep(1500); // three more beats: the late heart keeps answering and stays ignored
    assert.deepEqual(rig.controller.engines().map((e) => [e.id, e.uuid]).sort(), [...earlier.map((id) => [id, rig.controller.engines().find((e) => e.id === id)!.uuid]), [7, holderUuid]].sort());
    assert.equal(await counter(rig, "ipp_controller_late_registrations_total", "completed"), 1, "only the first test's engine");
    assert.ok(alive(late.proc), "as upstream with a heart it does not know: the engine is left running, outside");

    const out = await rig.driver("engines_run.py", [JSON.stringify([...earlier, 7])]);
    assert.deepEqual(out.ids, [...earlier, 7].sort((x, y) => x - y), JSON.stringify(out));
    assert.equal((out.uuids as Record<string, string>)["7"], holderUuid);
    assert.equal((out.pids as Record<string, number>)["7"], holder.proc.pid, "id 7's tasks run in the engine that holds it");
  });
});
