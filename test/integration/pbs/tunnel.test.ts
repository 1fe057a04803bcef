/**
 * network.mode sshTunnel on the real rig: our controller listens only on 127.0.0.1 at ports the job
 * is never told; the operator side (TunnelForwarder) binds remote forwards on the login host's
 * loopback over its SSH link; the job's connection info names only the forwarded ports and
 * `ssh: <batch user>@<login host>:<port>`, so each ipengine tunnels its ZeroMQ connections through
 * the login host with openssh (pexpect in the batch user's venv). 4 MPI engines register, an
 * ipyparallel 9.2 client computes psum = 496. Then sshd is restarted and the forwarder binds the
 * same ports again; a connection through them reaches the controller.
 */
import { strict as assert } from "node:assert";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { Registry } from "prom-client";
import { PbsBackend } from "../../../src/api/engine-cluster.ts";
import { PbsHost } from "../../../src/backends/pbs/host.ts";
import { clusterTag } from "../../../src/backends/pbs/core/script.ts";
import { rebase, shiftedBase, sshServer, tunnelChannels, tunnelledConnection, tunnelPortBase } from "../../../src/backends/pbs/core/tunnel.ts";
import { TunnelForwarder } from "../../../src/backends/pbs/tunnel.ts";
import { PbsOperatorRuntime } from "../../../src/backends/pbs/runtime.ts";
import { startController, type ControllerHandle } from "../../../src/controller/controller.ts";
import { writeConnectionFiles } from "../../../src/controller/connection-files.ts";
import { createPbsMetrics, createTunnelMetrics } from "../../../src/metrics/operator.ts";
import { createLogger } from "../../../src/util/log.ts";
import { python } from "../../support/paths.ts";
import { reconcileOnce, type DriverInput } from "../../support/pbs-driver.ts";
import { startPbsRig, type PbsRig } from "../../support/pbs-rig.ts";

const run = promisify(execFile);
const logger = createLogger({ level: "error" });
const ENGINES = 4;
let rig: PbsRig;
let host: PbsHost;
let controller: ControllerHandle;
let forwarder: TunnelForwarder | undefined;
let dir: string;
const registry = new Registry();
const submittedIds: string[] = [];

before(async () => {
  rig = await startPbsRig();
  // the rig's sshd config (MaxStartups for many engine tunnels) applies from a fresh start
  await rig.sshdStop();
  await rig.sshdStart();
  host = new PbsHost({ host: rig.host, port: rig.port, user: rig.user, privateKey: rig.privateKey, knownHosts: rig.knownHosts },
    { logger, metrics: createPbsMetrics(registry), pollIntervalMs: 500, backoffInitialMs: 100, backoffMaxMs: 1_000, keepaliveIntervalMs: 1_000, keepaliveCountMax: 2 });
  assert.ok(await host.link.waitConnected(15_000), `ssh: ${host.link.lastError}`);
  controller = await startController({ ip: "127.0.0.1", key: `tun-${process.pid}-${Date.now()}`, heartbeatPeriodMs: 1000, taskScheme: "leastload", shutdownDelayMs: -1 },
    { logger, registry: new Registry() });
  dir = mkdtempSync(join(tmpdir(), "ipp-tun-"));
});

