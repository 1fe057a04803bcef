/**
 * The SSH adapter against the real rig's sshd: host key verification (a wrong key is a clear error
 * and no command runs), keepalive/reconnect with backoff when sshd goes away, metrics of the link;
 * links keyed by credentials as well as user@host.
 */
import { strict as assert } from "node:assert";
import { after, before, test } from "node:test";
import { Registry } from "prom-client";
import { dialects } from "../../../src/backends/pbs/core/dialects.ts";
import { PbsOperatorRuntime } from "../../../src/backends/pbs/runtime.ts";
import { SshLink, SshUnavailableError } from "../../../src/backends/pbs/ssh.ts";
import { createPbsMetrics } from "../../../src/metrics/operator.ts";
import { PbsBackend } from "../../../src/api/engine-cluster.ts";
import { createLogger } from "../../../src/util/log.ts";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { reconcileOnce, clusterObject } from "../../support/pbs-driver.ts";
import { startPbsRig, type PbsRig } from "../../support/pbs-rig.ts";

const logger = createLogger({ level: "error" });
let rig: PbsRig;
before(async () => { rig = await startPbsRig(); });
after(async () => { await rig?.stop(); });

const waitFor = async (what: string, f: () => boolean, ms = 20_000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

test("right host key: commands run and report exit codes; metrics record the link and latency", async () => {
  const registry = new Registry();
  const link = new SshLink({ host: rig.host, port: rig.port, user: rig.user, privateKey: rig.privateKey, knownHosts: rig.knownHosts }, { logger, metrics: createPbsMetrics(registry) });
  try {
    assert.ok(await link.waitConnected(15_000), `not connected: ${link.lastError}`);
    const r = await link.exec("echo hi; echo err >&2; exit 3", { label: "probe" });
    assert.deepEqual([r.stdout, r.stderr, r.code], ["hi\n", "err\n", 3]);
    const q = await link.exec(dialects.slurm.pollCommand({ user: rig.user, ids: [] }), { label: "qstat" });
    assert.equal(dialects.slurm.parsePoll(q.stdout, q.code).ok, true, q.stdout + q.stderr);
    const text = await registry.metrics();
    assert.match(text, new RegExp(`ipp_operator_ssh_connection_state\\{host="${rig.user}@127.0.0.1:${rig.port}",state="connected"\\} 1`));
    assert.match(text, /ipp_operator_ssh_command_duration_seconds_count\{host="[^"]+",command="qstat"\} 1/);
  } finally {
    link.close();
  }
});

test("wrong host key: a clear error naming both fingerprints, and no command runs", async () => {
  const marker = `${rig.home}/hostkey-marker-${process.pid}`;
  const link = new SshLink({ host: rig.host, port: rig.port, user: rig.user, privateKey: rig.privateKey, knownHosts: rig.knownHostsWrong }, { logger, backoffInitialMs: 200 });
  try {
    await waitFor("the first failed attempt", () => link.lastError !== undefined);
    assert.match(link.lastError!, /host key mismatch for \[127\.0\.0\.1\]:\d+: the server offered SHA256:\S+, known_hosts has ssh-ed25519 SHA256:\S+/);
    assert.notEqual(link.state, "connected");
    await assert.rejects(link.exec(`touch ${marker}`), (e: Error) => e instanceof SshUnavailableError && /host key mismatch/.test(e.message));
    const r = await rig.asUser(`test -e ${marker} && echo present || echo absent`);
    assert.equal(r.stdout.trim(), "absent");
  } finally {
    link.close();
  }
});

test("sshd stopped: retried with backoff, reported, and recovered when sshd is back", async () => {
  const registry = new Registry();
  const runtime = new PbsOperatorRuntime({
    logger, metrics: createPbsMetrics(registry), backoffInitialMs: 100, backoffMaxMs: 800, keepaliveIntervalMs: 500, keepaliveCountMax: 2, pollIntervalMs: 0, connectWaitMs: 15_000,
    readSecret: async () => ({ "ssh-privatekey": rig.privateKey, known_hosts: rig.knownHosts }),
  });
  const pbs = PbsBackend.parse({ host: rig.host, port: rig.port, user: rig.user, credentialsSecret: "x", dialect: "slurm", queue: rig.queue, walltime: "00:02:00", network: { mode: "direct", address: "127.0.0.1" } });
  const input = { cluster: { namespace: "t", name: `ssh-${process.pid}`, uid: String(Date.now()) }, engines: 1, pbs, engineConnection: "{}", recorded: [], generation: 1, observedGeneration: 1, deleting: true };
  try {
    assert.equal((await reconcileOnce(runtime, input)).error, undefined);
    const host = runtime.hostOf(clusterObject(input))!;
    await rig.sshdStop();
    await waitFor("the link to notice", () => host.link.state !== "connected");
    const down = await reconcileOnce(runtime, input);
    assert.match(down.error ?? "", /not connected|unreachable|ECONNREFUSED/);
    assert.equal(down.step.submitted.reason, "SchedulerUnreachable");
    await waitFor("two reconnect attempts", () => (host.link.lastError ?? "").length > 0 && /ECONNREFUSED|closed|reset/i.test(host.link.lastError!));
    const text = await registry.metrics();
    assert.match(text, /ipp_operator_ssh_connection_state\{host="[^"]+",state="connected"\} 0/);
    const before = host.link.connects;
    await rig.sshdStart();
    await waitFor("reconnection", () => host.link.state === "connected" && host.link.connects > before, 15_000);
    const up = await reconcileOnce(runtime, input);
    assert.equal(up.error, undefined);
    assert.equal(up.step.done, true);
  } finally {
    runtime.close();
    await rig.sshdStart();
  }
});

test("two clusters on one user@host with different credentials: a link each, neither resets the other", async () => {
  // the second credential: the batch user's own key, also authorised on the rig
  const ownKey = readFileSync(join(rig.home, ".ssh", "id_ed25519"), "utf8");
  const secrets: Record<string, Record<string, string>> = {
    "key-a": { "ssh-privatekey": rig.privateKey, known_hosts: rig.knownHosts },
    "key-b": { "ssh-privatekey": ownKey, known_hosts: rig.knownHosts },
  };
  const runtime = new PbsOperatorRuntime({ logger, pollIntervalMs: 0, connectWaitMs: 15_000, readSecret: async (_ns, name) => secrets[name] });
  const mk = (name: string, secret: string) => ({
    cluster: { namespace: "t", name, uid: `${name}-${process.pid}` }, engines: 1, recorded: [], generation: 1, observedGeneration: 1, deleting: true, engineConnection: "{}",
    pbs: PbsBackend.parse({ host: rig.host, port: rig.port, user: rig.user, credentialsSecret: secret, dialect: "slurm", network: { mode: "direct", address: "127.0.0.1" } }),
  });
  const a = mk("one", "key-a");
  const b = mk("two", "key-b");
  const a2 = mk("three", "key-a");
  try {
    for (let i = 0; i < 3; i++) {
      for (const c of [a, b, a2]) assert.equal((await reconcileOnce(runtime, c)).error, undefined);
    }
    const [ha, hb, ha2] = [a, b, a2].map((c) => runtime.hostOf(clusterObject(c))!);
    assert.equal(runtime.links, 2, "one link per credentials");
    assert.equal(ha, ha2, "same credentials share the link");
    assert.notEqual(ha, hb);
    assert.deepEqual([ha!.link.connects, hb!.link.connects], [1, 1], "no link was reset");
    assert.deepEqual([ha!.link.state, hb!.link.state], ["connected", "connected"]);
    // the credentials of one cluster rotate: it moves to a link of its own; the other keeps its link
    secrets["key-a"] = { ...secrets["key-b"]! };
    await runtime.release(clusterObject(a2));
    assert.equal((await reconcileOnce(runtime, a)).error, undefined);
    assert.equal(runtime.hostOf(clusterObject(a)), hb, "a now shares b's credentials, so b's link");
    assert.equal(ha!.link.state, "closed", "the old link is closed once no cluster uses it");
    assert.equal(hb!.link.connects, 1);
  } finally {
    runtime.close();
  }
});
