/**
 * Soak benchmark: 1,000,000 tiny tasks through one running controller, to show that what it keeps
 * per task does not grow with the number of tasks ever run. The controller is `ipp-operator
 * controller` (a child process); the engines and the client are the lightweight ZeroMQ peers of
 * relay.ts (peers.ts), which answer at once. Tasks alternate between the load-balanced (task) and
 * direct (mux) channels, `--window` in flight on each, and iopub is read by a subscriber. The
 * controller's RSS is printed at every `--every` tasks; the target is a flat line: every reading
 * after the first within 10 % of the first.
 *
 * Beside RSS, each line shows what the controller reports about itself on its /metrics listener
 * (`--metrics-port`): V8's heap (total and used; a reading between collections, so "used" includes
 * garbage not yet collected), external memory (Buffers and other memory V8 is told about) and,
 * within it, ArrayBuffers. RSS minus heap total minus external is native memory: libzmq, the
 * allocator's free lists, Node's own code. `--snapshot-at 150000,500000` starts the controller with
 * `--heapsnapshot-signal=SIGUSR2` and signals it at those task counts: it writes
 * Heap.<date>.<pid>...heapsnapshot into the current directory (compare them in Chrome DevTools'
 * Memory tab, or with heap-compare.ts). The snapshot pauses the controller for a few seconds.
 *
 *   npx tsx bench/controller/soak.ts [--tasks 1000000] [--every 100000] [--engines 8] [--window 64]
 *                                    [--no-build] [--source DIR] [--controller-args="..."]
 *                                    [--node-flags="--max-semi-space-size=2 --max-old-space-size=1024"] [--snapshot-at N,M]
 *
 * The controller runs with the V8 flags bin/ipp-operator gives it (--max-semi-space-size=2 --max-old-space-size=1024) unless
 * --node-flags says otherwise (--node-flags= for none).
 * --source DIR runs DIR/src/cli.ts through tsx (e.g. a worktree of an older commit, for a before/after).
 */
import { createServer } from "node:net";
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
    "node-flags": { type: "string", default: "--max-semi-space-size=2 --max-old-space-size=1024" },
    "snapshot-at": { type: "string", default: "" },
  },
});
const TASKS = Number(opts.tasks);
const EVERY = Number(opts.every);
const ENGINES = Number(opts.engines);
const WINDOW = Number(opts.window);
const SNAPSHOT_AT = new Set((opts["snapshot-at"] ?? "").split(",").filter(Boolean).map(Number));

/** A port free now (for the controller's metrics listener). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const MB = 1024 * 1024;

/** The controller's memory as it reports it on /metrics (MB). */
async function selfReport(port: number): Promise<{ heapTotal: number; heapUsed: number; oldUsed: number; external: number; arrayBuffers: number } | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const read = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN) / MB;
    return {
      heapTotal: read(/^ipp_controller_nodejs_heap_size_total_bytes (\S+)/m),
      heapUsed: read(/^ipp_controller_nodejs_heap_size_used_bytes (\S+)/m),
      oldUsed: read(/^ipp_controller_nodejs_heap_space_size_used_bytes\{space="old"\} (\S+)/m),
      external: read(/^ipp_controller_nodejs_external_memory_bytes (\S+)/m),
      arrayBuffers: read(/^ipp_controller_nodejs_array_buffers_bytes (\S+)/m),
    };
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const metricsPort = await freePort();
  const ctl = await startControllerUnderTest({
    noBuild: opts["no-build"], ...(opts.source ? { source: opts.source } : {}),
    nodeFlags: [...(opts["node-flags"] ?? "").split(/\s+/).filter(Boolean), ...(SNAPSHOT_AT.size ? ["--heapsnapshot-signal=SIGUSR2"] : [])],
    args: [`--metrics-port=${metricsPort}`, "--metrics-host=127.0.0.1", ...(opts["controller-args"] ?? "").split(/\s+/).filter(Boolean)],
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
    const cols = ["tasks", "RSS MB", "vs first", "seconds", "tasks/s", "heap tot", "heap used", "old used", "external", "arraybuf", "native"];
    console.log(cols.map((c, i) => c.padStart(i === 0 ? 9 : 9)).join(" "));
    let printing: Promise<void> = Promise.resolve();
    const report = () => {
      const rss = rssMb(ctl.pid, "VmRSS");
      const seconds = (performance.now() - t0) / 1000;
      const tasks = done;
      rows.push({ tasks, rssMb: rss, seconds });
      const first = rows[0]!.rssMb;
      const prev = rows.length > 1 ? rows[rows.length - 2]! : { tasks: 0, seconds: 0 };
      const self = selfReport(metricsPort);
      if (SNAPSHOT_AT.has(tasks)) process.kill(ctl.pid, "SIGUSR2");
      // printed in order, once the controller has answered
      printing = printing.then(async () => {
        const m = await self;
        const f = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "-" : v.toFixed(1)).padStart(9);
        console.log([
          String(tasks).padStart(9), f(rss), `${(((rss - first) / first) * 100).toFixed(1)}%`.padStart(9), f(seconds),
          ((tasks - prev.tasks) / (seconds - prev.seconds)).toFixed(0).padStart(9),
          f(m?.heapTotal), f(m?.heapUsed), f(m?.oldUsed), f(m?.external), f(m?.arrayBuffers), f(m ? rss - m.heapTotal - m.external : undefined),
        ].join(" ") + (SNAPSHOT_AT.has(tasks) ? "  (heap snapshot)" : ""));
      });
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
    await printing;
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
