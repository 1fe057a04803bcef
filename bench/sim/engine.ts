/**
 * One simulated ipyparallel 9.2 engine: the engine side of the wire protocol as `ipengine` speaks
 * it, without running Python. Same sockets, identities and message sequence as a real engine
 * (ipyparallel/engine/app.py `register` and `complete_registration`, engine/kernel.py, ipykernel's
 * kernelbase `dispatch_shell`), so the controller sees the same traffic per engine:
 *
 * - registration: a DEALER with the engine's uuid as routing id sends `registration_request`
 *   {uuid, id: requested id}; it is kept open afterwards, as ipengine keeps it;
 * - then one shell ROUTER (routing id = uuid) connected to mux, task and broadcast leaf
 *   `id % leaves`, a control ROUTER, an iopub PUB, and the heart: a SUB on hb_ping whose pings a
 *   DEALER (routing id = uuid) echoes to hb_pong;
 * - every shell request: iopub `status: busy`, the reply, iopub `status: idle`; `apply_request`
 *   replies `{status: ok}` with one result buffer, the pickle of None that
 *   `serialize_object(None)` gives; `execute_request` also publishes `execute_input` (and counts
 *   executions as the kernel does); unknown requests get busy/idle and no reply, as in ipykernel;
 * - control: `shutdown_request` (reply, the iopub shutdown_reply a kernel sends as it exits, then
 *   the engine is gone), `abort_request` and `clear_request` (ok replies).
 *
 * A simulated engine cannot run code, so a long task is spelled out: a function whose pickled
 * form contains the name `ipp_sim_hang` (e.g. `def ipp_sim_hang(): time.sleep(3600)`) keeps the
 * engine busy without a reply, as a real engine running it would be.
 *
 * Messages are signed with the connection file's key through src/protocol; parents are the
 * request's header frame as received. `kill()` closes every socket at once (linger 0), which is
 * what the controller sees when an engine's process is SIGKILLed.
 */
import { Context, Dealer, Publisher, Router, Subscriber } from "zeromq";
import { encodeJson, isoDate, Session, splitFrames, type JsonObject } from "../../src/protocol/index.ts";

/** The engine connection file's fields the engine uses (ipcontroller-engine.json). */
export interface EngineConnection {
  interface: string;
  registration: number;
  mux: number;
  task: number;
  control: number;
  iopub: number;
  hb_ping: number;
  hb_pong: number;
  broadcast: number[];
  key: string;
  signature_scheme?: string;
}

/** `serialize_object(None)` in ipyparallel 9.2 (pickle protocol 4): the result of a no-op. */
export const PICKLED_NONE = Buffer.from([0x80, 0x04, 0x4e, 0x2e]);

/** A function with this in its name runs until the engine dies (see above). */
export const HANG_MARKER = Buffer.from("ipp_sim_hang", "ascii");

export type EngineState = "waiting" | "registering" | "registered" | "failed" | "dead";

/**
 * For engine counts whose connections would not fit the controller's descriptor limit: engines of
 * one process share one iopub PUB and one hb_ping SUB (each engine still answers every ping over
 * its own pong DEALER), have no control connection, and close their registration DEALER once
 * registered. The controller then holds 4 connections per engine (mux, task, broadcast leaf,
 * hb_pong) instead of 8; its per-message work is unchanged, but its ping reaches one subscriber
 * per simulator process instead of one per engine.
 */
export interface SharedSockets {
  iopub: { send(frames: Buffer[]): void };
  /** Every ping goes to each listener. */
  pingListeners: Set<(frames: Buffer[]) => void>;
}

export interface SimEngineOptions {
  conn: EngineConnection;
  /** The lean model's per-process sockets (see SharedSockets); absent = one engine as ipengine is. */
  shared?: SharedSockets;
  context: Context;
  /** The id to request (an MPI engine requests its rank); null = let the hub choose. */
  requestedId: number | null;
  uuid: string;
  /** How long to wait for the registration reply before giving up (ipengine's `--timeout`, 5 s by default). */
  registrationTimeoutMs?: number;
  username?: string;
  /** Called once the registration reply arrived (ok or not). */
  onRegistered?(e: SimEngine): void;
  onFailed?(e: SimEngine, why: string): void;
}

type Frames = Buffer[];

