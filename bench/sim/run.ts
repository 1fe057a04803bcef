/**
 * Run N simulated engines against a running controller until Ctrl-C:
 *
 *   npx tsx bench/sim/run.ts --file ~/.ipython/profile_default/security/ipcontroller-engine.json -n 1024 [--stagger]
 *
 * --stagger delays rank r ≥ 100 by r × 20 ms, as `ipengine --mpi` does by default.
 */
import { parseArgs } from "node:util";
import { readEngineConnection, startSimCluster } from "./cluster.ts";

const { values: o } = parseArgs({
  options: {
    file: { type: "string" },
    n: { type: "string", short: "n", default: "64" },
    stagger: { type: "boolean", default: false },
    timeout: { type: "string", default: "5" },
    lean: { type: "boolean", default: false },
  },
});
if (!o.file) {
  process.stderr.write("usage: run.ts --file <ipcontroller-engine.json> -n N [--stagger] [--timeout seconds]\n");
  process.exit(2);
}
const n = Number(o.n);
const sim = await startSimCluster({
  conn: readEngineConnection(o.file), engines: n, staggerMs: o.stagger ? 20 : 0, registrationTimeoutMs: Number(o.timeout) * 1000, lean: o.lean,
});
process.stderr.write(`${n} simulated engines in ${sim.processes} process(es)\n`);
const progress = setInterval(() => {
  process.stderr.write(`registered ${sim.registered.size}/${n}, failed ${sim.failed.size}, ${((Date.now() - sim.startedAt) / 1000).toFixed(1)} s\n`);
}, 1000);
const stop = async () => {
  clearInterval(progress);
  await sim.stop();
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
