/**
 * The load-balanced task queue's I/O: submissions from clients on `task`, results from engines on
 * `engine_task`, over the pure scheduler in core/task-queue.ts (which decides where each task goes,
 * when it times out and when it fails). Frames are forwarded as received, with the engine's routing
 * id in front; only failures the controller makes up are built and signed here.
 */
import { ProtocolError, parseJsonFrame, splitFrames, type JsonObject } from "../protocol/index.ts";
import { emptyRecord } from "./core/hub-db.ts";
import { errorContent, pyRepr } from "./core/errors.ts";
import { TaskQueue, type TaskAction, type TaskJob } from "./core/task-queue.ts";
import type { ControllerContext } from "./context.ts";
import type { EngineRegistry, EngineState } from "./engines.ts";
import type { Frames } from "./socket-io.ts";
import { countIn } from "./traffic.ts";

/** The routing id of tasks the hub resubmits itself: their replies are recorded, not relayed. */
export const INTERNAL_CLIENT = Buffer.from("ipp-controller-resubmit");

interface TaskPayload {
  frames: Frames; // [client_id, DELIM, ...]
  header: JsonObject;
  clientId: Buffer;
  receivedAt: number;
}

export class TaskScheduler {
  private readonly queue: TaskQueue<TaskPayload>;
  /**
   * Timeout timers of waiting tasks, cancelled as soon as the task leaves the queue (sent or
   * failed): a timer's closure would otherwise keep the task alive until it fires, however long
   * ago the task finished.
   */
  private readonly timeouts = new Map<string, NodeJS.Timeout>();

  constructor(private readonly ctx: ControllerContext, private readonly engines: EngineRegistry) {
    this.queue = new TaskQueue<TaskPayload>({
      scheme: ctx.config.taskScheme, hwm: ctx.config.taskHwm ?? 1,
      ...(ctx.config.taskHistory !== undefined ? { doneHistory: ctx.config.taskHistory } : {}),
    });
  }

  /** Timeout timers currently armed (one per waiting task with a timeout). */
  get armedTimeouts(): number {
    return this.timeouts.size;
  }

  addEngine(uuid: string): void {
    this.run(this.queue.addEngine(uuid));
  }

  /** Take the engine out of load balancing; returns what fails its stranded tasks after the grace period. */
  removeEngine(e: EngineState): () => void {
    const stranded = this.queue.removeEngine(e.uuid);
    return () => {
      for (const job of stranded) {
        const content = errorContent("EngineError", `Engine ${pyRepr(e.uuid)} died while running task ${pyRepr(job.msgId)}`);
        const md = { status: "error", engine: e.uuid, date: this.ctx.now() };
        const frames = this.ctx.session.build("apply_reply", content, { ids: [e.ident, job.payload.clientId], parent: job.payload.header, metadata: md });
        this.onResult(frames, true);
      }
      this.queue.forgetEngine(e.uuid);
    };
  }

  /** A task from a client (or resubmitted by the hub). */
  readonly onSubmission = (frames: Frames): void => {
    const { bad, records } = this.ctx;
    const n = countIn(this.ctx.traffic.task, frames);
    const raw = bad.check("task", frames, n);
    if (!raw) return;
    const clientId = raw.ids[0];
    if (!clientId) return bad.drop("task", "bad_routing", "no routing id");
    const msg = bad.decode("task", raw);
    if (!msg) return;
    const msgId = msg.header.msg_id;
    this.ctx.queues.task.submitted.inc();
    records.pending.add(msgId);
    records.unassigned.add(msgId);
    records.db.add({
      ...emptyRecord(msgId), header: msg.header, metadata: msg.metadata, content: msg.content, buffers: raw.buffers,
      submitted: msg.header.date ?? this.ctx.now(), client_uuid: msg.header.session, queue: "task", label: msg.metadata.label ?? null,
    });
    records.touched();
    const payload: TaskPayload = { frames, header: msg.header, clientId, receivedAt: Date.now() };
    this.run(this.queue.submit({ msgId, payload, metadata: msg.metadata }));
  };

