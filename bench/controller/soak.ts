/**
 * Soak benchmark: 1,000,000 tiny tasks through one running controller, to show that what it keeps
 * per task does not grow with the number of tasks ever run. The controller is `ipp-operator
 * controller` (a child process); the engines and the client are the lightweight ZeroMQ peers of
 * relay.ts (peers.ts), which answer at once. Tasks alternate between the load-balanced (task) and
 * direct (mux) channels, `--window` in flight on each, and iopub is read by a subscriber. The
 * controller's RSS is printed at every `--every` tasks; the target is a flat line: every reading
 * after the first within 10 % of the first.
 *
 *   npx tsx bench/controller/soak.ts [--tasks 1000000] [--every 100000] [--engines 8] [--window 64]
 *                                    [--no-build] [--source DIR] [--controller-args="..."]
 *                                    [--node-flags="--max-semi-space-size=2"]
 *
 * The controller runs with the V8 flags bin/ipp-operator gives it (--max-semi-space-size=2) unless
 * --node-flags says otherwise (--node-flags= for none).
 * --source DIR runs DIR/src/cli.ts through tsx (e.g. a worktree of an older commit, for a before/after).
 */
import { parseArgs } from "node:util";
import { Subscriber } from "zeromq";
import { Session, splitFrames, parseJsonFrame } from "../../src/protocol/index.ts";
import { TINY_APPLY, clientSocket, cpuMs, rssMb, startControllerUnderTest, startFakeEngines } from "./peers.ts";

const { values: opts } = parseArgs({
  options: {
    tasks: { type: "string", default: "1000000" },
    every: { type: "string", default: "100000" },
    engines: { type: "string", default: "8" },
    window: { type: "string", default: "64" },
    "no-build": { type: "boolean", default: false },
    source: { type: "string" },
    "controller-args": { type: "string" },
    "node-flags": { type: "string", default: "--max-semi-space-size=2" },
  },
});
const TASKS = Number(opts.tasks);
const EVERY = Number(opts.every);
const ENGINES = Number(opts.engines);
const WINDOW = Number(opts.window);

async function main(): Promise<void> {
  const ctl = await startControllerUnderTest({
    noBuild: opts["no-build"], ...(opts.source ? { source: opts.source } : {}),
    nodeFlags: (opts["node-flags"] ?? "").split(/\s+/).filter(Boolean),
    args: (opts["controller-args"] ?? "").split(/\s+/).filter(Boolean),
  });
  const closers: Array<() => void> = [];
  try {
    const session = new Session({ key: ctl.client.key, username: "soak" });
    const uuids = await startFakeEngines(session, ctl, ENGINES, closers);
    const mux = clientSocket(ctl, ctl.client.mux, closers);
    const task = clientSocket(ctl, ctl.client.task, closers);
    const sub = new Subscriber({ linger: 0, receiveHighWaterMark: 0 });
    sub.subscribe();
    sub.connect(`${ctl.client.interface}:${ctl.client.iopub}`);
    closers.push(() => sub.close());
    let iopubSeen = 0;
    void (async () => { for await (const _f of sub) iopubSeen++; })().catch(() => {});

    const { content, buffers } = TINY_APPLY;
    const lbMetadata = { after: [], follow: [], timeout: null, targets: [], retries: 0 };
    let sent = 0;
    let done = 0;
    let errors = 0;
    const t0 = performance.now();
    const cpu0 = cpuMs(ctl.pid);
    const rows: Array<{ tasks: number; rssMb: number; seconds: number }> = [];
    console.log(`soak: ${TASKS} tasks (half load-balanced, half direct), ${ENGINES} fake engines, window ${WINDOW} per channel, controller ${opts.source ? `from ${opts.source} (tsx)` : opts["no-build"] ? "from source (tsx)" : "compiled (dist/)"}, node flags "${opts["node-flags"]}"`);
    console.log(`${"tasks".padStart(9)} ${"RSS MB".padStart(8)} ${"vs first".padStart(9)} ${"seconds".padStart(8)} ${"tasks/s".padStart(8)}`);
    const report = () => {
      const rss = rssMb(ctl.pid, "VmRSS");
      const seconds = (performance.now() - t0) / 1000;
      rows.push({ tasks: done, rssMb: rss, seconds });
      const first = rows[0]!.rssMb;
      const prev = rows.length > 1 ? rows[rows.length - 2]! : { tasks: 0, seconds: 0 };
      console.log(`${String(done).padStart(9)} ${rss.toFixed(1).padStart(8)} ${(((rss - first) / first) * 100).toFixed(1).padStart(8)}% ${seconds.toFixed(1).padStart(8)} ${((done - prev.tasks) / (seconds - prev.seconds)).toFixed(0).padStart(8)}`);
    };

    // each channel keeps WINDOW requests in flight; a reply lets the next request go
    const channel = async (sock: typeof mux, direct: boolean, share: number) => {
      let inFlight = 0;
      let mine = 0;
      const waiter: { wake: (() => void) | null } = { wake: null };
      const reader = (async () => {
        for await (const frames of sock) {
          const status = parseJsonFrame(splitFrames(frames).content, "content").status;
          if (status !== "ok") errors++;
          inFlight--;
          done++;
          if (done % EVERY === 0) report();
          waiter.wake?.();
          if (done >= TASKS) break;
        }
      })();
      while (mine < share) {
        while (inFlight >= WINDOW) await new Promise<void>((r) => { waiter.wake = r; });
        waiter.wake = null;
        const md = direct ? {} : lbMetadata;
        const ids = direct ? [Buffer.from(uuids[sent % ENGINES]!)] : [];
        await sock.send(session.build("apply_request", content, { ids, metadata: md, buffers }));
        inFlight++;
        mine++;
        sent++;
      }
      while (inFlight > 0 && done < TASKS) await new Promise<void>((r) => { waiter.wake = r; });
      // the reader whose channel did not take the last reply never ends by itself: closing the socket ends it
      void reader;
    };
    const half = Math.floor(TASKS / 2);
    await Promise.all([channel(task, false, half), channel(mux, true, TASKS - half)]);
    const cpu = cpuMs(ctl.pid) - cpu0;
    const first = rows[0]?.rssMb ?? 0;
    const worst = Math.max(...rows.map((r) => Math.abs(r.rssMb - first) / first));
    console.log(`done: ${done} tasks, ${errors} error replies, iopub messages seen ${iopubSeen}; controller CPU ${(cpu / done).toFixed(3)} ms/task; peak RSS ${rssMb(ctl.pid, "VmHWM").toFixed(1)} MB`);
    console.log(`flat within 10 % after the first ${EVERY}: ${worst <= 0.1 ? "yes" : "no"} (largest deviation ${(worst * 100).toFixed(1)} %)`);
  } finally {
    for (const c of closers) c();
    await ctl.stop();
  }
}

await main();
