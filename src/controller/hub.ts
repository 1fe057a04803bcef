/**
 * The hub: engine registration and the client queries on the registration socket, dispatched on
 * msg_type. A handler that throws answers the sender with a hub_error; the loop lives on.
 */
import type { EventEmitter } from "node:events";
import { ProtocolError, decodeRaw, encodeJson, type JsonObject, type Message } from "../protocol/index.ts";
import { QueryError, project, type TaskRecord } from "./core/hub-db.ts";
import { errorContent, pyRepr, type ErrorContent } from "./core/errors.ts";
import { notify, type ControllerContext } from "./context.ts";
import type { EngineRegistry } from "./engines.ts";
import type { Frames } from "./socket-io.ts";
import { INTERNAL_CLIENT } from "./task-scheduler.ts";
import { countIn } from "./traffic.ts";
import type { DaskSchedulerProcess } from "./dask.ts";

type QueryHandler = (clientId: Buffer, msg: Message) => void;

export interface HubDeps {
  engines: EngineRegistry;
  /** Repeat the heartbeat ping soon, so a new engine's registration completes quickly. */
  pingSoon(): void;
  /** Check an engine's heart now and unregister it only if the heart is gone too. */
  suspectEngine(engineId: number): void;
  /** Where resubmitted tasks go: the task scheduler's submission handler. */
  submitTask(frames: Frames): void;
  events: EventEmitter;
  /** Stop the controller (after a client's shutdown_request). */
  stop(): void;
  /** A connection_reply went out: its client subscribes to notifications next (core/late-subscribers.ts). */
  connectionReplied?(): void;
  /** The engine connection info sent in registration replies. */
  engineInfo: JsonObject;
  /** The dask.distributed scheduler of become_dask / stop_distributed. */
  dask: DaskSchedulerProcess;
}

/** An error that becomes a hub_error reply with this Python exception name. */
function pyError(ename: string, message: string): Error {
  return Object.assign(new Error(message), { ename });
}

/** A query's list of msg_ids, as upstream reads it (a missing key is a KeyError, a non-list a TypeError). */
function msgIdList(content: JsonObject, key = "msg_ids"): string[] {
  const v = content[key];
  if (v === undefined) throw pyError("KeyError", pyRepr(key));
  if (!Array.isArray(v)) throw pyError("TypeError", `${key} must be a list of msg_ids, not ${v === null ? "None" : typeof v}`);
  return v.map(String);
}

function wrapError(err: unknown): ErrorContent {
  const e = err as { ename?: string; message?: string };
  return errorContent(e.ename ?? (err instanceof QueryError ? "ValueError" : "Exception"), e.message ?? String(err));
}

/** A record as result_request returns it: the reply content and its result buffers. */
function recordReply(rec: TaskRecord): [JsonObject, Buffer[]] {
  const io = { execute_input: rec.execute_input, execute_result: rec.execute_result, error: rec.error, stdout: rec.stdout, stderr: rec.stderr };
  return [{
    header: rec.header, metadata: rec.metadata, result_metadata: rec.result_metadata, result_header: rec.result_header,
    result_content: rec.result_content, received: rec.received, io,
  }, rec.result_buffers ? [...rec.result_buffers] : []];
}

export class Hub {
  private readonly engines: EngineRegistry;

  /** The registration socket identity each engine id registered from (restored engines have none). */
  private readonly registrars = new Map<number, Buffer>();

  /** Engine ids another socket said are gone, with when; their hearts are being checked. */
  private readonly reportedGone = new Map<number, number>();

  constructor(private readonly ctx: ControllerContext, private readonly deps: HubDeps) {
    this.engines = deps.engines;
    deps.events.on("engine-unregistered", (e: { id: number }) => {
      this.registrars.delete(e.id);
      this.reportedGone.delete(e.id);
    });
  }

