/**
 * The ipyparallel-compatible controller: hub (registration, queries, notifications), heartbeat,
 * mux/control relays, task scheduler, broadcast scheduler and iopub relay in one process over
 * ZeroMQ. Decisions live in ./core (pure); this module owns the sockets: one reader loop and one
 * writer (Outbox) per socket. Relayed messages keep their frames; only routing frames change, and
 * only messages the controller builds or alters are (re)signed.
 */
import { EventEmitter } from "node:events";
import { hostname } from "node:os";
import { Publisher, Router, Subscriber } from "zeromq";
import { copyingContext } from "./socket-io.ts";
import type { Registry } from "prom-client";
import type { Logger } from "../util/log.ts";
import {
  ProtocolError, Session, decodeRaw, encodeJson, frameBytes, isoDate,
  parseHeader, parseJsonFrame, splitFrames, type BadMessageReason, type JsonObject, type Message, type RawMessage,
} from "../protocol/index.ts";
import { TASK_SCHEMES, type TaskScheme } from "./core/choosers.ts";
import { TaskQueue, type TaskAction, type TaskJob } from "./core/task-queue.ts";
import { HeartMonitor } from "./core/heartbeat.ts";
import { HubDb, QueryError, emptyRecord, project, type TaskRecord } from "./core/hub-db.ts";
import { broadcastMsgId, leafCount, parseBroadcastTargets, splitTargets, type BroadcastTarget } from "./core/broadcast.ts";
import { errorContent, pyRepr, type ErrorContent } from "./core/errors.ts";
import { createControllerMetrics } from "../metrics/controller.ts";
import { Outbox, readLoop, type Frames } from "./socket-io.ts";
import type { ClientConnectionInfo, EngineConnectionInfo } from "./connection-files.ts";

export type { ClientConnectionInfo, EngineConnectionInfo } from "./connection-files.ts";

export type ChannelName =
  | "registration" | "control" | "mux" | "task" | "iopub" | "notification" | "broadcast"
  | "engine_control" | "engine_mux" | "engine_task" | "engine_iopub" | "hb_ping" | "hb_pong" | "engine_broadcast";

/**
 * Fixed ports by channel (absent = any free port). `engine_broadcast` is either the list of leaf
 * ports (an undefined entry = any free port), as an engine file lists them, or a first port from
 * which the leaves are bound consecutively.
 */
export type ControllerPorts = Partial<Record<Exclude<ChannelName, "engine_broadcast">, number>> & {
  engine_broadcast?: number | Array<number | undefined>;
};

export interface ControllerConfig {
  ip: string;
  location?: string;
  /** Fixed ports, else random. */
  ports?: ControllerPorts;
  key: string;
  signatureScheme?: "hmac-sha256";
  heartbeatPeriodMs: number;
  taskScheme: TaskScheme;
  maxMessageBytes?: number;
  /** Max outstanding load-balanced tasks per engine (0 = unlimited). Default 1, as upstream. */
  taskHwm?: number;
  /** Consecutive missed beats before an engine is declared dead. Default 10. */
  maxHeartbeatMisses?: number;
  /** Drop a registration whose heart never beats. Default max(30 s, 10 × period). */
  registrationTimeoutMs?: number;
  /** Wait before failing the tasks of a dead engine (late results may still arrive). Default 5000. */
  strandedTaskDelayMs?: number;
  /** Broadcast tree depth: 2**depth leaf ports in the engine file. Default 1, as upstream. */
  broadcastDepth?: number;
  /** Task records kept for hub queries (default 1024, as upstream). */
  dbRecordLimit?: number;
  /** Request+result buffer bytes kept for hub queries (default 64 MiB; upstream keeps 1 GiB). */
  dbSizeLimitBytes?: number;
  /** Rate limit for bad-message log lines, per reason. Default 60 s. */
  badMessageLogIntervalMs?: number;
  /** CurveZMQ: the controller's key pair (z85). With curve, `key` may be "". */
  curve?: { publicKey: string; secretKey: string };
  /** After a client's shutdown_request: stop this long after replying (-1 = never). Default 1000. */
  shutdownDelayMs?: number;
  /** The client file's `ssh` field (and the engine file's when engineSshServer is absent). */
  sshServer?: string;
  /** The engine file's `ssh` field. Default: sshServer. */
  engineSshServer?: string;
}

export interface EngineSummary {
  id: number;
  uuid: string;
  alive: boolean;
  registeredAt: Date;
  queueDepth: number;
  missedBeats: number;
}

export type ControllerEvent = "engine-registered" | "engine-unregistered";

export interface ControllerHandle {
  readonly clientConnection: ClientConnectionInfo;
  readonly engineConnection: EngineConnectionInfo;
  engines(): EngineSummary[];
  on(event: ControllerEvent, listener: (e: EngineSummary) => void): void;
  /** A client asked the hub to shut down (the controller stops itself after shutdownDelayMs). */
  on(event: "shutdown-requested", listener: () => void): void;
  /** Bad messages dropped so far, by reason (also in the metrics). */
  badMessageCounts(): Record<string, number>;
  stop(): Promise<void>;
}

export interface ControllerDeps {
  logger: Logger;
  registry: Registry;
  clock?: () => Date;
}

export class ConfigError extends Error {
  readonly code = "invalid_config";
}

export function validateConfig(config: ControllerConfig): void {
  if (typeof config.key !== "string") throw new ConfigError("controller config: key must be a string");
  if (config.key === "" && !config.curve) throw new ConfigError("controller config: an empty key is only allowed with CurveZMQ (curve keys)");
  if (!config.ip) throw new ConfigError("controller config: ip is required");
  if (!(config.heartbeatPeriodMs > 0)) throw new ConfigError("controller config: heartbeatPeriodMs must be > 0");
  if (!TASK_SCHEMES.includes(config.taskScheme)) throw new ConfigError(`controller config: unknown taskScheme ${String(config.taskScheme)}`);
  if ((config.signatureScheme ?? "hmac-sha256") !== "hmac-sha256") throw new ConfigError("controller config: only hmac-sha256 is supported");
  if (config.maxMessageBytes !== undefined && !(config.maxMessageBytes > 0)) throw new ConfigError("controller config: maxMessageBytes must be > 0");
}

interface EngineState {
  id: number;
  uuid: string;
  ident: Buffer;
  registeredAt: Date;
  /** Pending mux msg_ids. */
  queue: Set<string>;
  /** Pending task msg_ids. */
  tasks: Set<string>;
  completed: string[];
  /** This engine's queue-depth gauge child. */
  depthGauge: { set(v: number): void };
}

interface Incoming {
  id: number;
  uuid: string;
  timer: NodeJS.Timeout;
}

