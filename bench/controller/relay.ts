/**
 * Controller-only relay benchmark: our controller (bin/ipp-operator controller, a child process)
 * between a fake client and fake engines that answer instantly, all ZeroMQ over loopback. Python
 * clients and engines are out of the picture, so this isolates what the controller costs per
 * message: CPU time of the controller process (from /proc) per task, on the mux and task channels
 * (each task: request, reply and two iopub status messages), and mux round-trip latency.
 *
 *   npx tsx bench/controller/relay.ts [--tasks 4000] [--engines 8] [--rounds 3] [--no-build] [--upstream]
 *                                     [--node-flags="--cpu-prof --cpu-prof-dir=/tmp/prof"]
 *
 * --upstream measures upstream ipcontroller (its whole process tree) the same way.
 * Without --no-build the controller runs compiled from dist/ (`npm run build` first), as
 * bin/ipp-operator runs it.
 */
import { parseArgs } from "node:util";
import { Subscriber } from "zeromq";
import { Session } from "../../src/protocol/index.ts";
import { TINY_APPLY, clientSocket, cpuMs, rssMb, sleep, startControllerUnderTest, startFakeEngines, type ControllerUnderTest } from "./peers.ts";

const { values: opts } = parseArgs({
  options: {
    tasks: { type: "string", default: "4000" },
    engines: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
    "no-build": { type: "boolean", default: false },
    "node-flags": { type: "string" },
    // extra controller arguments, e.g. --controller-args="--DictDB.record_limit=100"
    "controller-args": { type: "string" },
    // another build's compiled CLI (e.g. an older commit's dist/src/cli.js) to compare against
    entry: { type: "string" },
    // measure upstream ipcontroller (ipyparallel 9 venv) instead of ours
    upstream: { type: "boolean", default: false },
  },
});
const TASKS = Number(opts.tasks);
const ENGINES = Number(opts.engines);
const ROUNDS = Number(opts.rounds);

async function main(): Promise<void> {
  const ctl: ControllerUnderTest = await startControllerUnderTest({
    upstream: opts.upstream, noBuild: opts["no-build"], ...(opts.entry ? { entry: opts.entry } : {}),
    nodeFlags: (opts["node-flags"] ?? "").split(/\s+/).filter(Boolean),
    args: (opts["controller-args"] ?? "").split(/\s+/).filter(Boolean),
  });
  const closers: Array<() => void> = [];
  try {
    const cInfo = ctl.client;
    const session = new Session({ key: cInfo.key, username: "bench" });

    // ---------------------------------------------------------------- fake engines
    const uuids = await startFakeEngines(session, ctl, ENGINES, closers);

    // ---------------------------------------------------------------- fake client
    const mux = clientSocket(ctl, cInfo.mux, closers);
    const task = clientSocket(ctl, cInfo.task, closers);
    const sub = new Subscriber({ linger: 0, receiveHighWaterMark: 0 });
    sub.subscribe();
    sub.connect(`${cInfo.interface}:${cInfo.iopub}`);
    closers.push(() => sub.close());
    let iopubSeen = 0;
    void (async () => { for await (const _f of sub) iopubSeen++; })().catch(() => {});
    await sleep(300);
    const { content, buffers } = TINY_APPLY;

    const burst = async (sock: ReturnType<typeof clientSocket>, direct: boolean) => {
      const cpu0 = cpuMs(ctl.pid);
      const t0 = performance.now();
      const done = (async () => { let n = 0; for await (const _f of sock) { if (++n === TASKS) break; } })();
      for (let i = 0; i < TASKS; i++) {
        const md = direct ? {} : { after: [], follow: [], timeout: null, targets: [], retries: 0 };
        await sock.send(session.build("apply_request", content, { ids: direct ? [Buffer.from(uuids[i % ENGINES]!)] : [], metadata: md, buffers }));
      }
      await done;
      const wall = performance.now() - t0;
      await sleep(300); // let the controller finish relaying iopub
      return { perS: TASKS / (wall / 1000), cpuMsPerTask: (cpuMs(ctl.pid) - cpu0) / TASKS };
    };
    const rtt = async () => {
      const lat: number[] = [];
      const cpu0 = cpuMs(ctl.pid);
      for (let i = 0; i < 500; i++) {
        const t0 = performance.now();
        await mux.send(session.build("apply_request", content, { ids: [Buffer.from(uuids[0]!)], buffers }));
        await mux.receive();
        lat.push(performance.now() - t0);
      }
      lat.sort((a, b) => a - b);
      return { p50: lat[250]!, p99: lat[494]!, cpuMsPerCall: (cpuMs(ctl.pid) - cpu0) / 500 };
    };

    const rows: Record<string, number[]> = {};
    const put = (k: string, v: number) => (rows[k] ??= []).push(v);
    put("registered_rss_MB", rssMb(ctl.pid, "VmRSS"));
    for (let r = 0; r < ROUNDS; r++) {
      const m = await burst(mux, true);
      put("mux_tasks_per_s", m.perS); put("mux_cpu_ms_per_task", m.cpuMsPerTask);
      const t = await burst(task, false);
      put("task_tasks_per_s", t.perS); put("task_cpu_ms_per_task", t.cpuMsPerTask);
      const l = await rtt();
      put("rtt_p50_ms", l.p50); put("rtt_p99_ms", l.p99); put("rtt_cpu_ms_per_call", l.cpuMsPerCall);
      put("controller_rss_MB", rssMb(ctl.pid, "VmRSS"));
      put("controller_peak_rss_MB", rssMb(ctl.pid, "VmHWM"));
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    console.log(`relay bench: ${TASKS} tasks x ${ROUNDS} rounds, ${ENGINES} fake engines, controller ${opts.upstream ? "upstream ipcontroller (ipyparallel 9)" : opts.entry ?? (opts["no-build"] ? "from source (tsx)" : "compiled (dist/)")}; iopub relayed ${iopubSeen}`);
    for (const [k, v] of Object.entries(rows)) console.log(`${k.padEnd(24)} median ${med(v).toFixed(3).padStart(9)}   runs ${v.map((x) => x.toFixed(3)).join(" ")}`);
  } finally {
    for (const c of closers) c();
    await ctl.stop();
  }
}

await main();
