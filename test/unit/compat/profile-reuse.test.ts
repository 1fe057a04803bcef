import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectionFileNames, connectionFilePaths, ensureProfileDirs, resolveProfile } from "../../../src/controller/profile.ts";
import { parseReusedConnection, readReusedConnection, ReuseError } from "../../../src/controller/reuse.ts";

const ctx = { cwd: "/work", home: "/home/u" };

test("profile: default is ~/.ipython/profile_default", () => {
  const p = resolveProfile({ profile: "default" }, ctx);
  assert.deepEqual(p, {
    name: "default", dir: "/home/u/.ipython/profile_default",
    securityDir: "/home/u/.ipython/profile_default/security", logDir: "/home/u/.ipython/profile_default/log",
  });
});

test("profile: --profile and --ipython-dir / $IPYTHONDIR", () => {
  assert.equal(resolveProfile({ profile: "pbs" }, ctx).dir, "/home/u/.ipython/profile_pbs");
  assert.equal(resolveProfile({ profile: "pbs", ipythonDir: "/ipd" }, ctx).dir, "/ipd/profile_pbs");
  assert.equal(resolveProfile({ profile: "pbs", ipythonDir: "rel" }, ctx).dir, "/work/rel/profile_pbs");
  assert.equal(resolveProfile({ profile: "pbs", ipythonDir: "~/ip" }, ctx).dir, "/home/u/ip/profile_pbs");
});

test("profile: an explicit directory wins and names the profile when it is profile_<name>", () => {
  const p = resolveProfile({ profile: "default", profileDir: "/x/profile_mpi", ipythonDir: "/ignored" }, ctx);
  assert.equal(p.dir, "/x/profile_mpi");
  assert.equal(p.name, "mpi");
  assert.equal(p.securityDir, "/x/profile_mpi/security");
  assert.equal(resolveProfile({ profile: "default", profileDir: "here/" }, ctx).dir, "/work/here");
  assert.equal(resolveProfile({ profile: "default", profileDir: "/a/b" }, ctx).name, "default");
});

test("connection file names with and without a cluster id, as the launchers expect", () => {
  assert.deepEqual(connectionFileNames(""), { client: "ipcontroller-client.json", engine: "ipcontroller-engine.json" });
  assert.deepEqual(connectionFileNames("1700-abcd"), { client: "ipcontroller-1700-abcd-client.json", engine: "ipcontroller-1700-abcd-engine.json" });
  assert.deepEqual(connectionFileNames("x", { client: "c.json" }), { client: "c.json", engine: "ipcontroller-x-engine.json" });
  assert.deepEqual(connectionFilePaths("/s", connectionFileNames("")), { client: "/s/ipcontroller-client.json", engine: "/s/ipcontroller-engine.json" });
});

test("ensureProfileDirs creates security (0700) and log; refuses a missing profile without auto_create", async () => {
  const root = await mkdtemp(join(tmpdir(), "ipp-profile-"));
  try {
    const loc = resolveProfile({ profile: "t", ipythonDir: root }, { cwd: root, home: root });
    await assert.rejects(ensureProfileDirs(loc, false), /does not exist/);
    await ensureProfileDirs(loc, true);
    assert.equal((await stat(loc.securityDir)).mode & 0o777, 0o700);
    assert.ok((await stat(loc.logDir)).isDirectory());
    await ensureProfileDirs(loc, false); // exists now
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

// What ipcontroller 9.2 wrote (ports/key from a real run).
const engineFile = {
  ssh: "", interface: "tcp://127.0.0.1", registration: 44801, control: 39131, mux: 45677, task: 35183, iopub: 41549,
  hb_ping: 45355, hb_pong: 37551, broadcast: [36165, 41391], key: "1b4d1fa1-4b0ec5ae5a0b6b0e8d84b6f3",
  curve_serverkey: null, location: "vm", pack: "json", unpack: "json", signature_scheme: "hmac-sha256",
};
const clientFile = {
  ssh: "gw", interface: "tcp://127.0.0.1", registration: 44801, control: 45045, mux: 34567, task: 43115,
  task_scheme: "leastload", iopub: 46237, notification: 38613, broadcast: 40181, key: "1b4d1fa1-4b0ec5ae5a0b6b0e8d84b6f3",
  curve_serverkey: null, location: "vm", pack: "json", unpack: "json", signature_scheme: "hmac-sha256",
};

test("reuse: every port, the key, location and ssh servers come back from the files", () => {
  const r = parseReusedConnection(clientFile, engineFile);
  assert.equal(r.key, engineFile.key);
  assert.equal(r.ip, "127.0.0.1");
  assert.equal(r.transport, "tcp");
  assert.equal(r.location, "vm");
  assert.equal(r.sshServer, "gw");
  assert.equal(r.engineSshServer, "");
  assert.equal(r.taskScheme, "leastload");
  assert.equal(r.curveServerKey, null);
  assert.deepEqual(r.ports, {
    registration: 44801,
    engine: { control: 39131, mux: 45677, task: 35183, iopub: 41549, hb_ping: 45355, hb_pong: 37551, broadcast: [36165, 41391] },
    client: { control: 45045, mux: 34567, task: 43115, iopub: 46237, notification: 38613, broadcast: 40181 },
  });
});

test("reuse: files that disagree or lack fields are refused", () => {
  assert.throws(() => parseReusedConnection({ ...clientFile, key: "other" }, engineFile), /mismatch.*key/);
  assert.throws(() => parseReusedConnection({ ...clientFile, registration: 1 }, engineFile), /mismatch.*registration/);
  assert.throws(() => parseReusedConnection(clientFile, { ...engineFile, mux: "x" }), /"mux" is not a port/);
  assert.throws(() => parseReusedConnection(clientFile, { ...engineFile, broadcast: [1] }), /broadcast/);
  assert.throws(() => parseReusedConnection({ ...clientFile, interface: "tcp://10.0.0.1" }, engineFile), /differ/);
  assert.throws(() => parseReusedConnection([], engineFile), ReuseError);
  assert.throws(() => parseReusedConnection(clientFile, { ...engineFile, interface: "127.0.0.1" }), /transport:\/\/host/);
});

test("readReusedConnection: absent, loaded, invalid", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ipp-reuse-"));
  try {
    await mkdir(dir, { recursive: true });
    const paths = connectionFilePaths(dir, connectionFileNames("c"));
    assert.deepEqual(await readReusedConnection(paths), { kind: "absent" });
    await writeFile(paths.client, JSON.stringify(clientFile));
    assert.equal((await readReusedConnection(paths)).kind, "invalid");
    await writeFile(paths.engine, "{not json");
    assert.equal((await readReusedConnection(paths)).kind, "invalid");
    await writeFile(paths.engine, JSON.stringify(engineFile));
    const r = await readReusedConnection(paths);
    assert.equal(r.kind, "loaded");
    if (r.kind === "loaded") assert.equal(r.connection.ports.registration, 44801);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
