/**
 * A small ZeroMQ client of an ipyparallel controller, used by the JSON API: it connects to the
 * controller's client-side ports exactly as a Python `ipp.Client` does (query DEALER, mux DEALER,
 * iopub SUB, notification SUB) and speaks the same signed Jupyter messages, so the HTTP API
 * exercises the same paths a Python client does.
 *
 * One reader loop per socket; each DEALER has a single writer (an outbox chain) because zeromq.js
 * allows only one pending send per socket.
 */
import * as zmq from "zeromq";
import { Session, type JsonObject, type Message } from "../../protocol/index.ts";
import type { Logger } from "../../util/log.ts";

/** The fields of ipcontroller-client.json this client uses. */
export interface ClientConnection {
  interface: string;
  registration: number;
  mux: number;
  iopub: number;
  notification: number;
  key: string;
  signature_scheme?: string;
  location?: string;
  /** Set when the controller runs CurveZMQ: this client then connects as a CURVE client. */
  curve_serverkey?: string | null;
}

export interface ExecuteOutcome {
  engine: number;
  status: "ok" | "error" | "aborted" | "timeout";
  executionCount?: number;
  stdout: string;
  stderr: string;
  /** text/plain of the execute_result, when the code's last expression had a value */
  result?: string;
  /** every mime type of the execute_result */
  data?: JsonObject;
  error?: { ename: string; evalue: string; traceback: string[] };
}

export interface ApplyOutcome {
  engine: number;
  status: "ok" | "error" | "aborted" | "timeout";
  content: JsonObject;
  buffers: Buffer[];
}

export class EngineUnknownError extends Error {
  readonly code = "unknown_engine";
  constructor(readonly engine: number) {
    super(`no registered engine with id ${engine}`);
  }
}

interface Pending {
  engine: number;
  kind: "execute" | "apply";
  reply?: Message;
  idle: boolean;
  stdout: string[];
  stderr: string[];
  result?: JsonObject;
  error?: { ename: string; evalue: string; traceback: string[] };
  done: (p: Pending, timedOut: boolean) => void;
  timer?: NodeJS.Timeout;
  idleGrace?: NodeJS.Timeout;
}

/** Serialises sends on one socket (zeromq.js allows one pending send per socket). */
class Outbox {
  private chain: Promise<void> = Promise.resolve();
  constructor(private readonly sock: zmq.Dealer) {}
  send(frames: Buffer[]): Promise<void> {
    const p = this.chain.then(() => this.sock.send(frames));
    this.chain = p.catch(() => {});
    return p;
  }
}

/** The connect host for a controller interface: a wildcard bind means "this machine". */
export function connectBase(iface: string): string {
  const m = /^(\w+):\/\/(.*)$/.exec(iface);
  if (!m) throw new Error(`bad interface ${iface}`);
  const host = m[2] === "*" || m[2] === "0.0.0.0" || m[2] === "" ? "127.0.0.1" : m[2];
  return `${m[1]}://${host}`;
}

function curveClientKeys(): { curvePublicKey: string; curveSecretKey: string } {
  const { publicKey, secretKey } = zmq.curveKeyPair();
  return { curvePublicKey: publicKey, curveSecretKey: secretKey };
}

export class IppClient {
  private readonly session: Session;
  private readonly query: zmq.Dealer;
  private readonly mux: zmq.Dealer;
  private readonly iopub: zmq.Subscriber;
  private readonly notify: zmq.Subscriber;
  private readonly queryOut: Outbox;
  private readonly muxOut: Outbox;
  private readonly pending = new Map<string, Pending>();
  private readonly queryWaiters = new Map<string, (m: Message) => void>();
  private readonly engineIds = new Map<number, string>();
  private closed = false;
  private readonly log: Logger;

