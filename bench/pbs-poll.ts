/**
 * Benchmark: polling a login host with 200 jobs across 20 EngineClusters, against the real rig
 * (Slurm's PBS wrappers and OpenPBS). The jobs are submitted held (they never run); another user's
 * jobs stand for the rest of the site. Every interval all 20 clusters observe at once through the
 * operator's pbs runtime; the benchmark counts the remote commands the link ran (it must be one
 * qstat per interval, whatever the number of clusters) and the bytes of qstat output parsed per
 * poll, next to what the old whole-site `qstat -f` (`-F json -x` on PBS) would have returned.
 *
 *   node --import tsx bench/pbs-poll.ts [--scheduler slurm|openpbs|both] [--clusters 20] [--jobs 200] [--others 100] [--intervals 5]
 *
 * Needs the rig (scripts/setup/pbs-rig.sh; OpenPBS: scripts/setup/openpbs.sh). Cancels its jobs at the end.
 */
import { Registry } from "prom-client";
import { clusterTag, jobPrefix } from "../src/backends/pbs/core/script.ts";
import { dialects } from "../src/backends/pbs/core/dialects.ts";
import { PbsOperatorRuntime } from "../src/backends/pbs/runtime.ts";
import { createPbsMetrics } from "../src/metrics/operator.ts";
import { createLogger } from "../src/util/log.ts";
import { RIG_SCHEDULERS, startPbsRig, type PbsRig, type RigScheduler } from "../test/support/pbs-rig.ts";

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const CLUSTERS = Number(arg("clusters", "20"));
const JOBS = Number(arg("jobs", "200"));
const OTHERS = Number(arg("others", "100"));
const INTERVALS = Number(arg("intervals", "5"));
const POLL_MS = 2_000;
const which = arg("scheduler", "both");
const schedulers: RigScheduler[] = which === "both" ? [...RIG_SCHEDULERS] : [which as RigScheduler];
const logger = createLogger({ level: "error" });

/** qsub -h of `names`, in one shell loop per call (as `user`, through `run`). */
async function submitHeld(run: (cmd: string) => Promise<{ stdout: string; code: number }>, scheduler: RigScheduler, names: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < names.length; i += 50) {
    const chunk = names.slice(i, i + 50);
    // Slurm's wrapper reads the script from /dev/stdin, PBS from stdin itself
    const tail = scheduler === "openpbs" ? "" : " /dev/stdin";
    const cmd = `cd ~ && for n in ${chunk.join(" ")}; do printf '#!/bin/bash\\nsleep 1\\n' | qsub -h -j oe -o /dev/null -N "$n"${tail} || exit 1; done`;
    const r = await run(cmd);
    if (r.code !== 0) throw new Error(`qsub failed: ${r.stdout}`);
    ids.push(...r.stdout.split("\n").map((l) => l.trim()).filter((l) => l !== ""));
  }
  return ids;
}

