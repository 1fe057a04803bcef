/**
 * The controller's ZeroMQ sockets: created on the copying context (see socket-io.ts), bound on the
 * configured ports, each with one writer (an Outbox that also counts what it sends).
 *
 * Memory a peer can make the controller hold is bounded here:
 * - every socket refuses a frame larger than the message cap (ZMQ_MAXMSGSIZE: libzmq disconnects
 *   the peer when the frame header announces it, before allocating), and the sockets that only
 *   ever receive tiny frames (heartbeat pongs, subscriptions to the PUBs) a far smaller one;
 * - every socket reads at most RECEIVE_HWM queued messages per peer before libzmq stops reading
 *   that connection (TCP back-pressure, nothing lost);
 * - the PUBs (iopub, notification, heartbeat ping), which anyone who can connect may subscribe
 *   to without a key, queue at most `subscriberHwm` messages per subscriber; past that a slow
 *   subscriber misses messages (the others do not), counted as dropped;
 * - the client-facing ROUTERs queue at most `clientHwm` replies per client; past that a reply is
 *   dropped and counted (the result stays in the hub's records for get_result).
 * The engine-facing ROUTERs stay unlimited: what they queue is work for registered engines that
 * key holders submitted, and dropping it would lose tasks silently. For the same reason a message
 * for an engine whose connection to that socket is not up (yet, or again) is held until it is.
 */
import { Publisher, Router, Subscriber, XPublisher, type Socket } from "zeromq";
import { copyingContext, Outbox, type Frames } from "./socket-io.ts";
import { countOut, type ChannelCounters, type Traffic } from "./traffic.ts";
import { DEFAULT_MAX_MESSAGE_BYTES, type ControllerConfig, type ControllerPorts } from "./config.ts";

/** Queued messages per subscriber on the PUBs by default (jupyter kernels use 1000 on iopub). */
export const DEFAULT_SUBSCRIBER_HWM = 10_000;
/** Queued replies per client on the client-facing ROUTERs by default. */
export const DEFAULT_CLIENT_HWM = 100_000;
/** Inbound messages queued per peer before libzmq stops reading from it (libzmq's default). */
const RECEIVE_HWM = 1000;
/** Cap on what a peer may send to a socket that only receives tiny frames (pongs, subscriptions). */
const SMALL_FRAME_CAP = 64 * 1024;

/** Why an outgoing message was not delivered (ipp_controller_messages_dropped_total's reason). */
export type DropReason = "hwm" | "unroutable";

/** Counts outgoing drops; bound per channel in controller.ts. */
export type DropCounter = (reason: DropReason) => void;

export interface ControllerSockets {
  reg: Router;
  /** An XPUB: the hub reads its subscriptions (core/late-subscribers.ts). */
  notif: XPublisher;
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

/** An engine-facing ROUTER's writer: it holds what an engine's missing connection can't take yet. */
export interface EngineOutlet extends Outlet {
  /** A ZMQ_ROUTER_NOTIFY connect notice from the socket's reader: `peer`'s connection is up. */
  connected(peer: Buffer): void;
  /** The engine is gone: what was held for it is dropped (its tasks fail as the engine's). */
  forget(peer: Buffer): void;
}

type EngineSide = "muxOut" | "ctlOut" | "taskOut";
export type Outlets = { [K in Exclude<keyof ControllerSockets, "leaves" | "iopubIn" | "hbPong" | EngineSide>]: Outlet }
  & { [K in EngineSide]: EngineOutlet } & { leaves: EngineOutlet[] };

/** What a ROUTER with ZMQ_ROUTER_NOTIFY delivers when a peer connects: its routing id and an empty frame. */
export function isConnectNotice(frames: Frames): boolean {
  return frames.length === 2 && frames[1]!.length === 0;
}

class CountingOutbox extends Outbox implements Outlet {
  constructor(sock: ConstructorParameters<typeof Outbox>[0], onError: (err: unknown) => void, private readonly counters: ChannelCounters) {
    super(sock, onError);
  }

