// CurveZMQ end to end: our controller with curve on (in-process and as `ipp-operator controller
// --enable-curve` the way ipcluster starts it), 4 real `ipengine --mpi` under mpiexec for
// ipyparallel 9.2 and 8.8 connecting as CURVE clients, a real client from the client file; a client
// holding the wrong server key never gets through while the controller keeps serving; a plain
// (NULL-mechanism) ZeroMQ peer reaches nothing.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { curveKeyPair, Dealer } from "zeromq";
import { startRig, descendants, MPIEXEC, type Rig } from "./harness.ts";
import { REPO_ROOT, venvBin, python, type IppMajor } from "../../support/paths.ts";
import { localEngineConnection } from "../../support/launcher.ts";
import { parseEngineCluster } from "../../../src/api/index.ts";
import { buildMpiObjects } from "../../../src/backends/mpi/core/builders.ts";
import { CONNECTION_KEYS, PATHS } from "../../../src/backends/mpi/core/names.ts";
import { lazyGenerated } from "../../../src/operator/keys.ts";
import { newApiToken, tokenAuth } from "../../../src/controller/http/auth.ts";
import { startHttpServer } from "../../../src/controller/http/server.ts";
import { silentLogger } from "../../../src/util/log.ts";

const N = 4;
const BIN = join(REPO_ROOT, "bin", "ipp-operator");
const mpiEnv = (dir: string): NodeJS.ProcessEnv => ({
  ...process.env, IPYTHONDIR: join(dir, "ipython"), OMPI_ALLOW_RUN_AS_ROOT: "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1",
  OMPI_MCA_btl: "self,vader,tcp", PYTHONUNBUFFERED: "1",
});

/** Run a test/python driver with `file` as its first argument; its last stdout line is JSON. */
function runDriver(major: IppMajor, dir: string, script: string, args: string[], timeoutMs = 150_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(python(major), [join(REPO_ROOT, "test/python", script), ...args], { env: mpiEnv(dir), timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      try {
        resolve(JSON.parse(stdout.trim().split("\n").pop() ?? "") as Record<string, unknown>);
      } catch {
        reject(new Error(`driver ${script} failed (${String(err)}):\nstdout:${stdout.slice(-3000)}\nstderr:${stderr.slice(-5000)}`));
      }
    });
  });
}

/** `hmacKey` "" is upstream's curve default (no signatures); the operator keeps its per-cluster key. */
function assertWorkflow(r: Record<string, unknown>, serverKey: string, hmacKey = ""): void {
  const errors = r.errors as Record<string, string>;
  assert.deepEqual(errors, {}, Object.entries(errors).map(([k, v]) => `${k}: ${v}`).join("\n"));
  assert.equal(r.file_key, hmacKey);
  assert.equal(r.file_curve_serverkey, serverKey);
  assert.equal(r.session_key, hmacKey);
  assert.deepEqual(r.ids, [0, 1, 2, 3]);
  assert.deepEqual(r.execute, { rank: [0, 1, 2, 3], size: [4, 4, 4, 4] });
  assert.equal(r.lb_apply, 42);
  assert.deepEqual(r.scatter_gather, [...Array(32).keys()]);
  assert.deepEqual(r.psum, [496, 496, 496, 496]);
}

/** A copy of the client file whose curve_serverkey is another (valid) key. */
function wrongKeyFile(dir: string, clientFile: string): string {
  const info = JSON.parse(readFileSync(clientFile, "utf8")) as Record<string, unknown>;
  const wrong = curveKeyPair().publicKey;
  assert.notEqual(wrong, info.curve_serverkey);
  const p = join(dir, "wrong-client.json");
  writeFileSync(p, JSON.stringify({ ...info, curve_serverkey: wrong }), { mode: 0o600 });
  return p;
}

const metric = async (rig: Rig, re: RegExp): Promise<number> => {
  const m = re.exec(await rig.registry.metrics());
  return m ? Number(m[1]) : 0;
};