  /** The dispatch table, keyed by msg_type; anything else gets a hub_error. */
  private readonly queries: Record<string, QueryHandler> = {
    registration_request: (id, msg) => this.register(id, msg),
    unregistration_request: (id, msg) => {
      const eid = msg.content.id;
      if (typeof eid !== "number") return;
      // The socket that registered an id unregisters it at once. Any other socket is believed
      // only if the engine's heart agrees: an engine's nanny reports its engine's exit from a
      // socket of its own (the heart is then gone too), but engines of a world that was attached
      // to a replaced controller reach its successor through the same Service address and, as
      // they shut down, ask to unregister their old ids: the live new engines holding those ids.
      const owner = this.registrars.get(eid);
      if (owner && !owner.equals(id)) {
        this.reportedGone.set(eid, Date.now());
        return this.deps.suspectEngine(eid);
      }
      this.engines.unregister(eid, "unregistration_request");
    },
    connection_request: (id, msg) => {
      const eng: Record<string, string> = {};
      for (const [eid, e] of this.engines.byId) eng[String(eid)] = e.uuid;
      this.reply(id, "connection_reply", { status: "ok", engines: eng }, msg.header);
      this.deps.connectionReplied?.();
    },
    queue_request: (id, msg) => {
      const targets = this.targetsOrError(id, msg);
      if (!targets) return;
      const verbose = Boolean(msg.content.verbose);
      const content: JsonObject = { status: "ok" };
      for (const t of targets) {
        const e = this.engines.byId.get(t)!;
        content[String(t)] = verbose
          // verbose: the completed ids still remembered (the most recent ones); the count is exact
          ? { queue: [...e.queue.keys()], completed: this.ctx.records.completedOn(e.uuid), tasks: [...e.tasks] }
          : { queue: e.queue.size, completed: e.completedCount, tasks: e.tasks.size };
      }
      content.unassigned = verbose ? [...this.ctx.records.unassigned] : this.ctx.records.unassigned.size;
      this.reply(id, "queue_reply", content, msg.header);
    },
    load_request: (id, msg) => {
      const targets = this.targetsOrError(id, msg);
      if (!targets) return;
      const content: JsonObject = { status: "ok" };
      for (const t of targets) {
        const e = this.engines.byId.get(t)!;
        content[String(t)] = e.queue.size + e.tasks.size;
      }
      this.reply(id, "load_reply", content, msg.header);
    },
    result_request: (id, msg) => {
      const ids = [...new Set(msgIdList(msg.content))].sort();
      const statusOnly = Boolean(msg.content.status_only);
      const pending: string[] = [];
      const completed: string[] = [];
      let content: JsonObject = { status: "ok", pending, completed };
      const buffers: Buffer[] = [];
      for (const m of ids) {
        const rec = this.ctx.records.db.get(m);
        if (this.ctx.records.pending.has(m)) pending.push(m);
        else if (this.ctx.records.completed.has(m) || rec?.completed) {
          completed.push(m);
          if (!statusOnly) {
            // completed, but its record was culled: upstream's lookup raises KeyError(msg_id),
            // which its dispatcher answers with a hub_error
            if (!rec) throw pyError("KeyError", pyRepr(m));
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
      this.reply(id, "result_reply", content, msg.header, content.status === "ok" ? buffers : []);
    },
    history_request: (id, msg) => {
      this.reply(id, "history_reply", { status: "ok", history: this.ctx.records.db.history() }, msg.header);
    },
    db_request: (id, msg) => {
      const keys = Array.isArray(msg.content.keys) ? msg.content.keys.map(String) : null;
      let content: JsonObject;
      const buffers: Buffer[] = [];
      try {
        const recs = this.ctx.records.db.find((msg.content.query ?? {}) as JsonObject, keys);
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
        content = wrapError(err);
        buffers.length = 0;
      }
      this.reply(id, "db_reply", content, msg.header, buffers);
    },
    purge_request: (id, msg) => {
      const ids = msg.content.msg_ids ?? [];
      let content: JsonObject = { status: "ok" };
      try {
        if (ids === "all") {
          this.ctx.records.db.dropMatching({ completed: { $ne: null } });
        } else {
          const list = msgIdList({ msg_ids: ids });
          const pend = list.filter((m) => this.ctx.records.pending.has(m));
          if (pend.length) throw Object.assign(new Error(`msg pending: ${pyRepr(pend[0]!)}`), { ename: "IndexError" });
          this.ctx.records.db.dropMatching({ msg_id: { $in: list } });
          const eids = Array.isArray(msg.content.engine_ids) ? msg.content.engine_ids : [];
          for (const eid of eids) {
            const e = typeof eid === "number" ? this.engines.byId.get(eid) : undefined;
            if (!e) throw Object.assign(new Error(`No such engine: ${String(eid)}`), { ename: "IndexError" });
            this.ctx.records.db.dropMatching({ engine_uuid: e.uuid, completed: { $ne: null } });
          }
        }
      } catch (err) {
        content = wrapError(err);
      }
      this.ctx.records.touched();
      this.reply(id, "purge_reply", content, msg.header);
    },
    resubmit_request: (id, msg) => {
      const ids = msgIdList(msg.content);
      const recs = ids.map((m) => this.ctx.records.db.get(m));
      const missing = ids.filter((_m, i) => !recs[i] || !recs[i]!.header);
      if (missing.length) {
        // upstream: KeyError(f"No such msg(s): {missing!r}"), a Python list repr
        this.reply(id, "resubmit_reply", errorContent("KeyError", `No such msg(s): [${missing.map(pyRepr).join(", ")}]`), msg.header);
        return;
      }
      const resubmitted: Record<string, string> = {};
      for (const rec of recs as TaskRecord[]) {
        const fresh = this.ctx.session.header(String(rec.header!.msg_type));
        const header = { ...rec.header!, msg_id: fresh.msg_id, date: fresh.date };
        const frames = this.ctx.session.serializeParts(
          [INTERNAL_CLIENT], encodeJson(header), encodeJson(rec.header), encodeJson({}), encodeJson(rec.content ?? {}), rec.buffers ?? [],
        );
        resubmitted[rec.msg_id] = fresh.msg_id;
        this.deps.submitTask(frames);
        this.ctx.records.db.update(rec.msg_id, { resubmitted: fresh.msg_id });
      }
      this.reply(id, "resubmit_reply", { status: "ok", resubmitted }, msg.header);
    },
    become_dask_request: (id, msg) => {
      const args = msg.content.scheduler_args;
      const schedulerArgs = args !== null && typeof args === "object" && !Array.isArray(args) ? args as Record<string, unknown> : {};
      // upstream awaits the scheduler's start inside the handler; the reply (or a hub_error) comes when it is up
      this.deps.dask.start(schedulerArgs).then(
        (s) => this.reply(id, "become_dask_reply", { status: "ok", ip: s.ip, address: s.address, port: s.port }, msg.header),
        (err) => this.reply(id, "hub_error", wrapError(err), msg.header),
      );
    },
    stop_distributed_request: (id, msg) => {
      this.deps.dask.stop();
      this.reply(id, "stop_distributed_reply", { status: "ok" }, msg.header);
    },
    shutdown_request: (id, msg) => {
      this.reply(id, "shutdown_reply", { status: "ok" }, msg.header);
      notify(this.ctx, "shutdown_notification", { status: "ok" }, msg.header);
      this.ctx.log.info("shutdown requested by a client");
      this.deps.events.emit("shutdown-requested");
      const delay = this.ctx.config.shutdownDelayMs ?? 1000;
      if (delay >= 0) this.ctx.timers.later(delay, this.deps.stop);
    },
  };

  readonly onRegistration = (frames: Frames): void => {
    const n = countIn(this.ctx.traffic.registration, frames);
    const raw = this.ctx.bad.check("registration", frames, n);
    if (!raw) return;
    const clientId = raw.ids[0];
    if (!clientId) return this.ctx.bad.drop("registration", "bad_routing", "no routing id");
    let msg: Message;
    try {
      msg = decodeRaw(raw);
    } catch (err) {
      // signed by a key holder but not a message we can read: counted, and answered as upstream
      // answers a query it cannot deserialize (unsigned messages never get an answer)
      const reason = err instanceof ProtocolError ? err.code : "bad_json";
      this.ctx.bad.drop("registration", reason, String(err));
      this.reply(clientId, "hub_error", errorContent("ValueError", `malformed query: ${(err as Error).message}`), null);
      return;
    }
    const handler = this.queries[msg.header.msg_type];
    if (!handler) {
      this.ctx.bad.drop("registration", "unknown_msg_type", msg.header.msg_type);
      this.reply(clientId, "hub_error", errorContent("KeyError", `"Bad Message Type: ${pyRepr(msg.header.msg_type)}"`), msg.header);
      return;
    }
    try {
      handler(clientId, msg);
    } catch (err) {
      this.ctx.log.error("error handling query", err, { msgType: msg.header.msg_type });
      this.reply(clientId, "hub_error", wrapError(err), msg.header);
    }
  };

  /** Engine ids from a query's targets (ids or uuids; none = all), or an IndexError. */
  private validateTargets(targets: unknown): number[] {
    if (targets === null || targets === undefined) return [...this.engines.byId.keys()].sort((x, y) => x - y);
    const list = Array.isArray(targets) ? targets : [targets];
    const ids = list.map((t) => (typeof t === "string" ? this.engines.byUuid.get(t)?.id ?? t : t));
    const badT = ids.filter((t) => typeof t !== "number" || !this.engines.byId.has(t));
    if (badT.length) throw Object.assign(new Error(`No Such Engine: ${JSON.stringify(badT)}`), { ename: "IndexError" });
    if (!ids.length) throw Object.assign(new Error("No Engines Registered"), { ename: "IndexError" });
    return ids as number[];
  }

  /** The query's target engine ids; on a bad target the sender gets a hub_error and null is returned. */
  private targetsOrError(clientId: Buffer, msg: Message): number[] | null {
    try {
      return this.validateTargets(msg.content.targets);
    } catch (err) {
      this.reply(clientId, "hub_error", wrapError(err), msg.header);
      return null;
    }
  }

  private reply(clientId: Buffer, msgType: string, content: JsonObject, parent: JsonObject | null, buffers: Buffer[] = []): void {
    this.ctx.out.reg.send(this.ctx.session.build(msgType, content, { ids: [clientId], parent: parent ?? {}, buffers }));
  }

  private register(ident: Buffer, msg: Message): void {
    const { metrics, log } = this.ctx;
    const uuid = msg.content.uuid;
    if (typeof uuid !== "string") {
      this.reply(ident, "registration_reply", errorContent("KeyError", "'uuid'"), null);
      metrics.registrations.labels("error").inc();
      return;
    }
    // A new engine asking for an id that was reported gone within the last heartbeat period (its
    // nanny's report, typically: ipp.Cluster's restart_engines) takes it, as upstream, which
    // unregisters on that report at once; a live engine's heart would have answered by then.
    const requested = msg.content.id;
    const reportedAt = typeof requested === "number" ? this.reportedGone.get(requested) : undefined;
    if (reportedAt !== undefined && Date.now() - reportedAt < this.ctx.config.heartbeatPeriodMs && this.engines.byId.has(requested as number)) {
      this.engines.unregister(requested as number, "unregistration_request");
    }
    const eid = this.engines.newEngineId(msg.content.id);
    if (this.engines.uuidInUse(uuid)) {
      this.reply(ident, "registration_reply", errorContent("KeyError", `uuid ${pyRepr(uuid)} in use`), null);
      metrics.registrations.labels("error").inc();
      log.error("registration uuid in use", undefined, { uuid });
      return;
    }
    // upstream sends registration_reply without a parent header
    const period = this.ctx.config.heartbeatPeriodMs;
    this.reply(ident, "registration_reply", { id: eid, status: "ok", hb_period: period, connection_info: this.deps.engineInfo }, null);
    this.engines.accept(uuid, eid, this.ctx.config.registrationTimeoutMs ?? Math.max(30_000, 10 * period));
    this.registrars.set(eid, Buffer.from(ident));
    this.deps.pingSoon();
    log.info("accepting registration", { id: eid, uuid });
  }
}