interface TaskPayload {
  frames: Frames; // [client_id, DELIM, ...]
  header: JsonObject;
  clientId: Buffer;
  receivedAt: number;
}

interface BroadcastPending {
  clientId: Buffer;
  groups: BroadcastTarget[][];
  replies: Map<string, { raw: RawMessage; buffers: Buffer[] } | null>;
  last: RawMessage | null;
  receivedAt: number;
}

/** The requested port of broadcast leaf `i`: from the list, or consecutive from a first port. */
function leafPort(spec: number | Array<number | undefined> | undefined, i: number): number | undefined {
  if (spec === undefined) return undefined;
  return typeof spec === "number" ? spec + i : spec[i];
}

const INTERNAL_CLIENT = Buffer.from("ipp-controller-resubmit");
const b = (s: string) => Buffer.from(s, "utf8");

export async function startController(config: ControllerConfig, deps: ControllerDeps): Promise<ControllerHandle> {
  validateConfig(config);
  const log = deps.logger.with({ component: "controller" });
  const clock = deps.clock ?? (() => new Date());
  const metrics = createControllerMetrics(deps.registry);
  const session = new Session({ key: config.key, username: "ipp-controller", clock });
  const maxBytes = config.maxMessageBytes ?? 2 ** 31;
  const period = config.heartbeatPeriodMs;
  const depth = config.broadcastDepth ?? 1;
  const nLeaves = leafCount(depth);
  const registrationTimeoutMs = config.registrationTimeoutMs ?? Math.max(30_000, 10 * period);
  const strandedDelay = config.strandedTaskDelayMs ?? 5000;
  const badLogInterval = config.badMessageLogIntervalMs ?? 60_000;
  const startedAt = Date.now();
  const events = new EventEmitter();
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;

  const later = (ms: number, f: () => void): NodeJS.Timeout => {
    const t = setTimeout(() => {
      timers.delete(t);
      if (!stopped) f();
    }, ms);
    timers.add(t);
    return t;
  };

  // ---------------------------------------------------------------- sockets
  const context = copyingContext();
  const curveOpts = { context, ...(config.curve ? { curveServer: true, curveSecretKey: config.curve.secretKey, curvePublicKey: config.curve.publicKey } : {}) };
  const router = (routingId?: string) => new Router({ sendHighWaterMark: 0, receiveHighWaterMark: 0, linger: 0, ...(routingId ? { routingId } : {}), ...curveOpts });
  const reg = router();
  const notif = new Publisher({ linger: 0, sendHighWaterMark: 0, ...curveOpts });
  const muxIn = router("mux_in");
  const muxOut = router("mux_out");
  const ctlIn = router("control_in");
  const ctlOut = router("control_out");
  const taskIn = router("task_in");
  const taskOut = router("task_out");
  const bcastIn = router("sub_scheduler_0");
  const leafName = (i: number) => `sub_scheduler_${i.toString(2).padStart(depth + 1, "0")}`;
  const leaves = Array.from({ length: nLeaves }, (_, i) => router(leafName(i)));
  const iopubIn = new Subscriber({ linger: 0, receiveHighWaterMark: 0, ...curveOpts });
  iopubIn.subscribe();
  const iopubOut = new Publisher({ linger: 0, sendHighWaterMark: 0, ...curveOpts });
  const hbPing = new Publisher({ linger: 0, ...curveOpts });
  const hbPong = router();
  const all = [reg, notif, muxIn, muxOut, ctlIn, ctlOut, taskIn, taskOut, bcastIn, ...leaves, iopubIn, iopubOut, hbPing, hbPong];

  const ports = config.ports ?? {};
  const bindOne = async (sock: { bind(a: string): Promise<void>; readonly lastEndpoint: string | null }, port?: number): Promise<number> => {
    await sock.bind(`tcp://${config.ip}:${port ?? "*"}`);
    const ep = sock.lastEndpoint ?? "";
    return Number(ep.slice(ep.lastIndexOf(":") + 1));
  };
  let portsOut: Record<"registration" | "notification" | "mux" | "engine_mux" | "control" | "engine_control" | "task" | "engine_task" | "broadcast" | "iopub" | "engine_iopub" | "hb_ping" | "hb_pong", number> & { leaves: number[] };
  try {
    const p = {
      registration: await bindOne(reg, ports.registration),
      notification: await bindOne(notif, ports.notification),
      mux: await bindOne(muxIn, ports.mux),
      engine_mux: await bindOne(muxOut, ports.engine_mux),
      control: await bindOne(ctlIn, ports.control),
      engine_control: await bindOne(ctlOut, ports.engine_control),
      task: await bindOne(taskIn, ports.task),
      engine_task: await bindOne(taskOut, ports.engine_task),
      broadcast: await bindOne(bcastIn, ports.broadcast),
      iopub: await bindOne(iopubOut, ports.iopub),
      engine_iopub: await bindOne(iopubIn, ports.engine_iopub),
      hb_ping: await bindOne(hbPing, ports.hb_ping),
      hb_pong: await bindOne(hbPong, ports.hb_pong),
    };
    const leafPorts: number[] = [];
    for (let i = 0; i < nLeaves; i++) {
      leafPorts.push(await bindOne(leaves[i]!, leafPort(ports.engine_broadcast, i)));
    }
    portsOut = { ...p, leaves: leafPorts };
  } catch (err) {
    for (const s of all) s.close();
    throw err;
  }

  const location = config.location ?? hostname();
  const iface = `tcp://${config.ip}`;
  const common = {
    key: config.key,
    curve_serverkey: config.curve ? config.curve.publicKey : null,
    location,
    pack: "json" as const,
    unpack: "json" as const,
    signature_scheme: config.signatureScheme ?? "hmac-sha256",
  };
  const clientConnection: ClientConnectionInfo = {
    ssh: config.sshServer ?? "", interface: iface, registration: portsOut.registration, control: portsOut.control,
    mux: portsOut.mux, task: portsOut.task, task_scheme: config.taskScheme, iopub: portsOut.iopub,
    notification: portsOut.notification, broadcast: portsOut.broadcast, ...common,
  };
  const engineConnection: EngineConnectionInfo = {
    ssh: config.engineSshServer ?? config.sshServer ?? "", interface: iface, registration: portsOut.registration, control: portsOut.engine_control,
    mux: portsOut.engine_mux, task: portsOut.engine_task, iopub: portsOut.engine_iopub, hb_ping: portsOut.hb_ping,
    hb_pong: portsOut.hb_pong, broadcast: portsOut.leaves, ...common,
  };
  const engineInfoForReply = (() => {
    const { key: _k, location: _l, ...rest } = engineConnection;
    return rest;
  })();

  const onSockErr = (channel: string) => (err: unknown) => log.error("socket error", err, { channel });
  const out = {
    reg: new Outbox(reg, onSockErr("registration")),
    notif: new Outbox(notif, onSockErr("notification")),
    muxIn: new Outbox(muxIn, onSockErr("mux")),
    muxOut: new Outbox(muxOut, onSockErr("engine_mux")),
    ctlIn: new Outbox(ctlIn, onSockErr("control")),
    ctlOut: new Outbox(ctlOut, onSockErr("engine_control")),
    taskIn: new Outbox(taskIn, onSockErr("task")),
    taskOut: new Outbox(taskOut, onSockErr("engine_task")),
    bcastIn: new Outbox(bcastIn, onSockErr("broadcast")),
    leaves: leaves.map((l, i) => new Outbox(l, onSockErr(`engine_broadcast_${i}`))),
    iopubOut: new Outbox(iopubOut, onSockErr("iopub")),
    hbPing: new Outbox(hbPing, onSockErr("hb_ping")),
  };

  // ---------------------------------------------------------------- metrics helpers
  const chan = (name: string) => ({
    inMsg: metrics.messages.labels(name, "in"), inBytes: metrics.bytes.labels(name, "in"),
    outMsg: metrics.messages.labels(name, "out"), outBytes: metrics.bytes.labels(name, "out"),
  });
  const ch = {
    registration: chan("registration"), mux: chan("mux"), control: chan("control"), task: chan("task"),
    broadcast: chan("broadcast"), iopub: chan("iopub"), hb: chan("heartbeat"), notification: chan("notification"),
  };
  type Ch = ReturnType<typeof chan>;
  // label children bound once: a per-message labels() call hashes the label values every time
  const queueMetrics = (q: string) => ({
    submitted: metrics.tasksSubmitted.labels(q), completed: metrics.tasksCompleted.labels(q), latency: metrics.taskLatency.labels(q),
  });
  const perQueue = { mux: queueMetrics("mux"), task: queueMetrics("task"), broadcast: queueMetrics("broadcast") };
  const countIn = (c: Ch, frames: Frames) => {
    const n = frameBytes(frames);
    c.inMsg.inc();
    c.inBytes.inc(n);
    return n;
  };
  const countOut = (c: Ch, frames: Frames) => {
    c.outMsg.inc();
    c.outBytes.inc(frameBytes(frames));
  };
  const badCounts: Record<string, number> = {};
  const badLastLogged = new Map<string, number>();
  const bad = (channel: string, reason: BadMessageReason, detail: string) => {
    metrics.badMessages.labels(channel, reason).inc();
    badCounts[reason] = (badCounts[reason] ?? 0) + 1;
    const now = Date.now();
    const key = reason;
    if ((badLastLogged.get(key) ?? -Infinity) + badLogInterval <= now) {
      badLastLogged.set(key, now);
      log.warn("dropped bad message", { channel, reason, detail, droppedSoFar: badCounts[reason] });
    }
  };
  /** Split + verify; on failure count it and return null. */
  const check = (channel: string, frames: Frames, bytes: number): RawMessage | null => {
    try {
      if (bytes > maxBytes) throw new ProtocolError("too_large", `message of ${bytes} bytes over the ${maxBytes} cap`);
      const raw = splitFrames(frames);
      session.verify(raw);
      return raw;
    } catch (err) {
      if (err instanceof ProtocolError) bad(channel, err.code, err.message);
      else bad(channel, "truncated", String(err));
      return null;
    }
  };
  const decode = (channel: string, raw: RawMessage): Message | null => {
    try {
      return decodeRaw(raw);
    } catch (err) {
      bad(channel, err instanceof ProtocolError ? err.code : "bad_json", String(err));
      return null;
    }
  };
  const headerOf = (channel: string, raw: RawMessage): JsonObject | null => {
    try {
      return parseHeader(raw.header);
    } catch (err) {
      bad(channel, err instanceof ProtocolError ? err.code : "bad_json", String(err));
      return null;
    }
  };
  const metadataOf = (channel: string, raw: RawMessage): JsonObject | null => {
    try {
      return parseJsonFrame(raw.metadata, "metadata");
    } catch (err) {
      bad(channel, err instanceof ProtocolError ? err.code : "bad_json", String(err));
      return null;
    }
  };

  // ---------------------------------------------------------------- hub state
  const engines = new Map<number, EngineState>();
  const byUuid = new Map<string, EngineState>();
  const incoming = new Map<string, Incoming>();
  let idCounter = 0;
  const hubPending = new Set<string>();
  const hubCompleted = new Set<string>();
  const unassigned = new Set<string>();
  const db = new HubDb({ recordLimit: config.dbRecordLimit, sizeLimitBytes: config.dbSizeLimitBytes ?? 64 * 1024 * 1024 });
  const heart = new HeartMonitor({ maxMisses: config.maxHeartbeatMisses ?? 10 });
  const tq = new TaskQueue<TaskPayload>({ scheme: config.taskScheme, hwm: config.taskHwm ?? 1 });
  const bcastPending = new Map<string, BroadcastPending>();
  const muxStarted = new Map<string, number>();
  let firstEngineSeen = false;
  let dbCulledSeen = 0;

  const now = () => isoDate(clock());
  const summary = (e: EngineState): EngineSummary => ({
    id: e.id, uuid: e.uuid, alive: heart.missed(e.uuid) === 0, registeredAt: e.registeredAt,
    queueDepth: e.queue.size + e.tasks.size, missedBeats: heart.missed(e.uuid),
  });
  const setDepth = (e: EngineState) => e.depthGauge.set(e.queue.size + e.tasks.size);
  const refreshEngineGauges = () => {
    metrics.enginesRegistered.set(engines.size);
    let alive = 0;
    for (const e of engines.values()) if (heart.missed(e.uuid) === 0) alive++;
    metrics.enginesAlive.set(alive);
  };
  const dbTouched = () => {
    metrics.dbRecords.set(db.size);
    if (db.culled > dbCulledSeen) {
      metrics.dbCulled.inc(db.culled - dbCulledSeen);
      dbCulledSeen = db.culled;
    }
  };

  const sendNotification = (msgType: string, content: JsonObject, parent?: JsonObject) => {
    const frames = session.build(msgType, content, parent ? { parent } : {});
    countOut(ch.notification, frames);
    out.notif.send(frames);
  };
  const reply = (clientId: Buffer, msgType: string, content: JsonObject, parent: JsonObject | null, buffers: Buffer[] = []) => {
    const frames = session.build(msgType, content, { ids: [clientId], parent: parent ?? {}, buffers });
    countOut(ch.registration, frames);
    out.reg.send(frames);
  };

  // ---------------------------------------------------------------- registration
  const newEngineId = (requested: unknown): number => {
    if (typeof requested === "number" && Number.isInteger(requested) && requested >= 0) {
      const inUse = engines.has(requested) || [...incoming.values()].some((i) => i.id === requested);
      if (!inUse) {
        idCounter = Math.max(requested + 1, idCounter);
        return requested;
      }
      log.warn("requested engine id in use", { requested });
    }
    return idCounter++;
  };

  const registerEngine = (ident: Buffer, msg: Message) => {
    const uuid = msg.content.uuid;
    if (typeof uuid !== "string") {
      reply(ident, "registration_reply", errorContent("KeyError", "'uuid'"), null);
      metrics.registrations.labels("error").inc();
      return;
    }
    const eid = newEngineId(msg.content.id);
    if (byUuid.has(uuid) || incoming.has(uuid)) {
      reply(ident, "registration_reply", errorContent("KeyError", `uuid ${pyRepr(uuid)} in use`), null);
      metrics.registrations.labels("error").inc();
      log.error("registration uuid in use", undefined, { uuid });
      return;
    }
    // upstream sends registration_reply without a parent header
    reply(ident, "registration_reply", { id: eid, status: "ok", hb_period: period, connection_info: engineInfoForReply }, null);
    const timer = later(registrationTimeoutMs, () => {
      if (incoming.get(uuid)?.id === eid) {
        incoming.delete(uuid);
        metrics.registrations.labels("stalled").inc();
        log.warn("purging stalled registration", { id: eid, uuid });
      }
    });
    incoming.set(uuid, { id: eid, uuid, timer });
    pingSoon();
    log.info("accepting registration", { id: eid, uuid });
  };

  const finishRegistration = (uuid: string) => {
    const inc = incoming.get(uuid);
    if (!inc) return;
    incoming.delete(uuid);
    clearTimeout(inc.timer);
    timers.delete(inc.timer);
    const e: EngineState = {
      id: inc.id, uuid, ident: b(uuid), registeredAt: clock(), queue: new Set(), tasks: new Set(), completed: [],
      depthGauge: metrics.queueDepth.labels(String(inc.id)),
    };
    engines.set(e.id, e);
    byUuid.set(uuid, e);
    metrics.registrations.labels("ok").inc();
    if (!firstEngineSeen) {
      firstEngineSeen = true;
      metrics.timeToFirstEngine.set((Date.now() - startedAt) / 1000);
    }
    setDepth(e);
    refreshEngineGauges();
    sendNotification("registration_notification", { id: e.id, uuid });
    runTaskActions(tq.addEngine(uuid));
    log.info("engine registered", { id: e.id, uuid });
    events.emit("engine-registered", summary(e));
  };

  const unregisterEngine = (eid: number, reason: string) => {
    const e = engines.get(eid);
    if (!e) {
      for (const [uuid, inc] of incoming) {
        if (inc.id === eid) {
          incoming.delete(uuid);
          clearTimeout(inc.timer);
          log.info("canceling registration", { id: eid, uuid });
        }
      }
      return;
    }
    engines.delete(eid);
    byUuid.delete(e.uuid);
    heart.remove(e.uuid);
    metrics.unregistrations.labels(reason).inc();
    metrics.forgetEngine(String(eid));
    refreshEngineGauges();
    sendNotification("unregistration_notification", { id: eid, uuid: e.uuid });
    log.warn("engine unregistered", { id: eid, uuid: e.uuid, reason });

    // load-balanced tasks: answered with EngineError (or retried) after a grace period
    const stranded = tq.removeEngine(e.uuid);
    later(strandedDelay, () => {
      for (const job of stranded) {
        const content = errorContent("EngineError", `Engine ${pyRepr(e.uuid)} died while running task ${pyRepr(job.msgId)}`);
        const md = { status: "error", engine: e.uuid, date: now() };
        const frames = session.build("apply_reply", content, { ids: [e.ident, job.payload.clientId], parent: job.payload.header, metadata: md });
        handleTaskResult(frames, true);
      }
      tq.forgetEngine(e.uuid);
      // mux requests: clients fail them on the notification; the hub records the error
      for (const msgId of e.queue) {
        hubPending.delete(msgId);
        hubCompleted.add(msgId);
        const content = errorContent("EngineError", `Engine ${eid} died while running task ${pyRepr(msgId)}`);
        if (db.has(msgId)) {
          db.update(msgId, { result_content: content, result_header: { engine: e.uuid, date: now() }, result_buffers: [], completed: now(), engine_uuid: e.uuid });
        }
        metrics.tasksFailed.labels("mux", "engine_died").inc();
      }
      e.queue.clear();
      dbTouched();
    });
    // broadcasts waiting on this engine: complete without it
    for (const [orig, p] of bcastPending) {
      if (p.replies.has(e.uuid) && p.replies.get(e.uuid) === null) {
        p.replies.delete(e.uuid);
        maybeFinishBroadcast(orig, p);
      }
    }
    events.emit("engine-unregistered", { ...summary(e), alive: false });
  };

  // ---------------------------------------------------------------- hub queries
  const validateTargets = (targets: unknown): number[] => {
    if (targets === null || targets === undefined) return [...engines.keys()].sort((x, y) => x - y);
    const list = Array.isArray(targets) ? targets : [targets];
    const ids = list.map((t) => (typeof t === "string" ? byUuid.get(t)?.id ?? t : t));
    const badT = ids.filter((t) => typeof t !== "number" || !engines.has(t));
    if (badT.length) throw Object.assign(new Error(`No Such Engine: ${JSON.stringify(badT)}`), { ename: "IndexError" });
    if (!ids.length) throw Object.assign(new Error("No Engines Registered"), { ename: "IndexError" });
    return ids as number[];
  };
  const wrap = (err: unknown): ErrorContent => {
    const e = err as { ename?: string; message?: string };
    return errorContent(e.ename ?? (err instanceof QueryError ? "ValueError" : "Exception"), e.message ?? String(err));
  };
  const recordReply = (rec: TaskRecord): [JsonObject, Buffer[]] => {
    const io = { execute_input: rec.execute_input, execute_result: rec.execute_result, error: rec.error, stdout: rec.stdout, stderr: rec.stderr };
    return [{
      header: rec.header, metadata: rec.metadata, result_metadata: rec.result_metadata, result_header: rec.result_header,
      result_content: rec.result_content, received: rec.received, io,
    }, rec.result_buffers ? [...rec.result_buffers] : []];
  };

  type QueryHandler = (clientId: Buffer, msg: Message) => void;
  const queries: Record<string, QueryHandler> = {
    registration_request: (id, msg) => registerEngine(id, msg),
    unregistration_request: (_id, msg) => {
      const eid = msg.content.id;
      if (typeof eid === "number") unregisterEngine(eid, "unregistration_request");
    },
    connection_request: (id, msg) => {
      const eng: Record<string, string> = {};
      for (const [eid, e] of engines) eng[String(eid)] = e.uuid;
      reply(id, "connection_reply", { status: "ok", engines: eng }, msg.header);
    },
    queue_request: (id, msg) => {
      let targets: number[];
      try {
        targets = validateTargets(msg.content.targets);
      } catch (err) {
        reply(id, "hub_error", wrap(err), msg.header);
        return;
      }
      const verbose = Boolean(msg.content.verbose);
      const content: JsonObject = { status: "ok" };
      for (const t of targets) {
        const e = engines.get(t)!;
        content[String(t)] = verbose
          ? { queue: [...e.queue], completed: [...e.completed], tasks: [...e.tasks] }
          : { queue: e.queue.size, completed: e.completed.length, tasks: e.tasks.size };
      }
      content.unassigned = verbose ? [...unassigned] : unassigned.size;
      reply(id, "queue_reply", content, msg.header);
    },
    load_request: (id, msg) => {
      let targets: number[];
      try {
        targets = validateTargets(msg.content.targets);
      } catch (err) {
        reply(id, "hub_error", wrap(err), msg.header);
        return;
      }
      const content: JsonObject = { status: "ok" };
      for (const t of targets) {
        const e = engines.get(t)!;
        content[String(t)] = e.queue.size + e.tasks.size;
      }
      reply(id, "load_reply", content, msg.header);
    },
    result_request: (id, msg) => {
      const ids = Array.isArray(msg.content.msg_ids) ? [...new Set(msg.content.msg_ids.map(String))].sort() : [];
      const statusOnly = Boolean(msg.content.status_only);
      const pending: string[] = [];
      const completed: string[] = [];
      let content: JsonObject = { status: "ok", pending, completed };
      const buffers: Buffer[] = [];
      for (const m of ids) {
        const rec = db.get(m);
        if (hubPending.has(m)) pending.push(m);
        else if (hubCompleted.has(m) || rec?.completed) {
          completed.push(m);
          if (!statusOnly) {
            if (!rec) {
              content = errorContent("KeyError", `'No such message: ${m}'`);
              break;
            }
            const [c, bufs] = recordReply(rec);
            content[m] = c;
            buffers.push(...bufs);
          }
        } else if (rec) pending.push(m);
        else {
          content = errorContent("KeyError", `'No such message: ${m}'`);
          break;
        }
      }
      reply(id, "result_reply", content, msg.header, content.status === "ok" ? buffers : []);
    },
    history_request: (id, msg) => {
      reply(id, "history_reply", { status: "ok", history: db.history() }, msg.header);
    },
    db_request: (id, msg) => {
      const keys = Array.isArray(msg.content.keys) ? msg.content.keys.map(String) : null;
      let content: JsonObject;
      const buffers: Buffer[] = [];
      try {
        const recs = db.find((msg.content.query ?? {}) as JsonObject);
        const bufferLens: number[] | null = keys && keys.includes("buffers") ? [] : null;
        const resultBufferLens: number[] | null = keys && keys.includes("result_buffers") ? [] : null;
        const records = recs.map((rec) => {
          const r = project(rec, keys);
          const bs = (r.buffers as Buffer[] | null | undefined) ?? [];
          const rbs = (r.result_buffers as Buffer[] | null | undefined) ?? [];
          delete r.buffers;
          delete r.result_buffers;
          if (bufferLens) {
            bufferLens.push(bs.length);
            buffers.push(...bs);
          }
          if (resultBufferLens) {
            resultBufferLens.push(rbs.length);
            buffers.push(...rbs);
          }
          return r;
        });
        content = { status: "ok", records, buffer_lens: bufferLens, result_buffer_lens: resultBufferLens };
      } catch (err) {
        content = wrap(err);
        buffers.length = 0;
      }
      reply(id, "db_reply", content, msg.header, buffers);
    },
    purge_request: (id, msg) => {
      const ids = msg.content.msg_ids ?? [];
      let content: JsonObject = { status: "ok" };
      try {
        if (ids === "all") {
          db.dropMatching({ completed: { $ne: null } });
        } else {
          const list = Array.isArray(ids) ? ids.map(String) : [];
          const pend = list.filter((m) => hubPending.has(m));
          if (pend.length) throw Object.assign(new Error(`msg pending: ${pyRepr(pend[0]!)}`), { ename: "IndexError" });
          db.dropMatching({ msg_id: { $in: list } });
          const eids = Array.isArray(msg.content.engine_ids) ? msg.content.engine_ids : [];
          for (const eid of eids) {
            const e = typeof eid === "number" ? engines.get(eid) : undefined;
            if (!e) throw Object.assign(new Error(`No such engine: ${String(eid)}`), { ename: "IndexError" });
            db.dropMatching({ engine_uuid: e.uuid, completed: { $ne: null } });
          }
        }
      } catch (err) {
        content = wrap(err);
      }
      dbTouched();
      reply(id, "purge_reply", content, msg.header);
    },
    resubmit_request: (id, msg) => {
      const ids = Array.isArray(msg.content.msg_ids) ? msg.content.msg_ids.map(String) : [];
      const recs = ids.map((m) => db.get(m));
      const missing = ids.filter((_m, i) => !recs[i] || !recs[i]!.header);
      if (missing.length) {
        reply(id, "resubmit_reply", errorContent("KeyError", `No such msg(s): ${JSON.stringify(missing)}`), msg.header);
        return;
      }
      const resubmitted: Record<string, string> = {};
      for (const rec of recs as TaskRecord[]) {
        const fresh = session.header(String(rec.header!.msg_type));
        const header = { ...rec.header!, msg_id: fresh.msg_id, date: fresh.date };
        const frames = session.serializeParts(
          [INTERNAL_CLIENT], encodeJson(header), encodeJson(rec.header), encodeJson({}), encodeJson(rec.content ?? {}), rec.buffers ?? [],
        );
        resubmitted[rec.msg_id] = fresh.msg_id;
        handleTaskSubmission(frames);
        db.update(rec.msg_id, { resubmitted: fresh.msg_id });
      }
      reply(id, "resubmit_reply", { status: "ok", resubmitted }, msg.header);
    },
    shutdown_request: (id, msg) => {
      reply(id, "shutdown_reply", { status: "ok" }, msg.header);
      sendNotification("shutdown_notification", { status: "ok" }, msg.header);
      log.info("shutdown requested by a client");
      events.emit("shutdown-requested");
      const delay = config.shutdownDelayMs ?? 1000;
      if (delay >= 0) later(delay, () => void handle.stop());
    },
  };

  const onRegistration = (frames: Frames) => {
    const n = countIn(ch.registration, frames);
    const raw = check("registration", frames, n);
    if (!raw) return;
    const clientId = raw.ids[0];
    if (!clientId) return bad("registration", "bad_routing", "no routing id");
    const msg = decode("registration", raw);
    if (!msg) return;
    const handler = queries[msg.header.msg_type];
    if (!handler) {
      bad("registration", "unknown_msg_type", msg.header.msg_type);
      reply(clientId, "hub_error", errorContent("KeyError", `"Bad Message Type: ${pyRepr(msg.header.msg_type)}"`), msg.header);
      return;
    }
    try {
      handler(clientId, msg);
    } catch (err) {
      log.error("error handling query", err, { msgType: msg.header.msg_type });
      reply(clientId, "hub_error", wrap(err), msg.header);
    }
  };

  // ---------------------------------------------------------------- heartbeat
  const beat = () => {
    const r = heart.beat((Date.now() - startedAt) / 1000);
    for (const h of r.newHearts) if (incoming.has(h)) finishRegistration(h);
    for (const e of engines.values()) {
      if (heart.missed(e.uuid) > 0) metrics.heartbeatMisses.labels(String(e.id)).inc();
    }
    for (const h of r.failures) {
      const e = byUuid.get(h);
      if (e) unregisterEngine(e.id, "heartbeat");
    }
    refreshEngineGauges();
    lastPing = r.ping;
    countOut(ch.hb, [r.ping]);
    out.hbPing.send([r.ping]);
  };
  let lastPing: Buffer = Buffer.alloc(0);
  // An engine starts its heart only after its registration_reply, and the registration completes
  // at the heart's first pong; waiting for the next periodic beat would add up to a whole period
  // (3 s by default) to every engine's registration. So while registrations are pending, repeat
  // the current ping every period/10 (at most 100 ms) for up to two periods. Hearts echo it like
  // any ping; a pong to the current ping counts once per period either way.
  const fastPingMs = Math.max(10, Math.min(100, period / 10));
  let fastPingTimer: NodeJS.Timeout | undefined;
  let fastPingUntil = 0;
  const pingSoon = () => {
    fastPingUntil = Date.now() + 2 * period;
    fastPingTimer ??= setInterval(() => {
      if (stopped || incoming.size === 0 || Date.now() > fastPingUntil) {
        clearInterval(fastPingTimer);
        fastPingTimer = undefined;
        return;
      }
      countOut(ch.hb, [lastPing]);
      out.hbPing.send([lastPing]);
    }, fastPingMs);
  };
  const hbTimer = setInterval(() => {
    if (!stopped) beat();
  }, period);
  beat();

  const onPong = (frames: Frames) => {
    countIn(ch.hb, frames);
    if (frames.length !== 2) return bad("hb_pong", "truncated", `pong with ${frames.length} frames`);
    const uuid = frames[0]!.toString("utf8");
    const r = heart.pong(uuid, frames[1]!);
    if (r === "new") {
      // complete the registration at the first pong instead of the next beat
      if (incoming.has(uuid)) finishRegistration(uuid);
      else if (!byUuid.has(uuid)) heart.remove(uuid);
    }
  };

  // ---------------------------------------------------------------- mux / control
  const onMuxRequest = (frames: Frames) => {
    const n = countIn(ch.mux, frames);
    const raw = check("mux", frames, n);
    if (!raw) return;
    if (raw.ids.length < 2) return bad("mux", "bad_routing", "mux request without engine routing frame");
    const engineIdent = raw.ids[1]!;
    const e = byUuid.get(engineIdent.toString("utf8"));
    const msg = decode("mux", raw);
    if (!msg) return;
    if (!e) return bad("mux", "bad_routing", "mux request for an unknown engine");
    const fwd = [engineIdent, raw.ids[0]!, ...frames.slice(2)];
    countOut(ch.mux, fwd);
    out.muxOut.send(fwd);
    const msgId = msg.header.msg_id;
    const rec = db.get(msgId) ?? emptyRecord(msgId);
    Object.assign(rec, {
      header: msg.header, metadata: msg.metadata, content: msg.content, buffers: raw.buffers, submitted: msg.header.date ?? now(),
      engine_uuid: e.uuid, client_uuid: msg.header.session, queue: "mux", label: msg.metadata.label ?? null,
    });
    db.add(rec);
    dbTouched();
    hubPending.add(msgId);
    e.queue.add(msgId);
    muxStarted.set(msgId, Date.now());
    setDepth(e);
    perQueue.mux.submitted.inc();
  };
  const onMuxReply = (frames: Frames) => {
    const n = countIn(ch.mux, frames);
    const raw = check("engine_mux", frames, n);
    if (!raw) return;
    if (raw.ids.length < 2) return bad("engine_mux", "bad_routing", "mux reply without client routing frame");
    const engineIdent = raw.ids[0]!;
    const fwd = [raw.ids[1]!, engineIdent, ...frames.slice(2)];
    countOut(ch.mux, fwd);
    out.muxIn.send(fwd);
    const e = byUuid.get(engineIdent.toString("utf8"));
    let parent: JsonObject;
    let header: JsonObject;
    let md: JsonObject;
    let content: JsonObject;
    try {
      parent = parseJsonFrame(raw.parent, "parent");
      header = parseJsonFrame(raw.header, "header");
      md = parseJsonFrame(raw.metadata, "metadata");
      content = parseJsonFrame(raw.content, "content");
    } catch {
      return;
    }
    const msgId = typeof parent.msg_id === "string" ? parent.msg_id : null;
    if (!msgId || !e) return;
    const status = content.status;
    if (hubPending.delete(msgId)) {
      hubCompleted.add(msgId);
      e.queue.delete(msgId);
      e.completed.push(msgId);
      setDepth(e);
    }
    const t0 = muxStarted.get(msgId);
    if (t0 !== undefined) {
      muxStarted.delete(msgId);
      perQueue.mux.latency.observe((Date.now() - t0) / 1000);
    }
    if (status === "ok") perQueue.mux.completed.inc();
    else metrics.tasksFailed.labels("mux", String(content.ename ?? status ?? "error")).inc();
    db.update(msgId, {
      result_header: header, result_metadata: md, result_content: content, result_buffers: raw.buffers,
      started: (md.started as string | undefined) ?? null, completed: (header.date as string | undefined) ?? now(), received: now(), engine_uuid: e.uuid,
    });
    dbTouched();
  };
  const onControlRequest = (frames: Frames) => {
    const n = countIn(ch.control, frames);
    const raw = check("control", frames, n);
    if (!raw) return;
    if (raw.ids.length < 2) return bad("control", "bad_routing", "control request without engine routing frame");
    if (!headerOf("control", raw)) return;
    const fwd = [raw.ids[1]!, raw.ids[0]!, ...frames.slice(2)];
    countOut(ch.control, fwd);
    out.ctlOut.send(fwd);
  };
  const onControlReply = (frames: Frames) => {
    const n = countIn(ch.control, frames);
    const raw = check("engine_control", frames, n);
    if (!raw) return;
    if (raw.ids.length < 2) return bad("engine_control", "bad_routing", "control reply without client routing frame");
    if (!headerOf("engine_control", raw)) return;
    const fwd = [raw.ids[1]!, raw.ids[0]!, ...frames.slice(2)];
    countOut(ch.control, fwd);
    out.ctlIn.send(fwd);
  };

  // ---------------------------------------------------------------- task scheduler
  function runTaskActions(actions: TaskAction<TaskPayload>[]): void {
    for (const a of actions) {
      if (a.kind === "send") {
        const e = byUuid.get(a.engine);
        const fwd = [b(a.engine), ...a.job.payload.frames];
        countOut(ch.task, fwd);
        out.taskOut.send(fwd);
        unassigned.delete(a.job.msgId);
        if (e) {
          e.tasks.add(a.job.msgId);
          setDepth(e);
        }
        db.update(a.job.msgId, { engine_uuid: a.engine });
      } else if (a.kind === "fail") {
        failTask(a.job, a.ename);
      } else {
        later(a.ms, () => runTaskActions(tq.timeout(a.job.msgId, a.token)));
      }
    }
  }
  const failTask = (job: TaskJob<TaskPayload>, ename: string) => {
    const evalue = ename === "TaskTimeout" ? `Task ${job.msgId} timed out` : ename === "InvalidDependency" ? "invalid dependency" : "impossible dependency";
    const content = errorContent(ename, evalue);
    const frames = session.build("apply_reply", content, { ids: [job.payload.clientId], parent: job.payload.header });
    unassigned.delete(job.msgId);
    hubPending.delete(job.msgId);
    hubCompleted.add(job.msgId);
    const raw = splitFrames(frames);
    db.update(job.msgId, {
      result_header: parseJsonFrame(raw.header, "header"), result_metadata: {}, result_content: content, result_buffers: [],
      completed: now(), received: now(),
    });
    dbTouched();
    metrics.tasksFailed.labels("task", ename).inc();
    if (!job.payload.clientId.equals(INTERNAL_CLIENT)) {
      countOut(ch.task, frames);
      out.taskIn.send(frames);
    }
  };
  function handleTaskSubmission(frames: Frames): void {
    const n = countIn(ch.task, frames);
    const raw = check("task", frames, n);
    if (!raw) return;
    const clientId = raw.ids[0];
    if (!clientId) return bad("task", "bad_routing", "no routing id");
    const msg = decode("task", raw);
    if (!msg) return;
    const msgId = msg.header.msg_id;
    perQueue.task.submitted.inc();
    hubPending.add(msgId);
    unassigned.add(msgId);
    db.add({
      ...emptyRecord(msgId), header: msg.header, metadata: msg.metadata, content: msg.content, buffers: raw.buffers,
      submitted: msg.header.date ?? now(), client_uuid: msg.header.session, queue: "task", label: msg.metadata.label ?? null,
    });
    dbTouched();
    const payload: TaskPayload = { frames, header: msg.header, clientId, receivedAt: Date.now() };
    runTaskActions(tq.submit({ msgId, payload, metadata: msg.metadata }));
  }
  function handleTaskResult(frames: Frames, synthesized = false): void {
    if (!synthesized) {
      const n = countIn(ch.task, frames);
      if (!check("engine_task", frames, n)) return;
    }
    const raw = splitFrames(frames);
    if (raw.ids.length < 2) return bad("engine_task", "bad_routing", "task reply without client routing frame");
    let md: JsonObject;
    let parent: JsonObject;
    try {
      md = parseJsonFrame(raw.metadata, "metadata");
      parent = parseJsonFrame(raw.parent, "parent");
    } catch (err) {
      return bad("engine_task", err instanceof ProtocolError ? err.code : "bad_json", String(err));
    }
    const engine = raw.ids[0]!.toString("utf8");
    const msgId = typeof parent.msg_id === "string" ? parent.msg_id : "";
    const success = md.status === "ok";
    const depsMet = md.dependencies_met === undefined ? true : Boolean(md.dependencies_met);
    const e = byUuid.get(engine);
    const outcome = tq.result(engine, msgId, { success, dependenciesMet: depsMet });
    if (outcome.kind === "unknown") {
      runTaskActions(outcome.actions);
      return;
    }
    if (e) {
      e.tasks.delete(msgId);
      setDepth(e);
    }
    if (outcome.kind === "final") {
      const job = outcome.job;
      if (!job.payload.clientId.equals(INTERNAL_CLIENT)) {
        const fwd = [raw.ids[1]!, raw.ids[0]!, ...frames.slice(2)];
        countOut(ch.task, fwd);
        out.taskIn.send(fwd);
      }
      hubPending.delete(msgId);
      hubCompleted.add(msgId);
      if (e) e.completed.push(msgId);
      perQueue.task.latency.observe((Date.now() - job.payload.receivedAt) / 1000);
      if (success) perQueue.task.completed.inc();
      else metrics.tasksFailed.labels("task", synthesized ? "engine_died" : "error").inc();
      let header: JsonObject = {};
      let content: JsonObject = {};
      try {
        header = parseJsonFrame(raw.header, "header");
        content = parseJsonFrame(raw.content, "content");
      } catch {
        /* recorded without them */
      }
      db.update(msgId, {
        result_header: header, result_metadata: md, result_content: content, result_buffers: raw.buffers,
        started: (md.started as string | undefined) ?? null, completed: (header.date as string | undefined) ?? now(), received: now(), engine_uuid: engine,
      });
      dbTouched();
    } else {
      unassigned.add(msgId);
    }
    runTaskActions(outcome.actions);
  }

  // ---------------------------------------------------------------- broadcast scheduler
  const SUB0 = b("sub_scheduler_0");
  const onBroadcastRequest = (frames: Frames) => {
    const n = countIn(ch.broadcast, frames);
    const raw = check("broadcast", frames, n);
    if (!raw) return;
    const clientId = raw.ids[0];
    if (!clientId) return bad("broadcast", "bad_routing", "no routing id");
    const header = headerOf("broadcast", raw);
    const md = header && metadataOf("broadcast", raw);
    if (!header || !md) return;
    const targets = parseBroadcastTargets(md.targets);
    if (!targets) return bad("broadcast", "bad_header", "broadcast without metadata.targets");
    const orig = typeof md.original_msg_id === "string" ? md.original_msg_id : String(header.msg_id);
    const coalescing = Boolean(md.is_coalescing);
    const groups = splitTargets(targets, depth);
    perQueue.broadcast.submitted.inc();
    if (coalescing) {
      const replies = new Map<string, null>();
      for (const g of groups) for (const [uuid] of g) if (byUuid.has(uuid)) replies.set(uuid, null);
      bcastPending.set(orig, { clientId, groups, replies, last: null, receivedAt: Date.now() });
    }
    groups.forEach((group, leaf) => {
      if (!group.length) return;
      const mdFrame = encodeJson({ ...md, targets: group, original_msg_id: orig });
      for (const [uuid] of group) {
        const hFrame = encodeJson({ ...header, msg_id: broadcastMsgId(orig, uuid) });
        const fwd = session.serializeParts([b(uuid), SUB0, clientId], hFrame, raw.parent, mdFrame, raw.content, raw.buffers);
        countOut(ch.broadcast, fwd);
        out.leaves[leaf]!.send(fwd);
      }
    });
    if (coalescing) maybeFinishBroadcast(orig, bcastPending.get(orig)!);
  };
  const maybeFinishBroadcast = (orig: string, p: BroadcastPending) => {
    for (const v of p.replies.values()) if (v === null) return;
    bcastPending.delete(orig);
    if (!p.last) return; // every target died
    const md = parseJsonFrame(p.last.metadata, "metadata");
    const doneTargets: BroadcastTarget[] = [];
    const buffers: Buffer[] = [];
    for (const g of p.groups) {
      for (const t of g) {
        const r = p.replies.get(t[0]);
        if (!r) continue;
        doneTargets.push(t);
        buffers.push(...r.buffers);
      }
    }
    const frames = session.serializeParts([p.clientId], p.last.header, p.last.parent, encodeJson({ ...md, broadcast_targets: doneTargets }), p.last.content, buffers);
    countOut(ch.broadcast, frames);
    out.bcastIn.send(frames);
    perQueue.broadcast.latency.observe((Date.now() - p.receivedAt) / 1000);
    perQueue.broadcast.completed.inc();
  };
  const onBroadcastReply = (frames: Frames) => {
    const n = countIn(ch.broadcast, frames);
    const raw = check("engine_broadcast", frames, n);
    if (!raw) return;
    if (raw.ids.length < 3) return bad("engine_broadcast", "bad_routing", "broadcast reply without scheduler/client routing frames");
    const md = metadataOf("engine_broadcast", raw);
    if (!md) return;
    const orig = typeof md.original_msg_id === "string" ? md.original_msg_id : null;
    if (md.is_coalescing && orig) {
      const p = bcastPending.get(orig);
      const uuid = raw.ids[0]!.toString("utf8");
      if (!p || !p.replies.has(uuid)) return;
      p.replies.set(uuid, { raw, buffers: raw.buffers });
      p.last = raw;
      maybeFinishBroadcast(orig, p);
      return;
    }
    const fwd = frames.slice(2); // [client_id, DELIM, ...]
    countOut(ch.broadcast, fwd);
    out.bcastIn.send(fwd);
    perQueue.broadcast.completed.inc();
  };

  // ---------------------------------------------------------------- iopub
  const onIopub = (frames: Frames) => {
    const n = countIn(ch.iopub, frames);
    const raw = check("iopub", frames, n);
    if (!raw) return;
    countOut(ch.iopub, frames);
    out.iopubOut.send(frames);
    let header: JsonObject;
    let parent: JsonObject;
    try {
      header = parseHeader(raw.header);
      parent = parseJsonFrame(raw.parent, "parent");
    } catch {
      return;
    }
    const msgType = String(header.msg_type);
    if (msgType === "shutdown_reply") {
      const e = byUuid.get(String(header.session));
      if (e) unregisterEngine(e.id, "shutdown_reply");
      return;
    }
    if (msgType === "status" || typeof parent.msg_id !== "string") return;
    const msgId = parent.msg_id;
    let content: JsonObject;
    try {
      content = parseJsonFrame(raw.content, "content");
    } catch {
      return;
    }
    const rec = db.get(msgId);
    const d: Partial<TaskRecord> = {};
    if (msgType === "stream") {
      const name = content.name === "stderr" ? "stderr" : "stdout";
      d[name] = (rec ? rec[name] : "") + String(content.text ?? "");
    } else if (msgType === "error") d.error = content;
    else if (msgType === "execute_input") d.execute_input = String(content.code ?? "");
    else if (msgType === "execute_result" || msgType === "display_data") d[msgType] = content;
    else return;
    if (!rec && !hubPending.has(msgId)) return; // not one of ours (or culled)
    db.update(msgId, d);
  };

  // ---------------------------------------------------------------- loops
  const loops = [
    readLoop(reg, onRegistration, onSockErr("registration")),
    readLoop(hbPong, onPong, onSockErr("hb_pong")),
    readLoop(muxIn, onMuxRequest, onSockErr("mux")),
    readLoop(muxOut, onMuxReply, onSockErr("engine_mux")),
    readLoop(ctlIn, onControlRequest, onSockErr("control")),
    readLoop(ctlOut, onControlReply, onSockErr("engine_control")),
    readLoop(taskIn, (f) => handleTaskSubmission(f), onSockErr("task")),
    readLoop(taskOut, (f) => handleTaskResult(f), onSockErr("engine_task")),
    readLoop(bcastIn, onBroadcastRequest, onSockErr("broadcast")),
    ...leaves.map((l) => readLoop(l, onBroadcastReply, onSockErr("engine_broadcast"))),
    readLoop(iopubIn, onIopub, onSockErr("engine_iopub")),
  ];

  log.info("controller started", { registration: portsOut.registration, ip: config.ip, location, taskScheme: config.taskScheme });

  const handle: ControllerHandle = {
    clientConnection,
    engineConnection,
    engines: () => [...engines.values()].sort((x, y) => x.id - y.id).map(summary),
    on: (event: string, listener: (...args: never[]) => void) => {
      events.on(event, listener as (...args: unknown[]) => void);
    },
    badMessageCounts: () => ({ ...badCounts }),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      clearInterval(hbTimer);
      clearInterval(fastPingTimer);
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const inc of incoming.values()) clearTimeout(inc.timer);
      for (const o of [out.reg, out.notif, out.muxIn, out.muxOut, out.ctlIn, out.ctlOut, out.taskIn, out.taskOut, out.bcastIn, ...out.leaves, out.iopubOut, out.hbPing]) o.close();
      for (const s of all) s.close();
      await Promise.allSettled(loops);
      log.info("controller stopped");
    },
  };
  return handle;
}
