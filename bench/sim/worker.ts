/**
 * A simulator process: hosts the simulated engines of a range of MPI ranks (see engine.ts) on one
 * ZeroMQ context, driven by its parent (cluster.ts) over the IPC channel. Each engine holds 6
 * ZeroMQ sockets and 8 TCP connections, so a process with K engines needs about 14·K file
 * descriptors: cluster.ts sizes the processes to the descriptor limit.
 */
import { randomUUID } from "node:crypto";
import { Context, Publisher, Subscriber } from "zeromq";
import { SimEngine, Writer, type SharedSockets } from "./engine.ts";

export type WorkerCommand =
  | {
      cmd: "start"; conn: import("./engine.ts").EngineConnection; first: number; count: number;
      /** ipyparallel's MPI stagger: rank × staggerMs for ranks ≥ staggerAbove (0 = none). */
      staggerMs: number; staggerAbove: number;
      /** Epoch ms the whole (simulated) MPI job started; staggers count from here. */
      startedAt: number;
      registrationTimeoutMs: number;
      /** Request the rank as engine id (as `ipengine --mpi` does); else let the hub choose. */
      requestRank: boolean;
      /** The lean connection model (engine.ts SharedSockets). */
      lean: boolean;
    }
  | { cmd: "kill"; ranks: number[] }
  | { cmd: "stats" }
  | { cmd: "stop" };

export type WorkerEvent =
  | { ev: "registered"; items: Array<{ rank: number; id: number; uuid: string; at: number; sentAt: number }> }
  | { ev: "failed"; items: Array<{ rank: number; why: string }> }
  | { ev: "killed"; ranks: number[] }
  | { ev: "stats"; handled: Record<string, number>; engines: number; registered: number }
  | { ev: "ready" }
  /** The process has loaded its modules and waits for "start". */
  | { ev: "loaded" };

// the parent may have stopped listening (a run given up on): nothing to tell it then
const send = (e: WorkerEvent) => {
  if (process.connected) process.send?.(e);
};

const engines = new Map<number, SimEngine>();
let context: Context | undefined;
const timers: NodeJS.Timeout[] = [];

// events are batched: thousands of engines register within a second
let registered: Array<{ rank: number; id: number; uuid: string; at: number; sentAt: number }> = [];
let failed: Array<{ rank: number; why: string }> = [];
let flushTimer: NodeJS.Timeout | undefined;
function flushSoon(): void {
  flushTimer ??= setTimeout(() => {
    flushTimer = undefined;
    if (registered.length) send({ ev: "registered", items: registered });
    if (failed.length) send({ ev: "failed", items: failed });
    registered = [];
    failed = [];
  }, 20);
}

function start(c: Extract<WorkerCommand, { cmd: "start" }>): void {
  context = new Context({ blocky: false, maxSockets: Math.max(1024, c.count * 6 + 64), ioThreads: 1 });
  let shared: SharedSockets | undefined;
  if (c.lean) {
    const iopub = new Publisher({ context, linger: 0, sendHighWaterMark: 0 });
    iopub.connect(`${c.conn.interface}:${c.conn.iopub}`);
    const ping = new Subscriber({ context, linger: 0 });
    ping.subscribe();
    ping.connect(`${c.conn.interface}:${c.conn.hb_ping}`);
    const listeners = new Set<(frames: Buffer[]) => void>();
    void (async () => {
      try {
        for await (const frames of ping) for (const l of listeners) l(frames);
      } catch { /* closed */ }
    })();
    shared = { iopub: new Writer(iopub), pingListeners: listeners };
  }
  for (let rank = c.first; rank < c.first + c.count; rank++) {
    const e = new SimEngine({
      conn: c.conn, context, shared, requestedId: c.requestRank ? rank : null, uuid: randomUUID(),
      registrationTimeoutMs: c.registrationTimeoutMs,
      onRegistered: (eng) => {
        registered.push({ rank, id: eng.id!, uuid: eng.uuid, at: Date.now(), sentAt: eng.requestSentAt });
        flushSoon();
      },
      onFailed: (_eng, why) => {
        failed.push({ rank, why });
        flushSoon();
      },
    });
    engines.set(rank, e);
    // ipengine: `if use_mpi and id and id >= 100 and mpi_registration_delay: sleep(id * delay)`
    const delay = c.staggerMs > 0 && rank >= c.staggerAbove && rank > 0 ? rank * c.staggerMs : 0;
    const wait = Math.max(0, c.startedAt + delay - Date.now());
    timers.push(setTimeout(() => void e.register(), wait));
  }
  send({ ev: "ready" });
}

process.on("message", (m: WorkerCommand) => {
  if (m.cmd === "start") start(m);
  else if (m.cmd === "kill") {
    for (const r of m.ranks) engines.get(r)?.kill();
    send({ ev: "killed", ranks: m.ranks });
  } else if (m.cmd === "stats") {
    const handled: Record<string, number> = {};
    let reg = 0;
    for (const e of engines.values()) {
      if (e.state === "registered") reg++;
      for (const [k, v] of Object.entries(e.handled)) handled[k] = (handled[k] ?? 0) + v;
    }
    send({ ev: "stats", handled, engines: engines.size, registered: reg });
  } else if (m.cmd === "stop") {
    for (const t of timers) clearTimeout(t);
    for (const e of engines.values()) e.kill();
    context = undefined;
    process.disconnect?.();
    setTimeout(() => process.exit(0), 100).unref();
  }
});
send({ ev: "loaded" });
process.on("disconnect", () => {
  for (const e of engines.values()) e.kill();
  setTimeout(() => process.exit(0), 100).unref();
});
