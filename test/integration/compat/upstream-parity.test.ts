/**
 * The same scenario run twice through ipp.Cluster (ipyparallel 9.2, 2 local engines): once with
 * upstream ipcontroller, once with `ipp-operator controller`. What a user and a client can observe
 * must be the same: file names, modes and fields, interface and location, whether files survive a
 * stop, whether a --reuse restart keeps them byte for byte, and that tasks run before and after.
 * Scenarios: --reuse, a custom --cluster-id, --ip='*' with --location.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { networkInterfaces } from "node:os";
import { makeProfile, reap, runDriver } from "./harness.ts";

function machineIp(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}

interface Scenario { name: string; clusterId: string; params: Record<string, unknown> }

const scenarios: Scenario[] = [
  { name: "--reuse across a controller restart", clusterId: "reuse", params: { controller_args: ["--reuse"], restart: true } },
  { name: "a custom --cluster-id", clusterId: "my-cluster_1.x", params: {} },
  { name: "--ip='*' with --location", clusterId: "star", params: { controller_ip: "*", controller_location: machineIp() } },
];

async function record(ours: boolean, s: Scenario): Promise<Record<string, unknown>> {
  const profile = await makeProfile({ ours });
  let pids: Array<[number, number]> = [];
  try {
    const run = await runDriver(9, "compare", { profile_dir: profile.dir, cluster_id: s.clusterId, n: 2, engines: "local", timeout: 90, ...s.params }, 300_000);
    pids = run.pids;
    return run.step("compare").record as Record<string, unknown>;
  } finally {
    await reap(pids);
    await profile.cleanup();
  }
}

for (const s of scenarios) {
  test(`same client-visible behaviour as upstream ipcontroller: ${s.name}`, { timeout: 700_000 }, async () => {
    const upstream = await record(false, s);
    const ours = await record(true, s);
    assert.deepEqual(ours, upstream);
    // and the scenario did what it says
    assert.deepEqual(ours.task, [42, 42]);
    if (s.params.restart) {
      assert.deepEqual(ours.files_after_stop, { client: true, engine: true }, "--reuse keeps the files");
      assert.deepEqual(ours.files_after_restart_same, { client: true, engine: true }, "same ports and key after restart");
      assert.deepEqual(ours.task_after_restart, [42, 42]);
    } else {
      assert.deepEqual(ours.files_after_stop, { client: false, engine: false }, "files removed on a clean exit");
    }
    const files = ours.files as Record<string, { interface: string; location: string }>;
    if (s.params.controller_ip === "*") {
      assert.equal(files.client!.interface, "tcp://*");
      assert.equal(files.client!.location, s.params.controller_location);
    }
  });
}
