/**
 * Where the controller's memory goes as engines connect: our controller in this process, N simulated
 * engines (bench/sim, full connection model: 8 connections per engine at the controller), and once
 * all are registered and a few heartbeats have gone by, the process's RSS split into the V8 heap,
 * Node's external memory, and the rest (libzmq's per-connection state and the allocator's heap).
 * One controller per N, one after the other; memory a smaller N freed may stay with the allocator, so
 * for clean figures run one N per process (as bench/README.md does).
 *
 *   node --expose-gc --max-semi-space-size=2 --import tsx bench/scale/memory.ts [--n 0,256,512,1024] [--lean]
 */
import { parseArgs } from "node:util";
import { Registry } from "prom-client";
import { startController } from "../../src/controller/controller.ts";
import { createLogger } from "../../src/util/log.ts";
import { startSimCluster } from "../sim/cluster.ts";
import type { EngineConnection } from "../sim/engine.ts";

const { values: opts } = parseArgs({ options: { n: { type: "string", default: "0,256,512,1024" }, lean: { type: "boolean", default: false }, settle: { type: "string", default: "10" } } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (b: number) => (b / 1e6).toFixed(0);

process.stdout.write("| N | connections | RSS MB | V8 heap used / total MB | external MB | rest (native) MB | rest per connection KB |\n|---:|---:|---:|---:|---:|---:|---:|\n");
for (const n of opts.n.split(",").map(Number)) {
  const ctl = await startController(
    { ip: "127.0.0.1", key: "memory-bench-key", heartbeatPeriodMs: 3000, taskScheme: "leastload" },
    { logger: createLogger({ level: "error" }), registry: new Registry(), openFilesLimit: null },
  );
  const e = ctl.engineConnection as unknown as Record<string, unknown>;
  const conn = e as unknown as EngineConnection;
  const sim = n > 0 ? await startSimCluster({ conn, engines: n, lean: opts.lean, registrationTimeoutMs: 60_000 }) : undefined;
  if (sim) await sim.waitRegistered(n, 300_000);
  while (ctl.engines().length < n) await sleep(200);
  await sleep(Number(opts.settle) * 1000);
  (globalThis as { gc?: () => void }).gc?.();
  await sleep(500);
  const m = process.memoryUsage();
  const rest = m.rss - m.heapTotal - m.external;
  const conns = n * (opts.lean ? 4 : 8);
  process.stdout.write(`| ${n} | ${conns} | ${mb(m.rss)} | ${mb(m.heapUsed)} / ${mb(m.heapTotal)} | ${mb(m.external)} | ${mb(rest)} | ${conns ? (rest / conns / 1024).toFixed(1) : "–"} |\n`);
  await sim?.stop();
  await ctl.stop();
  await sleep(1000);
}
process.exit(0);
