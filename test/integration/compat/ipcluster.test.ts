/**
 * `ipcluster start -n 8 --engines=MPI` with the profile's ipcluster_config.py pointing the
 * controller launcher at `ipp-operator controller`, then the seed notebook's workflow from a plain
 * Client(profile_dir=, cluster_id=), then `ipcluster stop`. ipyparallel 9.2 (8 engines) and 8.8
 * (4 engines) with the local controller launcher, and 9.2 with the MPI controller launcher.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BIN, childEnv, descendants, makeProfile, reap, requireMpiexec, runDriver, venvBin, type IppMajor } from "./harness.ts";

const CASES: Array<[IppMajor, number, "Local" | "MPI"]> = [[9, 8, "Local"], [8, 4, "Local"], [9, 2, "MPI"]];

for (const [major, n, controller] of CASES) {
  test(`ipyparallel ${major}: ipcluster start -n ${n} --engines=MPI --controller=${controller} runs our controller; the workflow; ipcluster stop`, { timeout: 400_000 }, async () => {
    requireMpiexec();
    const profile = await makeProfile({
      ours: true,
      // the MPI controller launcher (mpiexec -n 1 <controller_cmd>) takes the same one line
      extraConfig: controller === "MPI"
        ? [`c.MPIControllerLauncher.controller_cmd = [${JSON.stringify(BIN)}, "controller"]`, `c.MPIControllerLauncher.mpi_args = ["--allow-run-as-root"]`]
        : [],
    });
    const clusterId = `ipc${major}-${process.pid}`;
    const env = childEnv({ PATH: `${join(venvBin(major, "python"), "..")}:${process.env.PATH ?? ""}` });
    const ipcluster = spawn(venvBin(major, "ipcluster"),
      ["start", `-n=${n}`, "--engines=MPI", `--controller=${controller}`, `--profile-dir=${profile.dir}`, `--cluster-id=${clusterId}`, "--log-level=INFO"],
      { env, stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    ipcluster.stdout.on("data", (d: Buffer) => { log += d.toString(); });
    ipcluster.stderr.on("data", (d: Buffer) => { log += d.toString(); });
    const exited = new Promise<number | null>((r) => ipcluster.on("exit", (c) => r(c)));
    const seen = new Map<number, number>();
    const poll = setInterval(() => { for (const [p, t] of descendants(ipcluster.pid!)) seen.set(p, t); }, 500);
    let pids: Array<[number, number]> = [];
    try {
      const run = await runDriver(major, "client", { profile_dir: profile.dir, cluster_id: clusterId, n, timeout: 180 }, 300_000);
      pids = run.pids;
      const files = run.step("connect").files as Record<string, { mode: string } | null>;
      assert.equal(files.client?.mode, "0o600");
      assert.equal(files.engine?.mode, "0o600");
      const w = run.step("workflow");
      assert.deepEqual(w.ids, Array.from({ length: n }, (_, i) => i));
      assert.deepEqual(w.mpi_size, Array(n).fill(n));
      assert.deepEqual(w.totalsum, Array(n).fill((4 * n * (4 * n - 1)) / 2));
      assert.deepEqual(w.totalsum_exec, w.totalsum);
      // the controller ipcluster started is ours
      const ps = [...seen.keys()].map((p) => { try { return spawnSync("cat", [`/proc/${p}/cmdline`], { encoding: "utf8" }).stdout.replace(/\0/g, " "); } catch { return ""; } });
      assert.ok(ps.some((c) => c.includes("bin/ipp-operator") || /src\/cli\.[jt]s controller/.test(c)), `our controller among ipcluster's children:\n${ps.join("\n")}`);

      const stop = spawnSync(venvBin(major, "ipcluster"), ["stop", `--profile-dir=${profile.dir}`, `--cluster-id=${clusterId}`], { env, encoding: "utf8", timeout: 60_000 });
      assert.equal(stop.status, 0, stop.stderr);
      const timer = setTimeout(() => ipcluster.kill("SIGKILL"), 60_000);
      const code = await exited;
      clearTimeout(timer);
      assert.equal(code, 0, log.slice(-3000));
      const sec = join(profile.dir, "security");
      assert.ok(!existsSync(join(sec, `ipcontroller-${clusterId}-client.json`)), "client file removed");
      assert.ok(!existsSync(join(sec, `ipcontroller-${clusterId}-engine.json`)), "engine file removed");
      // Our controller's own log lines reach this log only through ipcluster's output relay, which
      // may lose the last ones when ipcluster exits; the exit status the launcher reports is exact.
      if (controller === "Local") {
        assert.match(log, /Controller stopped: \{'exit_code': 0,/, "our controller exited 0 (clean stop)");
      } // under --controller=MPI the launcher sees mpiexec's status, which is 1 after SIGTERM whatever the program did (the MPI engine set shows the same)
    } finally {
      clearInterval(poll);
      if (ipcluster.exitCode === null) ipcluster.kill("SIGINT");
      const killed = await reap([...pids, ...seen.entries()]);
      await profile.cleanup();
      assert.deepEqual(killed, [], "every process ipcluster started exited by itself");
    }
  });
}