  private constructor(private readonly info: ClientConnection, logger: Logger) {
    this.log = logger.with({ component: "api-client" });
    this.session = new Session({ key: info.key, username: "ipp-operator-api" });
    // Under CurveZMQ the controller refuses peers without the handshake: connect as a CURVE
    // client with a key pair of our own, as ipyparallel's clients do.
    const curve = info.curve_serverkey ? { curveServerKey: info.curve_serverkey, ...curveClientKeys() } : {};
    this.query = new zmq.Dealer({ linger: 0, ...curve });
    this.mux = new zmq.Dealer({ linger: 0, ...curve });
    this.iopub = new zmq.Subscriber({ linger: 0, ...curve });
    this.notify = new zmq.Subscriber({ linger: 0, ...curve });
    this.queryOut = new Outbox(this.query);
    this.muxOut = new Outbox(this.mux);
  }

  static async connect(info: ClientConnection, deps: { logger: Logger }): Promise<IppClient> {
    const c = new IppClient(info, deps.logger);
    try {
      await c.start();
    } catch (err) {
      // A client that never got going must not keep sockets (and so the process) alive.
      c.close();
      throw err;
    }
    return c;
  }

  private async start(): Promise<void> {
    const base = connectBase(this.info.interface);
    this.notify.subscribe();
    this.iopub.subscribe();
    this.notify.connect(`${base}:${this.info.notification}`);
    this.iopub.connect(`${base}:${this.info.iopub}`);
    this.query.connect(`${base}:${this.info.registration}`);
    this.mux.connect(`${base}:${this.info.mux}`);
    void this.readLoop(this.query, (m) => this.onQueryReply(m));
    void this.readLoop(this.mux, (m) => this.onMuxReply(m));
    void this.readLoop(this.iopub, (m) => this.onIopub(m));
    void this.readLoop(this.notify, (m) => this.onNotification(m));
    await this.refreshEngines();
  }

  private async readLoop(sock: zmq.Dealer | zmq.Subscriber, handle: (m: Message) => void): Promise<void> {
    try {
      for await (const frames of sock) {
        let msg: Message;
        try {
          msg = this.session.parse(frames);
        } catch (err) {
          this.log.warn("dropped a bad message", { error: String(err) });
          continue;
        }
        try {
          handle(msg);
        } catch (err) {
          this.log.error("message handler failed", err, { msgType: msg.header.msg_type });
        }
      }
    } catch (err) {
      if (!this.closed) this.log.error("socket reader stopped", err);
    }
  }

  /** Ask the hub for the current engines (connection_request), as ipp.Client does at start. */
  async refreshEngines(timeoutMs = 10_000): Promise<Map<number, string>> {
    const reply = await this.request("connection_request", {}, timeoutMs);
    const engines = (reply.content.engines ?? {}) as Record<string, string>;
    for (const [id, uuid] of Object.entries(engines)) this.engineIds.set(Number(id), uuid);
    return new Map(this.engineIds);
  }

  /** engine id → uuid, kept current from registration/unregistration notifications */
  engines(): Map<number, string> {
    return new Map(this.engineIds);
  }

