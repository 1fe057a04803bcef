/**
 * The ipyparallel-compatible controller: hub (registration, queries, notifications), heartbeat,
 * mux/control relays, task scheduler, broadcast scheduler and iopub relay in one process over
 * ZeroMQ. Decisions live in ./core (pure); each part's I/O lives in its own module (hub.ts,
 * heart.ts, relays.ts, task-scheduler.ts, broadcast-scheduler.ts, engines.ts, bad-messages.ts,
 * sockets.ts). This module wires them: one reader loop and one writer (Outbox) per socket.
 * Relayed messages keep their frames; only routing frames change, and only messages the
 * controller builds or alters are (re)signed.
 */
import { EventEmitter } from "node:events";
import { hostname } from "node:os";
import type { Registry } from "prom-client";
import type { Logger } from "../util/log.ts";
import { Session, isoDate } from "../protocol/index.ts";
import { HeartMonitor } from "./core/heartbeat.ts";
import { leafCount } from "./core/broadcast.ts";
import { createControllerMetrics } from "../metrics/controller.ts";
import { readLoop, type Frames } from "./socket-io.ts";
import { connectionInfo, type ClientConnectionInfo, type EngineConnectionInfo } from "./connection-files.ts";
import { DEFAULT_MAX_MESSAGE_BYTES, validateConfig, type ControllerConfig } from "./config.ts";
import type { ControllerContext } from "./context.ts";
import { allSockets, bindSockets, isConnectNotice, openOutlets, type EngineOutlet } from "./sockets.ts";
import { queueCounters, trafficCounters } from "./traffic.ts";
import { BadMessages } from "./bad-messages.ts";
import { HubRecords } from "./records.ts";
import { Timers } from "./timers.ts";
import { EngineRegistry, type EngineSummary } from "./engines.ts";
import { TaskScheduler } from "./task-scheduler.ts";
import { BroadcastScheduler } from "./broadcast-scheduler.ts";
import { Heart } from "./heart.ts";
import { Relays } from "./relays.ts";
import { Hub } from "./hub.ts";
import { SqliteRecordStore } from "./sqlite-store.ts";
import { EngineStateWriter, readEngineState, type EngineState } from "./engine-state.ts";
import { DaskSchedulerProcess } from "./dask.ts";
import { nearLimitAdvice, startupAdvice, type OpenFilesLimit } from "./core/open-files.ts";
import { readOpenFilesLimit } from "../util/open-files.ts";
import { LateSubscribers } from "./core/late-subscribers.ts";
import { notify } from "./context.ts";

export type { ClientConnectionInfo, EngineConnectionInfo } from "./connection-files.ts";
export { ConfigError, DEFAULT_MAX_MESSAGE_BYTES, validateConfig, type ChannelName, type ControllerConfig, type ControllerPorts } from "./config.ts";
export type { EngineSummary } from "./engines.ts";

export type ControllerEvent = "engine-registered" | "engine-unregistered";

export interface ControllerHandle {
  readonly clientConnection: ClientConnectionInfo;
  readonly engineConnection: EngineConnectionInfo;
  engines(): EngineSummary[];
  /** The id the next new engine gets (upstream's next_id, as in the engine state file). */
  nextEngineId(): number;
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
  /** The open-files limit to judge (default: this process's; null = unknown, nothing said). */
  openFilesLimit?: OpenFilesLimit | null;
}

/**
 * The state --restore takes back: the profile's file, else (a new profile volume, as in a replaced
 * pod) the fallback copy. The profile's is preferred: it is the one this controller kept current.
 */
async function readRestoreState(s: NonNullable<ControllerConfig["engineState"]>): Promise<(EngineState & { path: string }) | null> {
  const own = await readEngineState(s.path, s.clusterId);
  if (own) return { ...own, path: s.path };
  if (s.fallback === undefined) return null;
  const copy = await readEngineState(s.fallback, s.clusterId);
  return copy ? { ...copy, path: s.fallback } : null;
}

