/**
 * The controller's ZeroMQ sockets: created on the copying context (see socket-io.ts), bound on the
 * configured ports, each with one writer (an Outbox that also counts what it sends).
 */
import { Publisher, Router, Subscriber, type Socket } from "zeromq";
import { copyingContext, Outbox, type Frames } from "./socket-io.ts";
import { countOut, type ChannelCounters, type Traffic } from "./traffic.ts";
import type { ControllerConfig, ControllerPorts } from "./config.ts";

export interface ControllerSockets {
  reg: Router;
  notif: Publisher;
  muxIn: Router;
  muxOut: Router;
  ctlIn: Router;
  ctlOut: Router;
  taskIn: Router;
  taskOut: Router;
  bcastIn: Router;
  /** Broadcast leaves, engine side, in tree order. */
  leaves: Router[];
  iopubIn: Subscriber;
  iopubOut: Publisher;
  hbPing: Publisher;
  hbPong: Router;
}

export type BoundPorts = Record<
  "registration" | "notification" | "mux" | "engine_mux" | "control" | "engine_control" | "task" | "engine_task"
  | "broadcast" | "iopub" | "engine_iopub" | "hb_ping" | "hb_pong", number
> & { leaves: number[] };

/** Where a message leaves the controller: counted on its channel, then queued on the socket's Outbox. */
export interface Outlet {
  send(frames: Frames): void;
}

export type Outlets = { [K in Exclude<keyof ControllerSockets, "leaves" | "iopubIn" | "hbPong">]: Outlet } & { leaves: Outlet[] };

class CountingOutbox extends Outbox implements Outlet {
  constructor(sock: ConstructorParameters<typeof Outbox>[0], onError: (err: unknown) => void, private readonly counters: ChannelCounters) {
    super(sock, onError);
  }

  override send(frames: Frames): void {
    countOut(this.counters, frames);
    super.send(frames);
  }
}

/** Upstream names the scheduler sockets; engines see these routing ids on broadcast replies. */
export function leafName(i: number, depth: number): string {
  return `sub_scheduler_${i.toString(2).padStart(depth + 1, "0")}`;
}

/** The requested port of broadcast leaf `i`: from the list, or consecutive from a first port. */
export function leafPort(spec: ControllerPorts["engine_broadcast"], i: number): number | undefined {
  if (spec === undefined) return undefined;
  return typeof spec === "number" ? spec + i : spec[i];
}

export function allSockets(s: ControllerSockets): Socket[] {
  return [s.reg, s.notif, s.muxIn, s.muxOut, s.ctlIn, s.ctlOut, s.taskIn, s.taskOut, s.bcastIn, ...s.leaves, s.iopubIn, s.iopubOut, s.hbPing, s.hbPong];
}

/** Create and bind every socket; on a bind failure all are closed and the error is thrown. */
export async function bindSockets(config: ControllerConfig, leafCount: number): Promise<{ sockets: ControllerSockets; ports: BoundPorts }> {
  const depth = config.broadcastDepth ?? 1;
  const context = copyingContext();
  const curveOpts = { context, ...(config.curve ? { curveServer: true, curveSecretKey: config.curve.secretKey, curvePublicKey: config.curve.publicKey } : {}) };
  const router = (routingId?: string) => new Router({ sendHighWaterMark: 0, receiveHighWaterMark: 0, linger: 0, ...(routingId ? { routingId } : {}), ...curveOpts });
  const iopubIn = new Subscriber({ linger: 0, receiveHighWaterMark: 0, ...curveOpts });
  iopubIn.subscribe();
  const s: ControllerSockets = {
    reg: router(),
    notif: new Publisher({ linger: 0, sendHighWaterMark: 0, ...curveOpts }),
    muxIn: router("mux_in"),
    muxOut: router("mux_out"),
    ctlIn: router("control_in"),
    ctlOut: router("control_out"),
    taskIn: router("task_in"),
    taskOut: router("task_out"),
    bcastIn: router("sub_scheduler_0"),
    leaves: Array.from({ length: leafCount }, (_, i) => router(leafName(i, depth))),
    iopubIn,
    iopubOut: new Publisher({ linger: 0, sendHighWaterMark: 0, ...curveOpts }),
    hbPing: new Publisher({ linger: 0, ...curveOpts }),
    hbPong: router(),
  };
  const wanted = config.ports ?? {};
  const bindOne = async (sock: { bind(a: string): Promise<void>; readonly lastEndpoint: string | null }, port?: number): Promise<number> => {
    await sock.bind(`tcp://${config.ip}:${port ?? "*"}`);
    const ep = sock.lastEndpoint ?? "";
    return Number(ep.slice(ep.lastIndexOf(":") + 1));
  };
  try {
    const p = {
      registration: await bindOne(s.reg, wanted.registration),
      notification: await bindOne(s.notif, wanted.notification),
      mux: await bindOne(s.muxIn, wanted.mux),
      engine_mux: await bindOne(s.muxOut, wanted.engine_mux),
      control: await bindOne(s.ctlIn, wanted.control),
      engine_control: await bindOne(s.ctlOut, wanted.engine_control),
      task: await bindOne(s.taskIn, wanted.task),
      engine_task: await bindOne(s.taskOut, wanted.engine_task),
      broadcast: await bindOne(s.bcastIn, wanted.broadcast),
      iopub: await bindOne(s.iopubOut, wanted.iopub),
      engine_iopub: await bindOne(s.iopubIn, wanted.engine_iopub),
      hb_ping: await bindOne(s.hbPing, wanted.hb_ping),
      hb_pong: await bindOne(s.hbPong, wanted.hb_pong),
    };
    const leaves: number[] = [];
    for (let i = 0; i < leafCount; i++) leaves.push(await bindOne(s.leaves[i]!, leafPort(wanted.engine_broadcast, i)));
    return { sockets: s, ports: { ...p, leaves } };
  } catch (err) {
    for (const sock of allSockets(s)) sock.close();
    throw err;
  }
}

/** One counting writer per sending socket. */
export function openOutlets(s: ControllerSockets, traffic: Traffic, onError: (channel: string) => (err: unknown) => void): { outlets: Outlets; close(): void } {
  const box = (sock: ConstructorParameters<typeof Outbox>[0], channel: string, counters: ChannelCounters) => new CountingOutbox(sock, onError(channel), counters);
  const outlets = {
    reg: box(s.reg, "registration", traffic.registration),
    notif: box(s.notif, "notification", traffic.notification),
    muxIn: box(s.muxIn, "mux", traffic.mux),
    muxOut: box(s.muxOut, "engine_mux", traffic.mux),
    ctlIn: box(s.ctlIn, "control", traffic.control),
    ctlOut: box(s.ctlOut, "engine_control", traffic.control),
    taskIn: box(s.taskIn, "task", traffic.task),
    taskOut: box(s.taskOut, "engine_task", traffic.task),
    bcastIn: box(s.bcastIn, "broadcast", traffic.broadcast),
    leaves: s.leaves.map((l, i) => box(l, `engine_broadcast_${i}`, traffic.broadcast)),
    iopubOut: box(s.iopubOut, "iopub", traffic.iopub),
    hbPing: box(s.hbPing, "hb_ping", traffic.heartbeat),
  };
  const all = [outlets.reg, outlets.notif, outlets.muxIn, outlets.muxOut, outlets.ctlIn, outlets.ctlOut, outlets.taskIn, outlets.taskOut, outlets.bcastIn, ...outlets.leaves, outlets.iopubOut, outlets.hbPing];
  return { outlets, close: () => { for (const o of all) o.close(); } };
}