async function one(scheduler: RigScheduler): Promise<Record<string, unknown>> {
  const rig: PbsRig = await startPbsRig(scheduler);
  // the rest of the site: the other scheduler's batch user submits to this scheduler too
  const otherUser = scheduler === "openpbs" ? "ipphpc" : "ippbs";
  const asOther = (cmd: string) => otherRun(rig, otherUser, cmd);
  const tags = Array.from({ length: CLUSTERS }, (_, k) => ({ namespace: "bench", name: `c${k}`, uid: `bench-${k}-${Date.now()}` }));
  const perCluster = Math.ceil(JOBS / CLUSTERS);
  const names = tags.flatMap((t) => Array.from({ length: perCluster }, (_, j) => `${jobPrefix(clusterTag(t))}${String(j).padStart(5, "0")}`)).slice(0, JOBS);
  const t0 = Date.now();
  const ids = await submitHeld((c) => rig.asUser(c), scheduler, names);
  const others = OTHERS > 0 ? await submitHeld(asOther, scheduler, Array.from({ length: OTHERS }, (_, i) => `site-job-${i}`)) : [];
  const submitSec = (Date.now() - t0) / 1000;
  // OpenPBS clients authenticate from reserved ports (pbs_iff, resvport): a burst of hundreds of
  // qsubs leaves them in TIME_WAIT and the next commands wait for one. Let them drain first.
  if (scheduler === "openpbs") await new Promise((r) => setTimeout(r, 65_000));
  const registry = new Registry();
  const runtime = new PbsOperatorRuntime({
    logger, metrics: createPbsMetrics(registry), pollIntervalMs: POLL_MS, connectWaitMs: 15_000,
    readSecret: async () => ({ "ssh-privatekey": rig.privateKey, known_hosts: rig.knownHosts }),
  });
  try {
    // each cluster recorded its jobs' ids in status (so finished ones are asked for by id too)
    const clusters = tags.map((t, k) => ({
      apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: t,
      spec: { engines: 1, backend: { pbs: { host: rig.host, port: rig.port, user: rig.user, credentialsSecret: "s", dialect: rig.dialect, network: { mode: "direct", address: "127.0.0.1" } } } },
      status: { pbs: { jobs: ids.slice(k * perCluster, (k + 1) * perCluster).map((id) => ({ id, role: "engines", state: "H" })) } },
    }));
    await runtime.observe(clusters[0]!); // connect and detect
    const host = runtime.hostOf(clusters[0]!)!;
    const commands = async () => {
      const text = await registry.metrics();
      return [...text.matchAll(/^ipp_operator_ssh_command_duration_seconds_count\{[^}]*command="([^"]+)"\} (\d+)$/gm)].reduce((a, m) => a + Number(m[2]), 0);
    };
    const rows: Array<{ interval: number; remoteCommands: number; qstatPolls: number; bytes: number; jobsSeen: number; observeMs: number }> = [];
    for (let i = 0; i < INTERVALS; i++) {
      const c0 = await commands();
      const p0 = host.polls;
      const s = Date.now();
      const seen = await Promise.all(clusters.map((c) => runtime.observe(c)));
      const observeMs = Date.now() - s;
      const mine = seen.map((o) => ("error" in o ? (() => { throw new Error(o.error); })() : o.jobs.length));
      rows.push({ interval: i, remoteCommands: (await commands()) - c0, qstatPolls: host.polls - p0, bytes: host.lastPollBytes, jobsSeen: mine[0]!, observeMs });
      await new Promise((r) => setTimeout(r, POLL_MS + 50));
    }
    // what one poll of the whole site would parse (the old command), for comparison
    const d = dialects[rig.dialect];
    const whole = await host.link.exec(scheduler === "openpbs" ? "qstat -f -F json -x" : "qstat -f", { label: "whole-site" });
    const wholeParsed = d.parsePoll(scheduler === "openpbs" ? whole.stdout : `${whole.stdout}@@ipp-squeue-reasons 0\n`, whole.code);
    return {
      scheduler, clusters: CLUSTERS, jobs: ids.length, otherUsersJobs: others.length, submitSec,
      perInterval: rows,
      bytesPerPoll: rows[rows.length - 1]!.bytes,
      wholeSiteBytes: Buffer.byteLength(whole.stdout), wholeSiteJobs: wholeParsed.ok ? wholeParsed.jobs.length : wholeParsed.error,
    };
  } finally {
    runtime.close();
    const all = [...ids];
    for (let i = 0; i < all.length; i += 100) await rig.asUser(`qdel ${all.slice(i, i + 100).join(" ")} 2>/dev/null || true`);
    for (let i = 0; i < others.length; i += 100) await otherRun(rig, otherUser, `qdel ${others.slice(i, i + 100).join(" ")} 2>/dev/null || true`);
    await rig.stop();
  }
}

/** A command as another local user with the same scheduler environment as the rig's batch user. */
async function otherRun(rig: PbsRig, user: string, cmd: string): Promise<{ stdout: string; code: number }> {
  const { execFile } = await import("node:child_process");
  return new Promise((resolve) => {
    execFile("runuser", ["-u", user, "--", "bash", "-c", `cd ~ && ${cmd}`], { env: rig.env, timeout: 120_000 }, (err, stdout) => {
      resolve({ stdout, code: err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1 });
    });
  });
}

for (const s of schedulers) console.log(JSON.stringify(await one(s), null, 1));