for (const major of [9, 8] as IppMajor[]) {
  describe(`ipyparallel ${major}: CurveZMQ through startController`, { timeout: 300_000 }, () => {
    let rig: Rig;
    const keys = curveKeyPair();
    before(async () => {
      rig = await startRig(major, { key: "", curve: { publicKey: keys.publicKey, secretKey: keys.secretKey } });
      await rig.startEngines(N);
      await rig.waitForEngines(N);
    });
    after(async () => {
      await rig?.stop();
    });

    test("connection files carry the server key and an empty HMAC key", () => {
      for (const f of [rig.clientFile, rig.engineFile]) {
        const info = JSON.parse(readFileSync(f, "utf8")) as Record<string, unknown>;
        assert.equal(info.curve_serverkey, keys.publicKey, f);
        assert.equal(info.key, "", f);
      }
    });

    test("ids, DirectView execute, load-balanced apply, scatter/gather, psum = 496", async () => {
      assertWorkflow(await runDriver(major, rig.dir, "curve_workflow.py", [rig.clientFile, String(N)]), keys.publicKey);
    });

    if (major === 9) {
      test("a client with the wrong curve_serverkey times out; the right one keeps working", async () => {
        const r = await runDriver(major, rig.dir, "curve_wrong_key.py", [wrongKeyFile(rig.dir, rig.clientFile), "5"]);
        assert.equal(r.connected, false, JSON.stringify(r));
        assert.equal(r.error_type, "TimeoutError", JSON.stringify(r));
        assert.equal(rig.controller.engines().length, N);
        assertWorkflow(await runDriver(major, rig.dir, "curve_workflow.py", [rig.clientFile, String(N)]), keys.publicKey);
      });

      test("the HTTP JSON API's internal client connects as a CURVE client: execute and scatter/gather work", async () => {
        const token = newApiToken();
        const http = await startHttpServer({ controller: rig.controller, registry: rig.registry, port: 0, host: "127.0.0.1", logger: silentLogger, auth: tokenAuth(token) });
        try {
          const base = `http://127.0.0.1:${http.port}/api/v1`;
          const authorization = `Bearer ${token}`;
          const ex = await fetch(`${base}/execute`, { method: "POST", headers: { "content-type": "application/json", authorization }, body: JSON.stringify({ code: "6 * 7", targets: "all" }) });
          const exBody = await ex.text();
          assert.equal(ex.status, 200, exBody);
          const results = (JSON.parse(exBody) as { results: Array<{ status: string }> }).results;
          assert.deepEqual(results.map((r) => r.status), Array(N).fill("ok"), exBody);
          const data = Array.from({ length: 10 }, (_, i) => i + 0.5);
          const put = await fetch(`${base}/arrays/curve_a`, { method: "PUT", headers: { "content-type": "application/json", authorization }, body: JSON.stringify({ data, dtype: "float64" }) });
          assert.equal(put.status, 200, await put.text());
          const got = await fetch(`${base}/arrays/curve_a`, { headers: { authorization } });
          assert.deepEqual(((await got.json()) as { data: number[] }).data, data);
        } finally {
          await http.close();
        }
      });

      test("a plain (non-curve) ZeroMQ peer on the registration socket gets nothing through", async () => {
        const inRe = /ipp_controller_messages_total\{channel="registration",direction="in"\} (\d+)/;
        const badRe = /ipp_controller_bad_messages_total\{channel="registration",reason="[^"]*"\} (\d+)/;
        const before = { inbound: await metric(rig, inRe), bad: await metric(rig, badRe) };
        const info = JSON.parse(readFileSync(rig.clientFile, "utf8")) as Record<string, unknown>;
        const peer = new Dealer({ linger: 0, receiveTimeout: 3000 });
        const events: string[] = [];
        void (async () => {
          for await (const ev of peer.events) events.push("error" in ev ? `${ev.type}:${String((ev.error as { code?: string }).code)}` : ev.type);
        })().catch(() => undefined);
        try {
          peer.connect(`${String(info.interface)}:${String(info.registration)}`);
          const ids = Buffer.from("<IDS|MSG>");
          const header = JSON.stringify({ msg_id: "plain-1", msg_type: "connection_request", username: "x", session: "plain", date: new Date().toISOString(), version: "5.3" });
          await peer.send([ids, Buffer.alloc(0), header, "{}", "{}", "{}"]);
          await assert.rejects(peer.receive(), (e: Error & { code?: string }) => e.code === "EAGAIN", "no reply to a plain peer");
        } finally {
          peer.close();
        }
        const afterCounts = { inbound: await metric(rig, inRe), bad: await metric(rig, badRe) };
        // libzmq refuses the NULL-mechanism handshake against a CURVE server (ZMTP mechanism
        // mismatch) and drops the connection: the message never reaches the controller, so it is
        // neither counted as received nor as bad.
        assert.deepEqual(afterCounts, before);
        assert.ok(events.includes("handshake:error:protocol:ERR_ZMTP_MECHANISM_MISMATCH"), `peer events: ${events.join(",")}`);
        assert.ok(events.includes("disconnect"), `peer events: ${events.join(",")}`);
      });
    }
  });
}