after(async () => {
  if (submittedIds.length > 0) await rig.asUser(`qdel ${submittedIds.join(" ")} 2>/dev/null || true`);
  await forwarder?.close();
  host?.close();
  await controller?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  await rig?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** From the login host (as the batch user): connect to 127.0.0.1:port and print what the peer says first, if anything. */
const probe = (port: number) => rig.asUser(`timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${port} && echo open'`);

test("engines register through the login host's forwards, psum = 496; after an sshd restart the same ports forward again", async () => {
  const cluster = { namespace: "default", name: "tunnel", uid: `uid-t-${process.pid}-${Date.now()}` };
  const engineInfo = controller.engineConnection;
  const channels = tunnelChannels(engineInfo, "127.0.0.1", tunnelPortBase(clusterTag(cluster)));
  const metrics = createTunnelMetrics(registry);
  forwarder = new TunnelForwarder(host.link, channels, { logger, metrics, cluster: "default/tunnel", retryMs: 500 });
  assert.ok(await forwarder.waitForwarding(15_000), `forwarding: ${forwarder.lastError}`);
  const ports = forwarder.ports();
  assert.deepEqual([...ports.values()], channels.map((c) => c.remotePort), "the deterministic ports were bound");
  assert.match(await registry.metrics(), new RegExp(`ipp_operator_ssh_tunnels_active\\{host="[^"]+"\\} ${channels.length}`));

  const conn = tunnelledConnection(engineInfo, ports, sshServer(rig.user, rig.host, rig.port));
  const text = JSON.stringify(conn);
  const controllerPorts = [engineInfo.registration, engineInfo.control, engineInfo.mux, engineInfo.task, engineInfo.iopub, engineInfo.hb_ping, engineInfo.hb_pong, ...engineInfo.broadcast];
  for (const p of controllerPorts) assert.ok(!new RegExp(`\\b${p}\\b`).test(text), `the job's connection info must not name controller port ${p}: ${text}`);
  assert.equal(conn.interface, "tcp://127.0.0.1");
  assert.equal(conn.ssh, `${rig.user}@127.0.0.1:${rig.port}`);

  const pbs = PbsBackend.parse({
    host: rig.host, port: rig.port, user: rig.user, credentialsSecret: "hpc-ssh", dialect: "auto", queue: rig.queue, walltime: "00:10:00",
    nodes: 1, ppn: ENGINES, setup: [`source ${join(rig.venv, "bin", "activate")}`, "export OMPI_MCA_btl=self,vader,tcp"],
    network: { mode: "sshTunnel" },
  });
  const input: DriverInput = { cluster, engines: ENGINES, pbs, engineConnection: text, recorded: [], generation: 1, observedGeneration: 1, deleting: false };
  const runtime = new PbsOperatorRuntime({ logger, pollIntervalMs: 500, connectWaitMs: 15_000, readSecret: async () => ({ "ssh-privatekey": rig.privateKey, known_hosts: rig.knownHosts }) });
  const first = await reconcileOnce(runtime, input);
  runtime.close();
  assert.equal(first.error, undefined);
  const id = first.jobs[0]!.id;
  submittedIds.push(id);

  await until("4 engines through the tunnel", async () => (controller.engines().filter((e) => e.alive).length >= ENGINES ? true : undefined), 150_000);
  const files = await writeConnectionFiles(dir, controller.clientConnection, controller.engineConnection);
  const code = [
    "import json, sys, numpy as np, ipyparallel as ipp",
    "rc = ipp.Client(sys.argv[1], timeout=30); rc.wait_for_engines(4, timeout=60)",
    "v = rc[:]; v.block = True",
    "def psum(a):\n    from mpi4py import MPI\n    import numpy as np\n    s = np.array(0.0, 'd'); MPI.COMM_WORLD.Allreduce([np.sum(a), MPI.DOUBLE], [s, MPI.DOUBLE], op=MPI.SUM); return s",
    "v.scatter('a', np.arange(32, dtype=float)); v.push(dict(psum=psum))",
    "v.execute('totalsum = psum(a)')",
    "print(json.dumps({'ids': rc.ids, 'totalsum': [float(x) for x in v['totalsum']]})); rc.close()",
  ].join("\n");
  const out = await run(python(9), ["-c", code, files.client], { timeout: 120_000 });
  const r = JSON.parse(out.stdout) as { ids: number[]; totalsum: number[] };
  assert.equal(r.ids.length, ENGINES);
  assert.deepEqual(r.totalsum, [496, 496, 496, 496]);

  // the job is done with: cancel it before sshd goes away
  await rig.asUser(`qdel ${id}`);

  // sshd restarted: the link reconnects and the forwarder binds the same ports again
  const before = forwarder.establishments;
  await rig.sshdStop();
  await until("the tunnel to notice", async () => (forwarder!.state !== "forwarding" ? true : undefined), 20_000);
  await rig.sshdStart();
  await until("the tunnel to come back", async () => (forwarder!.state === "forwarding" && forwarder!.establishments > before ? true : undefined), 30_000);
  assert.deepEqual(forwarder.ports(), ports, "the same ports after the reconnect");
  const p = await probe(ports.get("registration")!);
  assert.equal(p.stdout.trim(), "open", "a connection to the forwarded registration port on the login host reaches the controller");
  assert.match(await registry.metrics(), new RegExp(`ipp_operator_ssh_tunnels_active\\{host="[^"]+"\\} ${channels.length}`));

  await forwarder.close();
  assert.equal(forwarder.state, "closed");
  assert.match(await registry.metrics(), /ipp_operator_ssh_tunnels_active\{host="[^"]+"\} 0/);
  assert.notEqual((await probe(ports.get("registration")!)).stdout.trim(), "open", "closed forwards refuse connections");
});

test("the operator's pbs runtime keeps one forwarder per cluster, reports its state in observe, and closes it on release", async () => {
  const pbs = { host: rig.host, port: rig.port, user: rig.user, credentialsSecret: "hpc-ssh", dialect: "slurm", queue: rig.queue, network: { mode: "sshTunnel" } };
  const cluster = { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { namespace: "hpc", name: "tun", uid: `uid-rt-${process.pid}-${Date.now()}` }, spec: { engines: 1, backend: { pbs } } };
  const runtime = new PbsOperatorRuntime({
    logger, pollIntervalMs: 500, tunnelMetrics: createTunnelMetrics(new Registry()),
    readSecret: async (_ns, name) => (name === "hpc-ssh" ? { "ssh-privatekey": rig.privateKey, known_hosts: rig.knownHosts } : undefined),
  });
  try {
    const channels = tunnelChannels(controller.engineConnection, "127.0.0.1", tunnelPortBase(clusterTag({ namespace: "hpc", name: "tun", uid: cluster.metadata.uid })));
    await runtime.tunnel(cluster, channels);
    const seen = await until("forwarding in observe", async () => {
      const o = await runtime.observe(cluster) as { tunnel?: { state: string } };
      return o.tunnel?.state === "forwarding" ? o : undefined;
    }, 20_000);
    assert.equal((seen as { dialect?: string }).dialect, "slurm");
    assert.equal((await probe(channels[0]!.remotePort)).stdout.trim(), "open");
    await runtime.tunnel(cluster, channels); // the same channels again: nothing changes
    assert.equal(((await runtime.observe(cluster)) as { tunnel?: { state: string } }).tunnel?.state, "forwarding");
    await runtime.release(cluster);
    assert.equal(((await runtime.observe(cluster)) as { tunnel?: unknown }).tunnel, undefined);
    assert.notEqual((await probe(channels[0]!.remotePort)).stdout.trim(), "open", "released forwards refuse connections");
  } finally {
    runtime.close();
  }
});

test("a port of the cluster's block is taken on the login host (another user holds it): the forwarder binds the next free block and says which", async () => {
  const cluster = { namespace: "default", name: "taken", uid: `uid-k-${process.pid}-${Date.now()}` };
  const base = tunnelPortBase(clusterTag(cluster));
  const channels = tunnelChannels(controller.engineConnection, "127.0.0.1", base);
  // someone else listens on the block's third port on the login host's loopback
  const squatter = createServer();
  await new Promise<void>((resolve, reject) => { squatter.once("error", reject); squatter.listen(base + 2, "127.0.0.1", resolve); });
  const f = new TunnelForwarder(host.link, channels, { logger, cluster: "default/taken", retryMs: 500 });
  try {
    assert.ok(await f.waitForwarding(20_000), `not forwarding: ${f.lastError}`);
    assert.equal(f.portBase, shiftedBase(base, 1));
    assert.deepEqual(f.skippedBlocks, [base]);
    assert.deepEqual([...f.ports().values()], channels.map((_, i) => shiftedBase(base, 1) + i));
    assert.equal((await probe(shiftedBase(base, 1))).stdout.trim(), "open", "the fallback block forwards to the controller");
    assert.deepEqual(f.boundChannels(), rebase(channels, shiftedBase(base, 1)));
  } finally {
    await f.close();
    await new Promise((r) => squatter.close(r));
  }
});