export async function startController(config: ControllerConfig, deps: ControllerDeps): Promise<ControllerHandle> {
  validateConfig(config);
  const log = deps.logger.with({ component: "controller" });
  const clock = deps.clock ?? (() => new Date());
  const metrics = createControllerMetrics(deps.registry);
  const session = new Session({ key: config.key, username: "ipp-controller", clock });
  const startedAt = Date.now();
  const events = new EventEmitter();

  // the engines to take back (--restore) and the record store first: either failing stops the start before any port is bound
  const restored = config.engineState?.restore ? await readRestoreState(config.engineState) : null;
  const store = config.sqlite
    ? SqliteRecordStore.open({ path: config.sqlite.path, ...(config.sqlite.table ? { table: config.sqlite.table } : {}), log })
    : undefined;
  if (store) log.info("task records in SQLite", { path: store.path, table: store.table, records: store.size });
  let bound: Awaited<ReturnType<typeof bindSockets>>;
  try {
    bound = await bindSockets(config, leafCount(config.broadcastDepth ?? 1));
  } catch (err) {
    store?.close();
    throw err;
  }
  const { sockets, ports } = bound;
  const location = config.location ?? hostname();
  const { client: clientConnection, engine: engineConnection } = connectionInfo(config, location, ports);

  const onSockErr = (channel: string) => (err: unknown) => log.error("socket error", err, { channel });
  const traffic = trafficCounters(metrics);
  const dropCounter = (channel: string) => {
    const hwm = metrics.messagesDropped.labels(channel, "hwm");
    const unroutable = metrics.messagesDropped.labels(channel, "unroutable");
    return (reason: "hwm" | "unroutable") => (reason === "hwm" ? hwm : unroutable).inc();
  };
  const outlets = openOutlets(sockets, traffic, onSockErr, dropCounter, (channel) => {
    const held = metrics.messagesHeld.labels(channel);
    return () => held.inc();
  });
  const ctx: ControllerContext = {
    config, log, clock, startedAt, session, metrics, traffic,
    queues: queueCounters(metrics),
    out: outlets.outlets,
    bad: new BadMessages({
      metrics, log, session, maxMessageBytes: config.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, logIntervalMs: config.badMessageLogIntervalMs ?? 60_000,
      ...(config.signatureHistory !== undefined ? { signatureHistory: config.signatureHistory } : {}),
    }),
    records: new HubRecords(metrics, {
      recordLimit: config.dbRecordLimit, sizeLimitBytes: config.dbSizeLimitBytes ?? 64 * 1024 * 1024,
      ...(config.taskHistory !== undefined ? { completedHistory: config.taskHistory } : {}),
    }, store),
    timers: new Timers(),
    now: () => isoDate(clock()),
  };

  // a closed heart connection: dead at the first beat half a period on, unless it answers again
  const monitor = new HeartMonitor({ maxMisses: config.maxHeartbeatMisses ?? 10, disconnectGraceMs: config.heartbeatPeriodMs / 2 });
  // the registry and the schedulers refer to each other: the schedulers are created just below
  const engines: EngineRegistry = new EngineRegistry(ctx, monitor, events, {
    engineAdded: (uuid) => tasks.addEngine(uuid),
    engineRemoved: (e) => {
      const failStranded = tasks.removeEngine(e);
      broadcasts.engineRemoved(e.uuid);
      return failStranded;
    },
  });
  const tasks = new TaskScheduler(ctx, engines);
  const broadcasts = new BroadcastScheduler(ctx, engines);
  const heart = new Heart(ctx, monitor, engines);
  const relays = new Relays(ctx, engines);
  const { key: _k, location: _l, ...engineInfo } = engineConnection;
  const dask = new DaskSchedulerProcess(log);
  // clients that subscribe to notifications after engines changed (core/late-subscribers.ts)
  const late = new LateSubscribers();
  events.on("engine-registered", (e: EngineSummary) => late.engineChanged(e.id, e.uuid, Date.now()));
  events.on("engine-unregistered", (e: EngineSummary) => late.engineChanged(e.id, e.uuid, Date.now()));
  const onSubscription = (frames: Buffer[]) => {
    if (frames.length !== 1 || frames[0]![0] !== 1) return; // an unsubscription or not a subscription
    for (const { id, uuid } of late.subscribed(Date.now())) {
      const e = engines.byId.get(id);
      if (e) notify(ctx, "registration_notification", { id, uuid: e.uuid });
      else notify(ctx, "unregistration_notification", { id, uuid });
    }
  };
  const hub = new Hub(ctx, {
    engines, events, engineInfo, dask,
    connectionReplied: () => late.connectionReplied(Date.now()),
    pingSoon: () => heart.pingSoon(),
    suspectEngine: (engineId) => heart.suspect(engineId),
    submitTask: tasks.onSubmission,
    stop: () => void handle.stop(),
  });
  let stateWriter: EngineStateWriter | undefined;
  if (config.engineState) {
    const { path, clusterId } = config.engineState;
    for (const e of restored?.engines ?? []) engines.restore(e.id, e.uuid, restored!.nextId);
    if (restored) log.info("restored engines from the engine state file", { path: restored.path, engines: restored.engines.length, nextId: engines.nextId });
    const writer = new EngineStateWriter(path, () => ({
      engines: [...engines.byId.values()].map((e) => ({ id: e.id, uuid: e.uuid })), nextId: engines.nextId, clusterId,
    }), (err) => log.error("could not write the engine state file", err, { path }));
    events.on("engine-registered", () => writer.changed());
    events.on("engine-unregistered", () => writer.changed());
    // restored from elsewhere (the fallback copy): the profile's file holds them from now on
    if (restored && restored.path !== path) writer.changed();
    stateWriter = writer;
  }
  heart.start();

  // say what the open-files limit holds, and warn before engines are refused (core/open-files.ts)
  const fdLimit = deps.openFilesLimit === undefined ? readOpenFilesLimit() : deps.openFilesLimit;
  if (fdLimit) {
    const a = startupAdvice(fdLimit, config.expectedEngines);
    log[a.level](a.message, a.fields);
    let count = engines.byId.size;
    const recount = () => {
      const now = engines.byId.size;
      const near = nearLimitAdvice(fdLimit, count, now);
      if (near) log.warn(near.message, near.fields);
      count = now;
    };
    events.on("engine-registered", recount);
    events.on("engine-unregistered", recount);
  }

  // the engine-facing ROUTERs report each engine connection (ZMQ_ROUTER_NOTIFY): what was held for
  // that engine goes out; when an engine leaves, what was held for it goes with it
  const out = outlets.outlets;
  const engineOutlets = [out.muxOut, out.ctlOut, out.taskOut, ...out.leaves];
  const noticesTo = (outlet: EngineOutlet, handler: (frames: Frames) => void) => (frames: Frames) => {
    if (isConnectNotice(frames)) outlet.connected(frames[0]!);
    else handler(frames);
  };
  events.on("engine-unregistered", (e: EngineSummary) => {
    const ident = Buffer.from(e.uuid, "utf8");
    for (const o of engineOutlets) o.forget(ident);
  });

  const loops = [
    readLoop(sockets.reg, hub.onRegistration, onSockErr("registration")),
    readLoop(sockets.notif, onSubscription, onSockErr("notification")),
    readLoop(sockets.hbPong, heart.onPong, onSockErr("hb_pong")),
    readLoop(sockets.muxIn, relays.onMuxRequest, onSockErr("mux")),
    readLoop(sockets.muxOut, noticesTo(out.muxOut, relays.onMuxReply), onSockErr("engine_mux")),
    readLoop(sockets.ctlIn, relays.onControlRequest, onSockErr("control")),
    readLoop(sockets.ctlOut, noticesTo(out.ctlOut, relays.onControlReply), onSockErr("engine_control")),
    readLoop(sockets.taskIn, tasks.onSubmission, onSockErr("task")),
    readLoop(sockets.taskOut, noticesTo(out.taskOut, (f) => tasks.onResult(f)), onSockErr("engine_task")),
    readLoop(sockets.bcastIn, broadcasts.onRequest, onSockErr("broadcast")),
    ...sockets.leaves.map((l, i) => readLoop(l, noticesTo(out.leaves[i]!, broadcasts.onReply), onSockErr("engine_broadcast"))),
    readLoop(sockets.iopubIn, relays.onIopub, onSockErr("engine_iopub")),
  ];

  log.info("controller started", { registration: ports.registration, ip: config.ip, location, taskScheme: config.taskScheme });

  const handle: ControllerHandle = {
    clientConnection,
    engineConnection,
    engines: () => engines.summaries(),
    nextEngineId: () => engines.nextId,
    on: (event: string, listener: (...args: never[]) => void) => {
      events.on(event, listener as (...args: unknown[]) => void);
    },
    badMessageCounts: () => ctx.bad.snapshot(),
    stop: async () => {
      if (ctx.timers.stopped) return;
      ctx.timers.stop();
      heart.stop();
      outlets.close();
      for (const s of allSockets(sockets)) s.close();
      await Promise.allSettled(loops);
      dask.stop();
      store?.close();
      await stateWriter?.stop();
      log.info("controller stopped");
    },
  };
  return handle;
}