  override send(frames: Frames): void {
    countOut(this.counters, frames);
    super.send(frames);
  }
}

const errCode = (err: unknown) => (err as { code?: string } | null)?.code;

/**
 * A client-facing ROUTER (ZMQ_ROUTER_MANDATORY, send timeout 0): a send the peer's full queue
 * refuses (EAGAIN) or that names a peer that is gone (EHOSTUNREACH) is dropped and counted,
 * and the outbox goes on with the next message, so one stalled client never holds up the others.
 */
class ClientRouterOutbox extends CountingOutbox {
  constructor(sock: Router, onError: (err: unknown) => void, counters: ChannelCounters, private readonly dropped: DropCounter) {
    super(sock, onError, counters);
  }

  protected override async sendOne(frames: Frames): Promise<void> {
    try {
      await this.sock.send(frames);
    } catch (err) {
      const code = errCode(err);
      if (code === "EAGAIN") this.dropped("hwm");
      else if (code === "EHOSTUNREACH") this.dropped("unroutable");
      else throw err;
    }
  }
}

const EAGAIN_RETRIES = 100;
const EAGAIN_RETRY_MS = 10;

/** Queued by `connected`: held messages of the peers in `due` go out at this point in the FIFO. */
const FLUSH_HELD: Frames = [];

/**
 * An engine-facing ROUTER (ZMQ_ROUTER_MANDATORY): libzmq refuses a message for a routing id with no
 * connection on this socket (EHOSTUNREACH) where it would otherwise drop it silently. That happens
 * when an engine's heart is back before its shell or control connection, e.g. engines re-attaching
 * to a restarted controller whose Service endpoint moved: the message is held, with everything
 * after it for the same engine, and sent in order once the socket reports the peer connected.
 */
class EngineRouterOutbox extends CountingOutbox implements EngineOutlet {
  private readonly held = new Map<string, Frames[]>();
  private readonly due = new Set<string>();

  constructor(sock: Router, onError: (err: unknown) => void, counters: ChannelCounters, private readonly countHeld: () => void) {
    super(sock, onError, counters);
  }

  connected(peer: Buffer): void {
    const key = peer.toString("latin1");
    if (!this.held.has(key)) return;
    this.due.add(key);
    this.enqueue(FLUSH_HELD);
  }

  forget(peer: Buffer): void {
    const key = peer.toString("latin1");
    this.held.delete(key);
    this.due.delete(key);
  }

  protected override async sendOne(frames: Frames): Promise<void> {
    if (frames === FLUSH_HELD) return this.flushDue();
    // the common case (nothing held) costs no key: every engine message passes here
    const waiting = this.held.size === 0 ? undefined : this.held.get(frames[0]!.toString("latin1"));
    if (waiting !== undefined) {
      waiting.push(frames);
      this.countHeld();
      return;
    }
    if (!(await this.trySend(frames))) {
      this.held.set(frames[0]!.toString("latin1"), [frames]);
      this.countHeld();
    }
  }

  private async flushDue(): Promise<void> {
    for (const key of [...this.due]) {
      this.due.delete(key);
      const list = this.held.get(key);
      if (list === undefined) continue;
      let sent = 0;
      while (sent < list.length && await this.trySend(list[sent]!)) sent++;
      if (sent === list.length) this.held.delete(key);
      else list.splice(0, sent); // disconnected again: the rest waits for the next notice
    }
  }

  /**
   * False when the peer has no connection on this socket. The queue is unlimited, so libzmq refuses
   * with EAGAIN only for a connection being set up or torn down: a moment later it takes the
   * message or reports the peer gone.
   */
  private async trySend(frames: Frames): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.sock.send(frames);
        return true;
      } catch (err) {
        const code = errCode(err);
        if (code === "EHOSTUNREACH" || (code === "EAGAIN" && attempt >= EAGAIN_RETRIES)) return false;
        if (code !== "EAGAIN") throw err;
        await new Promise((r) => setTimeout(r, EAGAIN_RETRY_MS));
      }
    }
  }
}

/**
 * ZMQ_XPUB_NODROP is read by libzmq at every send, so it can be flipped on a bound socket; zeromq.js
 * does not know that and warns "will not take effect until next connect/bind" on each change,
 * which here would be false and repeated. The warning is swallowed for this one synchronous call.
 */
function setNoDrop(sock: Publisher | XPublisher, value: boolean): void {
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    sock.noDrop = value;
  } finally {
    process.emitWarning = emitWarning;
  }
}

/**
 * A PUB whose drops are counted. libzmq drops silently for a subscriber at its high-water mark, so
 * each message is first offered with ZMQ_XPUB_NODROP: EAGAIN means at least one subscriber's queue
 * is full. The message is then sent lossy — every other subscriber still gets it — and counted
 * once as dropped (for one or more slow subscribers).
 */