/** One writer per socket (zeromq.js allows one pending send per socket). */
export class Writer {
  private readonly queue: Frames[] = [];
  private busy = false;
  constructor(private readonly sock: { send(f: Frames): Promise<void>; readonly closed: boolean }) {}
  send(frames: Frames): void {
    this.queue.push(frames);
    if (!this.busy) void this.drain();
  }
  private async drain(): Promise<void> {
    this.busy = true;
    try {
      for (let f = this.queue.shift(); f; f = this.queue.shift()) {
        if (this.sock.closed) return;
        try {
          await this.sock.send(f);
        } catch {
          if (this.sock.closed) return;
        }
      }
    } finally {
      this.busy = false;
    }
  }
}

async function readEach(sock: AsyncIterable<Frames> & { readonly closed: boolean }, f: (frames: Frames) => void): Promise<void> {
  try {
    for await (const frames of sock) f(frames);
  } catch {
    /* closed */
  }
}

const enc = encodeJson;

export class SimEngine {
  readonly uuid: string;
  id: number | null;
  state: EngineState = "waiting";
  /** When registration_request was sent (epoch ms). */
  requestSentAt = 0;
  /** Requests answered on shell, by msg_type. */
  readonly handled: Record<string, number> = {};
  private readonly session: Session;
  private readonly sockets: Array<{ close(): void; readonly closed: boolean }> = [];
  private iopub!: { send(frames: Frames): void };
  private registrar: Dealer | undefined;
  private unlisten: (() => void) | undefined;
  private shell!: Writer;
  private control!: Writer;
  private executionCount = 0;

  constructor(private readonly opts: SimEngineOptions) {
    this.uuid = opts.uuid;
    this.id = opts.requestedId;
    this.session = new Session({ key: opts.conn.key, session: opts.uuid, username: opts.username ?? "engine" });
  }

  private url(port: number): string {
    return `${this.opts.conn.interface}:${port}`;
  }

  /** Send registration_request; complete the registration when the reply comes. */
  async register(): Promise<void> {
    const { conn, context } = this.opts;
    this.state = "registering";
    const reg = new Dealer({ context, routingId: this.uuid, linger: 0 });
    this.registrar = reg;
    this.sockets.push(reg);
    reg.connect(this.url(conn.registration));
    const content: JsonObject = { uuid: this.uuid };
    if (this.opts.requestedId !== null) content.id = this.opts.requestedId;
    this.requestSentAt = Date.now();
    await reg.send(this.session.build("registration_request", content));
    const timeoutMs = this.opts.registrationTimeoutMs ?? 5_000;
    reg.receiveTimeout = timeoutMs;
    let reply: Frames;
    try {
      reply = await reg.receive();
    } catch (err) {
      if ((this.state as EngineState) === "dead") return;
      this.state = "failed";
      this.opts.onFailed?.(this, `no registration reply in ${timeoutMs} ms (${String(err)})`);
      return;
    }
    const msg = this.session.parse(reply);
    if (msg.content.status !== "ok") {
      this.state = "failed";
      this.opts.onFailed?.(this, `registration failed: ${JSON.stringify(msg.content)}`);
      return;
    }
    this.id = Number(msg.content.id);
    this.completeRegistration();
    this.state = "registered";
    this.opts.onRegistered?.(this);
  }

  /** The sockets a registered engine opens, in ipengine's order (the heart last). */
  private completeRegistration(): void {
    const { conn, context } = this.opts;
    const id = this.id!;
    const shell = new Router({ context, routingId: this.uuid, linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0 });
    shell.connect(this.url(conn.mux));
    shell.connect(this.url(conn.task));
    shell.connect(this.url(conn.broadcast[id % conn.broadcast.length]!));
    this.sockets.push(shell);
    this.shell = new Writer(shell);
    const shared = this.opts.shared;
    if (shared) {
      this.registrar?.close();
      this.iopub = shared.iopub;
    } else {
      const control = new Router({ context, routingId: this.uuid, linger: 0 });
      control.connect(this.url(conn.control));
      const iopub = new Publisher({ context, linger: 0, sendHighWaterMark: 0 });
      iopub.connect(this.url(conn.iopub));
      this.sockets.push(control, iopub);
      this.control = new Writer(control);
      this.iopub = new Writer(iopub);
      void readEach(control, (frames) => this.onControl(frames));
    }
    const pong = new Dealer({ context, routingId: this.uuid, linger: 0 });
    pong.connect(this.url(conn.hb_pong));
    this.sockets.push(pong);
    const heart = new Writer(pong);
    if (shared) {
      const listener = (frames: Frames) => heart.send(frames);
      shared.pingListeners.add(listener);
      this.unlisten = () => shared.pingListeners.delete(listener);
    } else {
      const ping = new Subscriber({ context, linger: 0 });
      ping.subscribe();
      ping.connect(this.url(conn.hb_ping));
      this.sockets.push(ping);
      void readEach(ping, (frames) => heart.send(frames));
    }
    void readEach(shell, (frames) => this.onShell(frames));
  }