describe("ipp-operator controller --enable-curve --profile-dir (as ipcluster starts it)", { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "ipp-curve-cli-"));
  const security = join(dir, "profile", "security");
  const clientFile = join(security, "ipcontroller-client.json");
  const engineFile = join(security, "ipcontroller-engine.json");
  let ctl: ChildProcess | undefined;
  let mpi: ChildProcess | undefined;
  let out = "";
  before(async () => {
    ctl = spawn(BIN, ["controller", "--enable-curve", `--profile-dir=${join(dir, "profile")}`, "--ip=127.0.0.1", "--log-level=WARN"], { env: mpiEnv(dir), stdio: ["ignore", "pipe", "pipe"] });
    ctl.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
    ctl.stderr!.on("data", (d: Buffer) => { out += d.toString(); });
    const deadline = Date.now() + 60_000;
    while (!(existsSync(clientFile) && existsSync(engineFile))) {
      if (Date.now() > deadline || ctl.exitCode !== null) throw new Error(`no connection files:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    mpi = startEngines(dir, engineFile);
  });
  after(async () => {
    await stopAll(mpi, ctl);
    rmSync(dir, { recursive: true, force: true });
  });

  test("generated key pair in both files; ipyparallel 9 engines and client work over CURVE", async () => {
    const c = JSON.parse(readFileSync(clientFile, "utf8")) as Record<string, unknown>;
    const e = JSON.parse(readFileSync(engineFile, "utf8")) as Record<string, unknown>;
    assert.equal(typeof c.curve_serverkey, "string");
    assert.equal((c.curve_serverkey as string).length, 40);
    assert.equal(e.curve_serverkey, c.curve_serverkey);
    assert.equal(c.key, "");
    assert.equal(e.key, "");
    assertWorkflow(await runDriver(9, dir, "curve_workflow.py", [clientFile, String(N)]), c.curve_serverkey as string);
  });
});

type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Start engines from `engineFile` under mpiexec; returns the mpiexec child (detached, own group). */
function startEngines(dir: string, engineFile: string): ChildProcess {
  return spawn(MPIEXEC, ["--oversubscribe", "--allow-run-as-root", "-n", String(N), venvBin(9, "ipengine"), "--mpi", "--log-level=WARN", `--file=${engineFile}`],
    { env: mpiEnv(dir), stdio: ["ignore", "ignore", "ignore"], detached: true });
}

async function stopAll(mpi: ChildProcess | undefined, ctl: ChildProcess | undefined): Promise<void> {
  const pids = mpi?.pid ? [mpi.pid, ...(await descendants(mpi.pid))] : [];
  for (const pid of pids) { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }
  if (ctl && ctl.exitCode === null && ctl.signalCode === null) {
    const exited = new Promise((r) => ctl.once("exit", r));
    ctl.kill("SIGTERM");
    await exited;
  }
}

describe("the operator's controller Deployment for spec.controller.curve, run locally with its rendered args and env", { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "ipp-curve-op-"));
  const connDir = join(dir, "connection");
  const runDir = join(dir, "run");
  let ctl: ChildProcess | undefined;
  let mpi: ChildProcess | undefined;
  let out = "";
  const parsed = parseEngineCluster({
    apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster",
    metadata: { name: "psum", namespace: "science", uid: "0b6c1c5e-1111-4222-8333-944455556666", generation: 1 },
    spec: { engines: N, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } }, controller: { curve: true, heartbeatPeriodMs: 1000 } },
  });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  // the operator's own key generation, as the reconciler passes it to the builders
  const objects = buildMpiObjects(parsed.value, lazyGenerated());
  const secretData = (objects.connectionSecret as J).data as Record<string, string>;
  const fromSecret = (k: string) => Buffer.from(secretData[k]!, "base64").toString("utf8");
  const container = (objects.controllerDeployment as J).spec.template.spec.containers[0] as J;

  before(async () => {
    // the Secret volume and the run emptyDir, mounted where the pod has them
    mkdirSync(connDir);
    mkdirSync(runDir);
    for (const k of Object.keys(secretData)) writeFileSync(join(connDir, k), fromSecret(k), { mode: 0o440 });
    const args = (container.args as string[]).map((a) => a.replace(PATHS.connectionDir, connDir).replace(PATHS.controllerRunDir, runDir));
    const env: Record<string, string> = {};
    for (const e of (container.env ?? []) as J[]) env[e.name] = e.value ?? fromSecret(e.valueFrom.secretKeyRef.key);
    ctl = spawn(BIN, args, { env: { ...mpiEnv(dir), ...env }, stdio: ["ignore", "pipe", "pipe"] });
    ctl.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
    ctl.stderr!.on("data", (d: Buffer) => { out += d.toString(); });
    const deadline = Date.now() + 60_000;
    while (!existsSync(join(runDir, "ipcontroller-engine.json"))) {
      if (Date.now() > deadline || ctl.exitCode !== null) throw new Error(`controller did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const engineFile = join(dir, "engine.json");
    writeFileSync(engineFile, JSON.stringify(localEngineConnection(objects)), { mode: 0o600 });
    mpi = startEngines(dir, engineFile);
  });
  after(async () => {
    await stopAll(mpi, ctl);
    rmSync(dir, { recursive: true, force: true });
  });

  test("the rendered Deployment carries --enable-curve and the Secret's key pair", () => {
    assert.ok((container.args as string[]).includes("--enable-curve"));
    assert.deepEqual((container.env as J[]).filter((e) => e.valueFrom !== undefined).map((e) => e.valueFrom.secretKeyRef.key), [CONNECTION_KEYS.curveSecretKey, CONNECTION_KEYS.curvePublicKey]);
    const written = JSON.parse(readFileSync(join(runDir, "ipcontroller-client.json"), "utf8")) as J;
    assert.equal(written.curve_serverkey, fromSecret(CONNECTION_KEYS.curvePublicKey), "the controller serves the Secret's key pair");
  });

  test("a client from the Secret's client file (pointed at localhost) runs the workflow over CURVE", async () => {
    const client = JSON.parse(fromSecret(CONNECTION_KEYS.client)) as J;
    assert.equal(client.curve_serverkey, fromSecret(CONNECTION_KEYS.curvePublicKey));
    const clientFile = join(dir, "client.json");
    writeFileSync(clientFile, JSON.stringify({ ...client, interface: "tcp://127.0.0.1", location: "127.0.0.1" }), { mode: 0o600 });
    assertWorkflow(await runDriver(9, dir, "curve_workflow.py", [clientFile, String(N)]), client.curve_serverkey as string, client.key as string);
    const wrong = await runDriver(9, dir, "curve_wrong_key.py", [wrongKeyFile(dir, clientFile), "5"]);
    assert.equal(wrong.error_type, "TimeoutError", JSON.stringify(wrong));
  });
});
