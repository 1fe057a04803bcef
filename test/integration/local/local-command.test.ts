/**
 * `ipp-operator local` as a user runs it: a real subprocess through bin/ipp-operator, our controller,
 * 8 ipyparallel 9.2 engines under Open MPI, a real ipyparallel 9.2 client running the reference
 * psum, /metrics over HTTP, and SIGTERM leaving no process behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT, python } from "../../support/paths.ts";
import { descendants, isLive, readProcTable } from "../../../src/local/proctree.ts";

const execFileP = promisify(execFile);
const BIN = join(REPO_ROOT, "bin", "ipp-operator");

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startLocal(args: string[]): Running {
  const child = spawn(BIN, ["local", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (b: Buffer) => { out += b.toString(); });
  child.stderr!.on("data", (b: Buffer) => { err += b.toString(); });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, stderr: () => err, exit };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number, r: Running): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void r.exit.then(() => { exited = true; });
  while (!cond()) {
    if (exited) throw new Error(`ipp-operator local exited while waiting for ${what}; stderr:\n${r.stderr()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stderr:\n${r.stderr()}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** every live process whose command line mentions `needle` */
function processesMentioning(needle: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8");
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      if (cmd.includes(needle) && !/\) Z /.test(stat)) found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

const PSUM = `
import numpy as np
from mpi4py import MPI
view = rc[:]
view.activate()
view.execute("from mpi4py import MPI\\nimport numpy as np", block=True)
def psum(a):
    locsum = np.sum(a)
    rcvBuf = np.array(0.0, 'd')
    MPI.COMM_WORLD.Allreduce([locsum, MPI.DOUBLE], [rcvBuf, MPI.DOUBLE], op=MPI.SUM)
    return rcvBuf
view.push({"psum": psum}, block=True)
print("ids", rc.ids)
view.execute("size = MPI.COMM_WORLD.Get_size()", block=True)
print("size", view["size"])
view.scatter("a", np.arange(32, dtype=float), block=True)
print("a", [list(map(float, x)) for x in view["a"]])
view.execute("totalsum = psum(a)", block=True)
print("totalsum", [float(x) for x in view["totalsum"]])
rc.close()
`;

test("ipp-operator local --engines 8: registers all, psum gives 496.0 everywhere, /metrics, SIGTERM leaves nothing", { timeout: 300_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), "ipp-local-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = startLocal(["--engines", "8", "--out", out, "--python", python(9), "--http-port", "0", "--heartbeat-ms", "1000"]);
  t.after(() => { if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL"); });

  await waitFor("the Python line", () => r.stdout().includes("\n"), 240_000, r);
  const clientFile = join(out, "ipcontroller-client.json");
  assert.equal(r.stdout(), `import ipyparallel as ipp; rc = ipp.Client(${JSON.stringify(clientFile)})\n`);
  assert.match(r.stderr(), /engines 8\/8 registered/);
  assert.match(r.stderr(), /engines 0\/8 registered/);
  assert.equal(statSync(clientFile).mode & 0o777, 0o600);
  assert.ok(existsSync(join(out, "ipcontroller-engine.json")));
  const port = Number(/http:\/\/127\.0\.0\.1:(\d+)\//.exec(r.stderr())?.[1]);
  assert.ok(port > 0, "the HTTP address is printed");

  // the printed line, verbatim, then the seed notebook's psum
  const { stdout: py } = await execFileP(python(9), ["-c", r.stdout() + PSUM], { timeout: 120_000 });
  const line = (k: string) => py.split("\n").find((l) => l.startsWith(k + " "))?.slice(k.length + 1);
  assert.equal(line("ids"), "[0, 1, 2, 3, 4, 5, 6, 7]");
  assert.equal(line("size"), "[8, 8, 8, 8, 8, 8, 8, 8]");
  assert.equal(line("a"), JSON.stringify(Array.from({ length: 8 }, (_, i) => [0, 1, 2, 3].map((j) => (4 * i + j).toFixed(1)))).replaceAll('"', "").replaceAll(",", ", "));
  assert.equal(line("totalsum"), "[496.0, 496.0, 496.0, 496.0, 496.0, 496.0, 496.0, 496.0]");

  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  assert.match(metrics, /^ipp_controller_engines_registered 8$/m);
  assert.match(metrics, /^ipp_controller_engines_alive 8$/m);
  assert.match(metrics, /^ipp_controller_messages_total\{channel="mux",direction="in"\} \d+$/m);
  assert.match(metrics, /^# TYPE ipp_controller_task_latency_seconds histogram$/m);
  const ready = await fetch(`http://127.0.0.1:${port}/readyz?engines=8`);
  assert.equal(ready.status, 200);

  // the JSON API: its own port, the token in a 0600 file beside the connection files, a curl line
  const tokenFile = join(out, "ipcontroller-api-token");
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
  const token = readFileSync(tokenFile, "utf8").trim();
  assert.ok(Buffer.from(token, "base64url").length >= 32, "at least 256 random bits");
  const apiPort = Number(/JSON API: http:\/\/127\.0\.0\.1:(\d+)\/api\/v1/.exec(r.stderr())?.[1]);
  assert.ok(apiPort > 0 && apiPort !== port, "the API has a port of its own");
  assert.ok(r.stderr().includes(`curl -H "Authorization: Bearer $(cat '${tokenFile}')" http://127.0.0.1:${apiPort}/api/v1/engines`), r.stderr());
  assert.equal((await fetch(`http://127.0.0.1:${port}/api/v1/engines`)).status, 404, "no API on the metrics port");
  // what a local user without the token sends: 401, and the code does not run
  const marker = join(out, "ran-without-token");
  const execute = (headers: Record<string, string>) => fetch(`http://127.0.0.1:${apiPort}/api/v1/execute`, {
    method: "POST", headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ code: `open(${JSON.stringify(marker)}, "w").write("x")`, targets: [0] }),
  });
  const refused: Record<string, string>[] = [{}, { authorization: "Bearer " + "A".repeat(43) }, { authorization: token }];
  for (const headers of refused) {
    const res = await execute(headers);
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: string }).error, "unauthorized");
  }
  // the same request with the token runs; the file it makes shows the refused ones made none
  const withToken = await (await fetch(`http://127.0.0.1:${apiPort}/api/v1/execute`, {
    method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ code: "import os; ok = os.path.exists(" + JSON.stringify(marker) + ")", targets: [0] }),
  })).json() as { results: Array<{ status: string }> };
  assert.equal(withToken.results[0]!.status, "ok");
  assert.equal(existsSync(marker), false, "no refused request ran code");
  const good = await execute({ authorization: `Bearer ${token}` });
  assert.equal(good.status, 200);
  assert.equal(existsSync(marker), true, "the same request with the token runs");
  assert.ok(!r.stdout().includes(token) && !r.stderr().includes(token), "the token is never printed");
  assert.match(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), /^ipp_controller_api_auth_failures_total\{reason="missing"\} 1$/m);

  // record the whole tree under the command, then SIGTERM it
  const table = readProcTable();
  const tree = descendants(table, r.child.pid!);
  const engines = tree.filter((p) => !p.comm.startsWith("mpiexec") && readFileSync(`/proc/${p.pid}/cmdline`, "utf8").includes("ipyparallel.engine\0"));
  const nannies = tree.filter((p) => readFileSync(`/proc/${p.pid}/cmdline`, "utf8").includes("ipyparallel.engine.nanny"));
  assert.equal(engines.length, 8, "8 engine processes under the command");
  assert.equal(nannies.length, 8, "8 nannies under the command");
  assert.ok(tree.some((p) => p.comm.startsWith("mpiexec")));

  r.child.kill("SIGTERM");
  const exit = await r.exit;
  assert.deepEqual(exit, { code: 0, signal: null }, r.stderr());
  const after = readProcTable();
  const alive = tree.filter((p) => isLive(after, p.pid, p.start));
  assert.deepEqual(alive.map((p) => `${p.pid} ${p.comm}`), [], "no recorded process survives");
  assert.deepEqual(processesMentioning(out), [], "no engine anywhere still uses the connection files");
  assert.equal(existsSync(clientFile), false, "client file removed");
  assert.equal(existsSync(join(out, "ipcontroller-engine.json")), false, "engine file removed");
  assert.equal(existsSync(tokenFile), false, "API token file removed");
});

