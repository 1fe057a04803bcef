/**
 * `ipp-operator controller` as a process, the way ipyparallel's launchers run it: options and
 * environment, where and how the connection files appear, SIGINT/SIGTERM, exit codes, --reuse,
 * and that every alias/flag of the installed ipcontroller (9.2 and 8.8) is classified here.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, statSync, readdirSync } from "node:fs";
import { connect as netConnect, createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { ALIASES, FLAGS } from "../../../src/controller/ipcontroller-args.ts";
import { BIN, childEnv, makeProfile, python, type IppMajor } from "./harness.ts";

interface Running {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function start(args: string[], env: Record<string, string> = {}): Running {
  const child = spawn(BIN, ["controller", ...args], { env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => { err += d.toString(); });
  child.stdout!.on("data", (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  return { child, stderr: () => err, exited };
}

async function waitFor(cond: () => boolean, ms: number, what: string, r?: Running): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${r ? `\n${r.stderr()}` : ""}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function stop(r: Running, sig: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
  r.child.kill(sig);
  const t = setTimeout(() => r.child.kill("SIGKILL"), 10_000);
  const code = await r.exited;
  clearTimeout(t);
  return code;
}

function run(args: string[], env: Record<string, string> = {}) {
  return spawnSync(BIN, ["controller", ...args], { env: childEnv(env), encoding: "utf8", timeout: 30_000 });
}

const files = (security: string, id: string) => {
  const base = id ? `ipcontroller-${id}` : "ipcontroller";
  return { client: join(security, `${base}-client.json`), engine: join(security, `${base}-engine.json`) };
};
const bothExist = (f: { client: string; engine: string }) => existsSync(f.client) && existsSync(f.engine);

/** A real ipyparallel Client from the file: number of engines (0) proves the wire works. */
function clientIds(major: IppMajor, clientFile: string): number[] {
  const code = "import ipyparallel as ipp, json, sys; rc = ipp.Client(sys.argv[1], timeout=20); print(json.dumps(rc.ids)); rc.close()";
  const r = spawnSync(python(major), ["-c", code, clientFile], { env: childEnv(), encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as number[];
}

const CLIENT_KEYS = ["broadcast", "control", "curve_serverkey", "interface", "iopub", "key", "location", "mux", "notification",
  "pack", "registration", "signature_scheme", "ssh", "task", "task_scheme", "unpack"];
const ENGINE_KEYS = ["broadcast", "control", "curve_serverkey", "hb_ping", "hb_pong", "interface", "iopub", "key", "location",
  "mux", "pack", "registration", "signature_scheme", "ssh", "task", "unpack"];

test("--help and --version exit 0", () => {
  const h = run(["--help"]);
  assert.equal(h.status, 0);
  assert.match(h.stdout, /--profile-dir/);
  assert.match(h.stdout, /controller_cmd/);
  assert.match(h.stdout, /--metrics-port=PORT/);
  assert.equal(run(["--help-all"]).status, 0);
  assert.match(run(["--version"]).stdout, /^\d+\.\d+\.\d+/);
});

test("options for features not implemented fail with exit 2 and name the option", () => {
  for (const [args, flag] of [[["--mongodb"], "--mongodb"],
    [["--scheme=pure"], "--scheme=pure"], [["--transport=ipc"], "--transport=ipc"], [["--no-secure"], "--no-secure"],
    [["--bogus"], "--bogus"], [["stray"], "stray"]] as Array<[string[], string]>) {
    const r = run(args);
    assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.ok(r.stderr.includes(flag), `${args.join(" ")}: stderr names ${flag}: ${r.stderr}`);
    assert.equal(r.stdout, "");
  }
});

test("launcher-style start (8.x/9.x env): files at <profile>/security/ipcontroller-<id>-*.json, 0600; SIGTERM removes them, exit 0", { timeout: 60_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  try {
    const f = files(profile.security, "abc");
    const r = start(["--ip=127.0.0.1"], { IPP_PROFILE_DIR: profile.dir, IPP_CLUSTER_ID: "abc" });
    const t0 = Date.now();
    await waitFor(() => bothExist(f), 30_000, "connection files", r);
    const startupMs = Date.now() - t0;
    assert.ok(startupMs < 60_000, "within the launcher's 60 s connection_info_timeout");
    for (const p of [f.client, f.engine]) assert.equal(statSync(p).mode & 0o777, 0o600, p);
    const c = JSON.parse(readFileSync(f.client, "utf8")) as Record<string, unknown>;
    const e = JSON.parse(readFileSync(f.engine, "utf8")) as Record<string, unknown>;
    assert.deepEqual(Object.keys(c).sort(), CLIENT_KEYS);
    assert.deepEqual(Object.keys(e).sort(), ENGINE_KEYS);
    assert.equal(c.key, e.key);
    assert.equal(c.registration, e.registration);
    assert.equal(c.interface, "tcp://127.0.0.1");
    assert.deepEqual(clientIds(9, f.client), []);
    assert.equal(await stop(r, "SIGTERM"), 0, r.stderr());
    assert.ok(!existsSync(f.client) && !existsSync(f.engine), "files removed on clean exit");
  } finally {
    await profile.cleanup();
  }
});

test("7.1-style start (--profile-dir D --cluster-id ''): plain file names; SIGINT stops cleanly", { timeout: 60_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  try {
    const f = files(profile.security, "");
    const r = start(["--profile-dir", profile.dir, "--cluster-id", ""]);
    await waitFor(() => bothExist(f), 30_000, "connection files", r);
    assert.deepEqual(clientIds(8, f.client), []);
    assert.equal(await stop(r, "SIGINT"), 0, r.stderr());
    assert.ok(!existsSync(f.client) && !existsSync(f.engine));
  } finally {
    await profile.cleanup();
  }
});

test("--reuse keeps the files on exit and the same ports and key across restarts", { timeout: 90_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  try {
    const f = files(profile.security, "r");
    const args = ["--profile-dir", profile.dir, "--cluster-id=r", "--reuse", "--http-port=0"];
    const tokenFile = join(profile.security, "ipcontroller-r-api-token");
    const r1 = start(args);
    await waitFor(() => bothExist(f) && /controller ready/.test(r1.stderr()), 30_000, "connection files", r1);
    const first = { c: readFileSync(f.client, "utf8"), e: readFileSync(f.engine, "utf8"), token: readFileSync(tokenFile, "utf8") };
    assert.equal(await stop(r1), 0, r1.stderr());
    assert.ok(bothExist(f), "kept with --reuse");
    const r2 = start(args);
    await waitFor(() => /controller ready/.test(r2.stderr()), 30_000, "second start", r2);
    assert.equal(readFileSync(tokenFile, "utf8"), first.token, "the API token is kept and reused with the files");
    assert.equal(readFileSync(f.client, "utf8"), first.c, "client file unchanged");
    assert.equal(readFileSync(f.engine, "utf8"), first.e, "engine file unchanged (same ports, same key)");
    assert.match(r2.stderr(), /reusing connection files/);
    assert.deepEqual(clientIds(9, f.client), [], "a client with the old file connects to the restarted controller");
    assert.equal(await stop(r2), 0, r2.stderr());
    assert.ok(bothExist(f));
    // without --reuse: fresh files, removed at exit
    const r3 = start(["--profile-dir", profile.dir, "--cluster-id=r"]);
    await waitFor(() => /controller ready/.test(r3.stderr()), 30_000, "third start", r3);
    assert.notEqual(readFileSync(f.client, "utf8"), first.c, "new key and ports without --reuse");
    assert.equal(await stop(r3), 0);
    assert.ok(!existsSync(f.client) && !existsSync(f.engine));
  } finally {
    await profile.cleanup();
  }
});

test("--shutdown-delay: after SIGTERM the ports refuse connections at once while the process stays up for the delay, then exits 0", { timeout: 60_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  try {
    const f = files(profile.security, "sd");
    const r = start(["--profile-dir", profile.dir, "--cluster-id=sd", "--ip=127.0.0.1", "--shutdown-delay=4"]);
    await waitFor(() => bothExist(f) && /controller ready/.test(r.stderr()), 30_000, "controller ready", r);
    const port = (JSON.parse(readFileSync(f.engine, "utf8")) as { registration: number }).registration;
    const connects = () => new Promise<string>((res) => {
      const s = netConnect(port, "127.0.0.1");
      s.once("connect", () => { s.destroy(); res("connected"); });
      s.once("error", (e: NodeJS.ErrnoException) => res(e.code ?? String(e)));
    });
    assert.equal(await connects(), "connected", "listening before the signal");
    const signalled = Date.now();
    r.child.kill("SIGTERM");
    await waitFor(() => /staying up before exiting/.test(r.stderr()), 10_000, "the stop", r);
    assert.equal(await connects(), "ECONNREFUSED", "refused at once: engines retry without waiting");
    assert.equal(r.child.exitCode, null, "still running during the delay");
    assert.equal(await r.exited, 0, r.stderr());
    const took = Date.now() - signalled;
    assert.ok(took >= 3500, `stayed up for the delay (${took} ms)`);
  } finally {
    await profile.cleanup();
  }
});

test("--ports pool is used in ipcontroller's order; a port in use makes startup fail with exit 1 and no files", { timeout: 60_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
  const busy = (blocker.address() as AddressInfo).port;
  try {
    const bad = start(["--profile-dir", profile.dir, `--ports=${busy}`]);
    assert.equal(await bad.exited, 1, bad.stderr());
    assert.match(bad.stderr(), /failed to start/);
    assert.ok(!existsSync(files(profile.security, "").client));
    // a free range: registration first, then the engine sockets, then the client sockets
    const base = await freeRange(16);
    const r = start(["--profile-dir", profile.dir, `--ports=${base}-${base + 15}`]);
    const f = files(profile.security, "");
    await waitFor(() => bothExist(f), 30_000, "connection files", r);
    const e = JSON.parse(readFileSync(f.engine, "utf8")) as Record<string, unknown>;
    const c = JSON.parse(readFileSync(f.client, "utf8")) as Record<string, unknown>;
    assert.deepEqual([e.registration, e.control, e.mux, e.task, e.iopub, e.hb_ping, e.hb_pong, e.broadcast],
      [base, base + 1, base + 2, base + 3, base + 4, base + 5, base + 6, [base + 7, base + 8]]);
    assert.deepEqual([c.control, c.mux, c.task, c.iopub, c.notification, c.broadcast],
      [base + 9, base + 10, base + 11, base + 12, base + 13, base + 14]);
    assert.equal(await stop(r), 0);
  } finally {
    blocker.close();
    await profile.cleanup();
  }
});

test("--ip='*' --location: interface tcp://* and the location in both files; HTTP metrics; --log-to-file", { timeout: 60_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  try {
    const r = start(["--profile-dir", profile.dir, "--ip='*'", "--location=10.9.8.7", "--http-port=0", "--log-to-file", "--cluster-id=star"]);
    const f = files(profile.security, "star");
    await waitFor(() => bothExist(f), 30_000, "connection files", r);
    for (const p of [f.client, f.engine]) {
      const d = JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
      assert.equal(d.interface, "tcp://*");
      assert.equal(d.location, "10.9.8.7");
    }
    const logs = () => readdirSync(join(profile.dir, "log")).filter((n) => n.startsWith("ipcontroller-star-"));
    await waitFor(() => logs().length === 1 && /serving metrics/.test(readFileSync(join(profile.dir, "log", logs()[0]!), "utf8")), 10_000, "log file");
    const logText = readFileSync(join(profile.dir, "log", logs()[0]!), "utf8");
    const port = (JSON.parse(logText.split("\n").find((l) => l.includes("serving metrics"))!) as { port: number }).port;
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /ipp_controller_engines_registered/);
    assert.equal(await stop(r), 0);
  } finally {
    await profile.cleanup();
  }
});

/**
 * The first of `count` consecutive loopback ports that are all free right now, below the kernel's
 * ephemeral range (so an outgoing connection of another test can't take one meanwhile) and clear of
 * the PBS rig's tunnel blocks (22000-31599).
 */
async function freeRange(count: number): Promise<number> {
  const isFree = (port: number) => new Promise<boolean>((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 12000 + Math.floor(Math.random() * (8000 - count));
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await isFree(p);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports in 12000-19999`);
}

/** Two loopback ports free right now. */
async function twoFreePorts(): Promise<[number, number]> {
  const servers = [createServer(), createServer()];
  const ports = await Promise.all(servers.map((srv) => new Promise<number>((r) => srv.listen(0, "127.0.0.1", () => r((srv.address() as AddressInfo).port)))));
  await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
  return [ports[0]!, ports[1]!];
}

test("--metrics-port: /metrics, /healthz, /readyz on their own listener, --http-port serves only the JSON API", { timeout: 60_000 }, async () => {
  const profile = await makeProfile({ ours: true });
  try {
    const [apiPort, metricsPort] = await twoFreePorts();
    const shown = run(["--profile-dir", profile.dir, `--http-port=${apiPort}`, "--metrics-port", String(metricsPort), "--metrics-host=127.0.0.1", "--show-config-json"]);
    assert.equal(shown.status, 0, shown.stderr);
    const config = JSON.parse(shown.stdout) as Record<string, unknown>;
    assert.deepEqual([config.httpPort, config.metricsPort, config.metricsHost], [apiPort, metricsPort, "127.0.0.1"]);

    const r = start(["--profile-dir", profile.dir, `--http-port=${apiPort}`, "--metrics-port", String(metricsPort), "--cluster-id=split"]);
    await waitFor(() => bothExist(files(profile.security, "split")), 30_000, "connection files", r);
    await waitFor(() => /serving the API over HTTP/.test(r.stderr()), 10_000, "API listener", r);
    // the API token: beside the connection files, mode 0600, never in the log
    const tokenFile = join(profile.security, "ipcontroller-split-api-token");
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
    const token = readFileSync(tokenFile, "utf8").trim();
    assert.ok(Buffer.from(token, "base64url").length >= 32);
    const status = async (port: number, path: string, headers: Record<string, string> = {}) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
      await res.arrayBuffer();
      return res.status;
    };
    const got: Record<string, number> = {};
    for (const path of ["/metrics", "/healthz", "/readyz", "/api/v1/engines"]) {
      got[`metrics ${path}`] = await status(metricsPort, path);
      got[`api ${path}`] = await status(apiPort, path);
    }
    got["api /api/v1/engines with the token"] = await status(apiPort, "/api/v1/engines", { authorization: `Bearer ${token}` });
    got["metrics /api/v1/engines with the token"] = await status(metricsPort, "/api/v1/engines", { authorization: `Bearer ${token}` });
    assert.deepEqual(got, {
      "metrics /metrics": 200, "api /metrics": 404, "metrics /healthz": 200, "api /healthz": 404,
      "metrics /readyz": 200, "api /readyz": 404, "metrics /api/v1/engines": 404, "api /api/v1/engines": 401,
      "api /api/v1/engines with the token": 200, "metrics /api/v1/engines with the token": 404,
    });
    assert.ok(!r.stderr().includes(token), "the token is not logged");
    assert.match(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(), /ipp_controller_engines_registered/);
    assert.equal(await stop(r), 0);
    assert.equal(existsSync(tokenFile), false, "the token file goes with the connection files");
  } finally {
    await profile.cleanup();
  }
  for (const bad of [["--metrics-port=70000"], ["--metrics-port=x"], ["--metrics-port"], ["--metrics-host="]]) {
    const b = run(bad);
    assert.equal(b.status, 2, `${bad.join(" ")}: ${b.stderr}`);
    assert.match(b.stderr, /--metrics-(port|host)/);
  }
});

test("every alias and flag of the installed ipcontroller (9.2, 8.8) is known here, with the same target", () => {
  for (const major of [9, 8] as IppMajor[]) {
    const code = "from ipyparallel.controller import app; import json; print(json.dumps({'aliases': {k: v for k, v in app.aliases.items()}, 'flags': sorted(app.flags)}))";
    const r = spawnSync(python(major), ["-c", code], { env: childEnv(), encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const upstream = JSON.parse(r.stdout) as { aliases: Record<string, string>; flags: string[] };
    for (const [alias, target] of Object.entries(upstream.aliases)) {
      assert.equal(ALIASES[alias], target, `ipyparallel ${major}: --${alias}`);
    }
    for (const flag of upstream.flags) assert.ok(FLAGS[flag], `ipyparallel ${major}: --${flag}`);
  }
});
