import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { PbsBackend } from "../../../../src/api/engine-cluster.ts";
import { dialects } from "../../../../src/backends/pbs/core/dialects.ts";
import { renderScript, engineSsh } from "../../../../src/backends/pbs/core/script.ts";
import { MAX_BLOCK_TRIES, PORT_BASE, PORT_BLOCK, PORT_BLOCKS, TunnelError, rebase, shiftedBase, sshServer, tunnelChannels, tunnelledConnection, tunnelPortBase } from "../../../../src/backends/pbs/core/tunnel.ts";

const engine = {
  ssh: "", interface: "tcp://ipp-psum.default.svc", registration: 10101, control: 10102, mux: 10103, task: 10104, iopub: 10105,
  hb_ping: 10106, hb_pong: 10107, broadcast: [10108, 10109], key: "k", curve_serverkey: null, location: "x", pack: "json", unpack: "json", signature_scheme: "hmac-sha256",
};

test("tunnel ports: a deterministic block per cluster tag, inside the range", () => {
  const a = tunnelPortBase("abcde");
  assert.equal(tunnelPortBase("abcde"), a);
  assert.notEqual(tunnelPortBase("abcdf"), a);
  for (const t of ["00000", "fffff", "12345", "a1b2c"]) {
    const b = tunnelPortBase(t);
    assert.ok(b >= PORT_BASE && b + PORT_BLOCK <= PORT_BASE + PORT_BLOCKS * PORT_BLOCK && (b - PORT_BASE) % PORT_BLOCK === 0, String(b));
  }
});

test("tunnel channels: every port the engines use, each to the controller, consecutive forwarded ports", () => {
  const ch = tunnelChannels(engine, "ipp-psum.default.svc.cluster.local", 30000);
  assert.deepEqual(ch.map((c) => c.name), ["registration", "control", "mux", "task", "iopub", "hb_ping", "hb_pong", "broadcast.0", "broadcast.1"]);
  assert.deepEqual(ch.map((c) => c.target.port), [10101, 10102, 10103, 10104, 10105, 10106, 10107, 10108, 10109]);
  assert.ok(ch.every((c) => c.target.host === "ipp-psum.default.svc.cluster.local"));
  assert.deepEqual(ch.map((c) => c.remotePort), [30000, 30001, 30002, 30003, 30004, 30005, 30006, 30007, 30008]);
  assert.deepEqual(tunnelChannels(engine, "h", 0).map((c) => c.remotePort), Array(9).fill(0));
  assert.throws(() => tunnelChannels({ ...engine, broadcast: Array.from({ length: 30 }, (_, i) => 11000 + i) }, "h", 30000), TunnelError);
  assert.throws(() => tunnelChannels({ ...engine, mux: 0 }, "h", 30000), TunnelError);
});

test("tunnelled connection: loopback interface, forwarded ports only, ssh server; refuses a missing port", () => {
  const ch = tunnelChannels(engine, "h", 30000);
  const bound = new Map(ch.map((c) => [c.name, c.remotePort]));
  const t = tunnelledConnection(engine, bound, sshServer("alice", "login01", 2222));
  assert.equal(t.interface, "tcp://127.0.0.1");
  assert.equal(t.ssh, "alice@login01:2222");
  assert.deepEqual([t.registration, t.control, t.mux, t.task, t.iopub, t.hb_ping, t.hb_pong, ...t.broadcast], ch.map((c) => c.remotePort));
  assert.equal(t.key, "k");
  assert.equal(sshServer("alice", "login01", 22), "alice@login01");
  bound.delete("hb_pong");
  assert.throws(() => tunnelledConnection(engine, bound, "x"), /hb_pong/);
});

test("job script: with an ssh server in the connection info, engines tunnel with paramiko and the batch user's key", () => {
  const pbs = PbsBackend.parse({ host: "login01", user: "alice", credentialsSecret: "s" });
  const direct = renderScript(dialects.pbspro, "ipp-aaaaa-bbbbb", { engines: 2, pbs, engineConnection: JSON.stringify(engine) }, "default/psum");
  assert.match(direct, /^exec mpiexec -n 2 ipengine --mpi --log-level=WARN$/m);
  assert.doesNotMatch(direct, /paramiko/);
  const conn = JSON.stringify({ ...engine, ssh: "alice@login01:2222" });
  assert.equal(engineSsh(conn), "alice@login01:2222");
  assert.equal(engineSsh("not json"), "");
  const s = renderScript(dialects.pbspro, "ipp-aaaaa-bbbbb", { engines: 2, pbs, engineConnection: conn }, "default/psum");
  assert.match(s, /^exec mpiexec -n 2 ipengine --mpi --log-level=WARN --IPEngine.paramiko=True "--IPEngine.sshkey=\$IPP_SSH_KEY"$/m);
  // the key line picks the first key that exists, as the shell runs it
  const keyLine = s.split("\n").find((l) => l.startsWith("IPP_SSH_KEY="))!;
  const home = spawnSync("mktemp", ["-d"], { encoding: "utf8" }).stdout.trim();
  spawnSync("bash", ["-c", `mkdir -p ${home}/.ssh && touch ${home}/.ssh/id_ecdsa ${home}/.ssh/id_rsa`]);
  const r = spawnSync("bash", ["-c", `${keyLine}; printf %s "$IPP_SSH_KEY"`], { encoding: "utf8", env: { HOME: home, PATH: process.env.PATH } });
  spawnSync("rm", ["-rf", home]);
  assert.equal(r.stdout, `${home}/.ssh/id_ecdsa`);
});

test("fallback blocks: the next blocks after the preferred one, wrapping inside the range", () => {
  assert.equal(shiftedBase(PORT_BASE, 1), PORT_BASE + PORT_BLOCK);
  const last = PORT_BASE + (PORT_BLOCKS - 1) * PORT_BLOCK;
  assert.equal(shiftedBase(last, 1), PORT_BASE, "wraps to the first block");
  assert.equal(shiftedBase(last, 0), last);
  const ch = tunnelChannels(engine, "h", 30000);
  assert.deepEqual(rebase(ch, 30016).map((c) => c.remotePort), ch.map((_, i) => 30016 + i));
  assert.deepEqual(rebase(ch, 30016).map((c) => c.target), ch.map((c) => c.target));
  for (let i = 0; i < MAX_BLOCK_TRIES; i++) {
    const b = shiftedBase(tunnelPortBase("abcde"), i);
    assert.ok(b >= PORT_BASE && b + PORT_BLOCK <= PORT_BASE + PORT_BLOCKS * PORT_BLOCK && (b - PORT_BASE) % PORT_BLOCK === 0);
  }
});