  /** A result from an engine, or (synthesized) the failure of a task whose engine died. */
  readonly onResult = (frames: Frames, synthesized = false): void => {
    const { bad, records } = this.ctx;
    if (!synthesized) {
      const n = countIn(this.ctx.traffic.task, frames);
      if (!bad.check("engine_task", frames, n)) return;
    }
    const raw = splitFrames(frames);
    if (raw.ids.length < 2) return bad.drop("engine_task", "bad_routing", "task reply without client routing frame");
    let md: JsonObject;
    let parent: JsonObject;
    try {
      md = parseJsonFrame(raw.metadata, "metadata");
      parent = parseJsonFrame(raw.parent, "parent");
    } catch (err) {
      return bad.drop("engine_task", err instanceof ProtocolError ? err.code : "bad_json", String(err));
    }
    const engine = raw.ids[0]!.toString("utf8");
    const msgId = typeof parent.msg_id === "string" ? parent.msg_id : "";
    const success = md.status === "ok";
    const depsMet = md.dependencies_met === undefined ? true : Boolean(md.dependencies_met);
    const e = this.engines.byUuid.get(engine);
    const outcome = this.queue.result(engine, msgId, { success, dependenciesMet: depsMet });
    if (outcome.kind === "unknown") {
      this.run(outcome.actions);
      return;
    }
    if (e) {
      e.tasks.delete(msgId);
      this.engines.setDepth(e);
    }
    if (outcome.kind === "final") {
      const job = outcome.job;
      if (!job.payload.clientId.equals(INTERNAL_CLIENT)) {
        this.ctx.out.taskIn.send([raw.ids[1]!, raw.ids[0]!, ...frames.slice(2)]);
      }
      // the registry's string for the engine, not this message's copy: the history keeps it
      records.complete(msgId, e?.uuid ?? engine);
      if (e) e.completedCount++;
      this.ctx.queues.task.latency.observe((Date.now() - job.payload.receivedAt) / 1000);
      if (success) this.ctx.queues.task.completed.inc();
      else this.ctx.metrics.tasksFailed.labels("task", synthesized ? "engine_died" : "error").inc();
      let header: JsonObject = {};
      let content: JsonObject = {};
      try {
        header = parseJsonFrame(raw.header, "header");
        content = parseJsonFrame(raw.content, "content");
      } catch {
        /* recorded without them */
      }
      records.db.update(msgId, {
        result_header: header, result_metadata: md, result_content: content, result_buffers: raw.buffers,
        started: (md.started as string | undefined) ?? null, completed: (header.date as string | undefined) ?? this.ctx.now(), received: this.ctx.now(), engine_uuid: engine,
      });
      records.touched();
    } else {
      records.unassigned.add(msgId);
    }
    this.run(outcome.actions);
  };

  private run(actions: TaskAction<TaskPayload>[]): void {
    for (const a of actions) {
      if (a.kind !== "timer") this.disarm(a.job.msgId);
      if (a.kind === "send") {
        const e = this.engines.byUuid.get(a.engine);
        this.ctx.out.taskOut.send([Buffer.from(a.engine, "utf8"), ...a.job.payload.frames]);
        this.ctx.records.unassigned.delete(a.job.msgId);
        if (e) {
          e.tasks.add(a.job.msgId);
          this.engines.setDepth(e);
        }
        this.ctx.records.db.update(a.job.msgId, { engine_uuid: a.engine });
      } else if (a.kind === "fail") {
        this.fail(a.job, a.ename, a.detail);
      } else {
        this.arm(a.job.msgId, a.token, a.ms);
      }
    }
  }

  private arm(msgId: string, token: number, ms: number): void {
    this.disarm(msgId);
    // the closure holds the id and token only, never the job and its frames
    this.timeouts.set(msgId, this.ctx.timers.later(ms, () => {
      this.timeouts.delete(msgId);
      this.run(this.queue.timeout(msgId, token));
    }));
  }

  private disarm(msgId: string): void {
    const t = this.timeouts.get(msgId);
    if (t === undefined) return;
    this.ctx.timers.cancel(t);
    this.timeouts.delete(msgId);
  }

  /** Answer a task the scheduler gave up on (timeout, bad or impossible dependency). */
  private fail(job: TaskJob<TaskPayload>, ename: string, detail?: string): void {
    const { records } = this.ctx;
    const evalue = detail ?? (ename === "TaskTimeout" ? `Task ${job.msgId} timed out` : ename === "InvalidDependency" ? "invalid dependency" : "impossible dependency");
    const content = errorContent(ename, evalue);
    const frames = this.ctx.session.build("apply_reply", content, { ids: [job.payload.clientId], parent: job.payload.header });
    records.unassigned.delete(job.msgId);
    records.complete(job.msgId, null);
    const raw = splitFrames(frames);
    records.db.update(job.msgId, {
      result_header: parseJsonFrame(raw.header, "header"), result_metadata: {}, result_content: content, result_buffers: [],
      completed: this.ctx.now(), received: this.ctx.now(),
    });
    records.touched();
    this.ctx.metrics.tasksFailed.labels("task", ename).inc();
    if (!job.payload.clientId.equals(INTERNAL_CLIENT)) this.ctx.out.taskIn.send(frames);
  }
}