class PublisherOutbox extends CountingOutbox {
  constructor(private readonly pub: Publisher | XPublisher, onError: (err: unknown) => void, counters: ChannelCounters, private readonly dropped: DropCounter) {
    super(pub, onError, counters);
  }

  protected override async sendOne(frames: Frames): Promise<void> {
    try {
      await this.pub.send(frames);
    } catch (err) {
      if (errCode(err) !== "EAGAIN") throw err;
      this.dropped("hwm");
      setNoDrop(this.pub, false);
      try {
        await this.pub.send(frames);
      } finally {
        setNoDrop(this.pub, true);
      }
    }
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

/**
 * Pending TCP connections each listening socket queues (libzmq's default is 100; the kernel caps it
 * at net.core.somaxconn). Thousands of engines connect at once when an MPI job starts; with a
 * backlog of 100 the kernel drops the excess SYNs and those engines retry after 1 s, 3 s, 7 s...
 */
export const LISTEN_BACKLOG = 8192;

/** ZMQ_IN_BATCH_SIZE and ZMQ_OUT_BATCH_SIZE (libzmq draft API, 4.3.3+; zeromq.js is built with it). */
const ZMQ_IN_BATCH_SIZE = 101;
const ZMQ_OUT_BATCH_SIZE = 102;

/**
 * Bytes libzmq reads or writes per system call on each engine's connection (its default: 8,192).
 * Each connection keeps a read and a write buffer of this size, and every engine holds 8
 * connections: with the default, about 32 KB of the controller's memory per connection, with 512
 * bytes 26 KB (bench/scale/memory.ts: 289 → 233-238 MB at 1,024 engines). An engine's traffic is a
 * few small messages at a time, and a frame larger than the buffer is read straight into its own
 * allocation either way, so the smaller buffer costs no measurable CPU (bench/controller/relay.ts,
 * CPU per task within noise). The client-facing sockets, few connections carrying everything,
 * keep the default.
 */
export const ENGINE_BATCH_BYTES = 512;

function setBatchBytes(sock: Socket, bytes: number): void {
  const s = sock as unknown as { setInt32Option(option: number, value: number): void };
  s.setInt32Option(ZMQ_IN_BATCH_SIZE, bytes);
  s.setInt32Option(ZMQ_OUT_BATCH_SIZE, bytes);
}

/** ZMQ_ROUTER_NOTIFY and ZMQ_NOTIFY_DISCONNECT (libzmq draft API; zeromq.js is built with it). */
const ZMQ_ROUTER_NOTIFY = 97;
const ZMQ_NOTIFY_CONNECT = 1;
const ZMQ_NOTIFY_DISCONNECT = 2;

/** Create and bind every socket; on a bind failure all are closed and the error is thrown. */
export async function bindSockets(config: ControllerConfig, leafCount: number): Promise<{ sockets: ControllerSockets; ports: BoundPorts }> {
  const depth = config.broadcastDepth ?? 1;
  const context = copyingContext();
  const maxMessageSize = config.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const common = { context, linger: 0, backlog: LISTEN_BACKLOG, ...(config.curve ? { curveServer: true, curveSecretKey: config.curve.secretKey, curvePublicKey: config.curve.publicKey } : {}) };
  const clientHwm = config.clientHwm ?? DEFAULT_CLIENT_HWM;
  const subscriberHwm = config.subscriberHwm ?? DEFAULT_SUBSCRIBER_HWM;
  /** Client-facing: replies to key holders, bounded per client. */
  const clientRouter = (routingId?: string) => new Router({
    ...common, maxMessageSize, receiveHighWaterMark: RECEIVE_HWM, sendHighWaterMark: clientHwm, mandatory: true, sendTimeout: 0, ...(routingId ? { routingId } : {}),
  });
  /** Engine-facing: work for registered engines, unbounded, held for a peer not connected (see above). */
  const engineRouter = (routingId: string) => {
    const r = new Router({ ...common, maxMessageSize, receiveHighWaterMark: RECEIVE_HWM, sendHighWaterMark: 0, mandatory: true, sendTimeout: 0, routingId });
    (r as unknown as { setInt32Option(option: number, value: number): void }).setInt32Option(ZMQ_ROUTER_NOTIFY, ZMQ_NOTIFY_CONNECT);
    return r;
  };
  const publisher = () => new Publisher({ ...common, maxMessageSize: SMALL_FRAME_CAP, sendHighWaterMark: subscriberHwm, noDrop: true, sendTimeout: 0 });
  // every subscription reaches the hub, duplicates included: each is a client that just connected
  const notif = new XPublisher({ ...common, maxMessageSize: SMALL_FRAME_CAP, sendHighWaterMark: subscriberHwm, noDrop: true, sendTimeout: 0, receiveHighWaterMark: RECEIVE_HWM });
  notif.verbosity = "allSubs";
  const iopubIn = new Subscriber({ ...common, maxMessageSize, receiveHighWaterMark: RECEIVE_HWM });
  iopubIn.subscribe();
  const s: ControllerSockets = {
    reg: clientRouter(),
    notif,
    muxIn: clientRouter("mux_in"),
    muxOut: engineRouter("mux_out"),
    ctlIn: clientRouter("control_in"),
    ctlOut: engineRouter("control_out"),
    taskIn: clientRouter("task_in"),
    taskOut: engineRouter("task_out"),
    bcastIn: clientRouter("sub_scheduler_0"),
    leaves: Array.from({ length: leafCount }, (_, i) => engineRouter(leafName(i, depth))),
    iopubIn,
    iopubOut: publisher(),
    hbPing: publisher(),
    hbPong: new Router({ ...common, maxMessageSize: SMALL_FRAME_CAP, receiveHighWaterMark: RECEIVE_HWM }),
  };
  // the pong ROUTER delivers [heart id, ""] when a heart's connection closes (see core/heartbeat.ts)
  (s.hbPong as unknown as { setInt32Option(option: number, value: number): void }).setInt32Option(ZMQ_ROUTER_NOTIFY, ZMQ_NOTIFY_DISCONNECT);
  // before bind: connections accepted later take the listening socket's options
  for (const sock of [s.reg, s.muxOut, s.ctlOut, s.taskOut, ...s.leaves, s.iopubIn, s.hbPing, s.hbPong]) setBatchBytes(sock, ENGINE_BATCH_BYTES);
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

/** One counting writer per sending socket; `dropped(channel)` counts what a bounded socket refused. */
export function openOutlets(
  s: ControllerSockets, traffic: Traffic, onError: (channel: string) => (err: unknown) => void, dropped: (channel: string) => DropCounter,
  held: (channel: string) => () => void,
): { outlets: Outlets; close(): void } {
  const engine = (sock: Router, channel: string, counters: ChannelCounters) => new EngineRouterOutbox(sock, onError(channel), counters, held(channel));
  const client = (sock: Router, channel: string, counters: ChannelCounters) => new ClientRouterOutbox(sock, onError(channel), counters, dropped(channel));
  const pub = (sock: Publisher | XPublisher, channel: string, counters: ChannelCounters) => new PublisherOutbox(sock, onError(channel), counters, dropped(channel));
  const outlets = {
    reg: client(s.reg, "registration", traffic.registration),
    notif: pub(s.notif, "notification", traffic.notification),
    muxIn: client(s.muxIn, "mux", traffic.mux),
    muxOut: engine(s.muxOut, "engine_mux", traffic.mux),
    ctlIn: client(s.ctlIn, "control", traffic.control),
    ctlOut: engine(s.ctlOut, "engine_control", traffic.control),
    taskIn: client(s.taskIn, "task", traffic.task),
    taskOut: engine(s.taskOut, "engine_task", traffic.task),
    bcastIn: client(s.bcastIn, "broadcast", traffic.broadcast),
    leaves: s.leaves.map((l, i) => engine(l, `engine_broadcast_${i}`, traffic.broadcast)),
    iopubOut: pub(s.iopubOut, "iopub", traffic.iopub),
    hbPing: pub(s.hbPing, "hb_ping", traffic.heartbeat),
  };
  const all = [outlets.reg, outlets.notif, outlets.muxIn, outlets.muxOut, outlets.ctlIn, outlets.ctlOut, outlets.taskIn, outlets.taskOut, outlets.bcastIn, ...outlets.leaves, outlets.iopubOut, outlets.hbPing];
  return { outlets, close: () => { for (const o of all) o.close(); } };
}