  private async request(msgType: string, content: JsonObject, timeoutMs: number): Promise<Message> {
    const msgId = this.session.nextMsgId();
    const frames = this.session.build(msgType, content, { header: { msg_id: msgId } });
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.queryWaiters.delete(msgId);
        reject(new Error(`${msgType}: no reply from the controller within ${timeoutMs} ms`));
      }, timeoutMs);
      this.queryWaiters.set(msgId, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      this.queryOut.send(frames).catch((err: unknown) => {
        clearTimeout(timer);
        this.queryWaiters.delete(msgId);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  private onQueryReply(m: Message): void {
    const id = m.parent.msg_id;
    const w = typeof id === "string" ? this.queryWaiters.get(id) : undefined;
    if (w) {
      this.queryWaiters.delete(id as string);
      w(m);
    }
  }

  private onNotification(m: Message): void {
    const c = m.content as { id?: number; uuid?: string };
    if (m.header.msg_type === "registration_notification" && typeof c.id === "number" && typeof c.uuid === "string") {
      this.engineIds.set(c.id, c.uuid);
    } else if (m.header.msg_type === "unregistration_notification" && typeof c.id === "number") {
      this.engineIds.delete(c.id);
    }
  }

  private onMuxReply(m: Message): void {
    const id = m.parent.msg_id;
    const p = typeof id === "string" ? this.pending.get(id) : undefined;
    if (!p) return;
    p.reply = m;
    if (p.kind === "apply" || p.idle) this.finish(id as string, p, false);
    else {
      // outputs normally arrive before the reply's idle status; do not wait forever for it
      p.idleGrace = setTimeout(() => this.finish(id as string, p, false), 2000);
    }
  }

  private onIopub(m: Message): void {
    const id = m.parent.msg_id;
    const p = typeof id === "string" ? this.pending.get(id) : undefined;
    if (!p) return;
    const c = m.content;
    switch (m.header.msg_type) {
      case "stream":
        (c.name === "stderr" ? p.stderr : p.stdout).push(String(c.text ?? ""));
        break;
      case "execute_result":
        p.result = (c.data ?? {}) as JsonObject;
        break;
      case "error":
        p.error = {
          ename: String(c.ename ?? ""), evalue: String(c.evalue ?? ""),
          traceback: Array.isArray(c.traceback) ? c.traceback.map(String) : [],
        };
        break;
      case "status":
        if (c.execution_state === "idle") {
          p.idle = true;
          if (p.reply) this.finish(id as string, p, false);
        }
        break;
      default:
        break;
    }
  }

  private finish(msgId: string, p: Pending, timedOut: boolean): void {
    if (!this.pending.delete(msgId)) return;
    if (p.timer) clearTimeout(p.timer);
    if (p.idleGrace) clearTimeout(p.idleGrace);
    p.done(p, timedOut);
  }

  private uuidOf(engine: number): string {
    const uuid = this.engineIds.get(engine);
    if (uuid === undefined) throw new EngineUnknownError(engine);
    return uuid;
  }

  private send(kind: Pending["kind"], engine: number, msgType: string, content: JsonObject, buffers: Buffer[], timeoutMs: number): Promise<{ p: Pending; timedOut: boolean }> {
    const uuid = this.uuidOf(engine);
    const msgId = this.session.nextMsgId();
    const frames = this.session.build(msgType, content, {
      ids: [Buffer.from(uuid, "utf8")], header: { msg_id: msgId }, buffers,
    });
    return new Promise((resolve, reject) => {
      const p: Pending = {
        engine, kind, idle: false, stdout: [], stderr: [],
        done: (pp, timedOut) => resolve({ p: pp, timedOut }),
      };
      p.timer = setTimeout(() => this.finish(msgId, p, true), timeoutMs);
      this.pending.set(msgId, p);
      this.muxOut.send(frames).catch((err: unknown) => {
        this.pending.delete(msgId);
        clearTimeout(p.timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  async execute(engine: number, code: string, timeoutMs: number): Promise<ExecuteOutcome> {
    const { p, timedOut } = await this.send("execute", engine, "execute_request",
      { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: false },
      [], timeoutMs);
    const out: ExecuteOutcome = { engine, status: "timeout", stdout: p.stdout.join(""), stderr: p.stderr.join("") };
    if (timedOut || !p.reply) return out;
    const c = p.reply.content;
    out.status = c.status === "ok" || c.status === "error" || c.status === "aborted" ? c.status : "error";
    if (typeof c.execution_count === "number") out.executionCount = c.execution_count;
    if (p.result) {
      out.data = p.result;
      if (typeof p.result["text/plain"] === "string") out.result = p.result["text/plain"];
    }
    if (out.status === "error") {
      out.error = p.error ?? {
        ename: String(c.ename ?? ""), evalue: String(c.evalue ?? ""),
        traceback: Array.isArray(c.traceback) ? c.traceback.map(String) : [],
      };
    }
    return out;
  }

  async apply(engine: number, buffers: Buffer[], timeoutMs: number): Promise<ApplyOutcome> {
    const { p, timedOut } = await this.send("apply", engine, "apply_request", {}, buffers, timeoutMs);
    if (timedOut || !p.reply) return { engine, status: "timeout", content: {}, buffers: [] };
    const c = p.reply.content;
    const status = c.status === "ok" || c.status === "error" || c.status === "aborted" ? c.status : "error";
    return { engine, status, content: c, buffers: p.reply.buffers };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [id, p] of this.pending) this.finish(id, p, true);
    for (const s of [this.query, this.mux, this.iopub, this.notify]) s.close();
  }
}