  private topic(what: string): Buffer {
    return Buffer.from(`engine.${this.id}.${what}`, "ascii");
  }

  /** An iopub message with the request's header as parent (and the engine uuid in metadata, as ipengine adds it). */
  private publish(what: string, content: JsonObject, parentFrame: Buffer): void {
    const header = this.session.header(what);
    this.iopub.send(this.session.serializeParts([this.topic(what)], enc(header), parentFrame, enc({ engine: this.uuid }), enc(content)));
  }

  private onShell(frames: Frames): void {
    let raw;
    let header: JsonObject;
    let reqMd: JsonObject;
    try {
      raw = splitFrames(frames);
      this.session.verify(raw);
      header = JSON.parse(raw.header.toString("utf8")) as JsonObject;
      reqMd = JSON.parse(raw.metadata.toString("utf8")) as JsonObject;
    } catch {
      return; // ipykernel logs "Invalid Message" and drops it
    }
    const msgType = String(header.msg_type);
    this.handled[msgType] = (this.handled[msgType] ?? 0) + 1;
    this.publish("status", { execution_state: "busy" }, raw.header);
    // kernel.py init_metadata + finish_metadata, plus the engine uuid send_with_metadata sets
    const md: JsonObject = {
      started: isoDate(new Date()), dependencies_met: true, engine: this.uuid,
      is_broadcast: reqMd.is_broadcast ?? false, is_coalescing: reqMd.is_coalescing ?? false,
      original_msg_id: reqMd.original_msg_id ?? "", label: reqMd.label ?? null, status: "ok",
    };
    if (msgType === "apply_request") {
      if (raw.buffers[0]?.includes(HANG_MARKER)) return; // busy "forever"
      this.reply(this.shell, raw.ids, "apply_reply", { status: "ok" }, raw.header, md, [PICKLED_NONE]);
    } else if (msgType === "execute_request") {
      let content: JsonObject = {};
      try {
        content = JSON.parse(raw.content.toString("utf8")) as JsonObject;
      } catch { /* the kernel would log "Got bad msg" */ }
      const silent = Boolean(content.silent);
      if (!silent) {
        this.executionCount += 1;
        this.publish("execute_input", { code: String(content.code ?? ""), execution_count: this.executionCount }, raw.header);
      }
      const reply = { status: "ok", execution_count: this.executionCount, user_expressions: {}, payload: [] };
      this.reply(this.shell, raw.ids, "execute_reply", reply, raw.header, md);
    }
    this.publish("status", { execution_state: "idle" }, raw.header);
  }

  private onControl(frames: Frames): void {
    let raw;
    let header: JsonObject;
    try {
      raw = splitFrames(frames);
      this.session.verify(raw);
      header = JSON.parse(raw.header.toString("utf8")) as JsonObject;
    } catch {
      return;
    }
    const msgType = String(header.msg_type);
    if (msgType === "shutdown_request") {
      let restart = false;
      try {
        restart = Boolean((JSON.parse(raw.content.toString("utf8")) as JsonObject).restart);
      } catch { /* default */ }
      this.reply(this.control, raw.ids, "shutdown_reply", { status: "ok", restart }, raw.header, {});
      this.publish("shutdown_reply", { status: "ok", restart }, raw.header);
      setTimeout(() => this.kill(), 100);
    } else if (msgType === "abort_request" || msgType === "clear_request") {
      this.reply(this.control, raw.ids, msgType.replace("_request", "_reply"), { status: "ok" }, raw.header, {});
    }
  }

  private reply(to: Writer, ids: Buffer[], msgType: string, content: JsonObject, parentFrame: Buffer, md: JsonObject, buffers: Buffer[] = []): void {
    const header = this.session.header(msgType);
    to.send(this.session.serializeParts(ids, enc(header), parentFrame, enc(md), enc(content), buffers));
  }

  /** Gone at once, as a SIGKILLed process: every connection closes, nothing is sent. */
  kill(): void {
    this.state = "dead";
    this.unlisten?.();
    for (const s of this.sockets) if (!s.closed) s.close();
  }
}