test("engines that die before registering: mpiexec's status and output tail, non-zero exit", { timeout: 60_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), "ipp-local-fail-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  // a Python without ipyparallel's engine module: every rank fails at once
  const r = startLocal(["--engines", "2", "--out", out, "--python", "/usr/bin/python3", "--timeout", "50"]);
  const exit = await r.exit;
  assert.notEqual(exit.code, 0);
  assert.match(r.stderr(), /mpiexec ended before all engines registered \(0\/2\): exit status [1-9]/);
  assert.match(r.stderr(), /No module named|ipyparallel/);
  assert.equal(r.stdout(), "", "no Python line when the engines failed");
  assert.equal(existsSync(join(out, "ipcontroller-client.json")), false);
});

test("SIGINT while engines are still registering stops everything and exits 0", { timeout: 120_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), "ipp-local-int-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = startLocal(["--engines", "2", "--out", out, "--python", python(9)]);
  t.after(() => { if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL"); });
  // wait until mpiexec and both engines exist, then interrupt before registration completes
  let tree: ReturnType<typeof descendants> = [];
  await waitFor("two engine processes", () => {
    tree = descendants(readProcTable(), r.child.pid!);
    return tree.filter((p) => p.comm.startsWith("python")).length >= 2;
  }, 60_000, r);
  r.child.kill("SIGINT");
  const exit = await r.exit;
  assert.deepEqual(exit, { code: 0, signal: null }, r.stderr());
  assert.match(r.stderr(), /SIGINT: stopping engines and controller/);
  const after = readProcTable();
  assert.deepEqual(tree.filter((p) => isLive(after, p.pid, p.start)).map((p) => `${p.pid} ${p.comm}`), []);
  assert.deepEqual(processesMentioning(out), []);
  assert.equal(existsSync(join(out, "ipcontroller-client.json")), false);
});

test("an engine killed while serving: mpiexec's status is reported, everything stops, exit non-zero", { timeout: 120_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), "ipp-local-die-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = startLocal(["--engines", "2", "--out", out, "--python", python(9), "--heartbeat-ms", "1000"]);
  t.after(() => { if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL"); });
  await waitFor("the Python line", () => r.stdout().includes("\n"), 90_000, r);
  const tree = descendants(readProcTable(), r.child.pid!);
  const engine = tree.find((p) => !p.comm.startsWith("mpiexec") && readFileSync(`/proc/${p.pid}/cmdline`, "utf8").includes("--mpi"));
  assert.ok(engine, "an engine process");
  process.kill(engine.pid, "SIGKILL");
  const exit = await r.exit;
  assert.notEqual(exit.code, 0);
  assert.match(r.stderr(), /mpiexec ended while serving: (exit status [1-9]|killed by SIG)/);
  const after = readProcTable();
  assert.deepEqual(tree.filter((p) => isLive(after, p.pid, p.start)).map((p) => `${p.pid} ${p.comm}`), []);
  assert.equal(existsSync(join(out, "ipcontroller-client.json")), false);
});
