/**
 * The direct relays: mux (client ↔ a named engine, recorded by the hub), control (relayed only)
 * and iopub (engine → clients, its output recorded against the request). Frames are forwarded as
 * received; only the two routing frames are swapped.
 */
import { parseHeader, parseJsonFrame, type JsonObject } from "../protocol/index.ts";
import { emptyRecord, type TaskRecord } from "./core/hub-db.ts";
import type { ControllerContext } from "./context.ts";
import type { EngineRegistry } from "./engines.ts";
import type { Frames } from "./socket-io.ts";
import type { Outlet } from "./sockets.ts";
import { countIn } from "./traffic.ts";

/** [a, b, ...rest] → [b, a, ...rest]: a ROUTER's incoming routing id becomes the second hop. */
function swapRouting(frames: Frames, ids: Buffer[]): Frames {
  return [ids[1]!, ids[0]!, ...frames.slice(2)];
}

export class Relays {
  constructor(private readonly ctx: ControllerContext, private readonly engines: EngineRegistry) {}

  readonly onMuxRequest = (frames: Frames): void => {
    const { bad, records } = this.ctx;
    const n = countIn(this.ctx.traffic.mux, frames);
    const raw = bad.check("mux", frames, n);
    if (!raw) return;
    if (raw.ids.length < 2) return bad.drop("mux", "bad_routing", "mux request without engine routing frame");
    const engineIdent = raw.ids[1]!;
    const e = this.engines.byUuid.get(engineIdent.toString("utf8"));
    const msg = bad.decode("mux", raw);
    if (!msg) return;
    if (!e) return bad.drop("mux", "bad_routing", "mux request for an unknown engine");
    this.ctx.out.muxOut.send(swapRouting(frames, raw.ids));
    const msgId = msg.header.msg_id;
    const rec = records.db.get(msgId) ?? emptyRecord(msgId);
    Object.assign(rec, {
      header: msg.header, metadata: msg.metadata, content: msg.content, buffers: raw.buffers, submitted: msg.header.date ?? this.ctx.now(),
      engine_uuid: e.uuid, client_uuid: msg.header.session, queue: "mux", label: msg.metadata.label ?? null,
    });
    records.db.add(rec);
    records.touched();
    records.pending.add(msgId);
    // the receive time lives with the engine's pending request, so an engine's death drops both
    e.queue.set(msgId, Date.now());
    this.engines.setDepth(e);
    this.ctx.queues.mux.submitted.inc();
  };

  readonly onMuxReply = (frames: Frames): void => {
    const { bad, records } = this.ctx;
    const n = countIn(this.ctx.traffic.mux, frames);
    const raw = bad.check("engine_mux", frames, n);
    if (!raw) return;
    if (raw.ids.length < 2) return bad.drop("engine_mux", "bad_routing", "mux reply without client routing frame");
    const engineIdent = raw.ids[0]!;
    this.ctx.out.muxIn.send(swapRouting(frames, raw.ids));
    const e = this.engines.byUuid.get(engineIdent.toString("utf8"));
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
    const t0 = e.queue.get(msgId);
    if (records.completeIfPending(msgId, e.uuid)) {
      e.queue.delete(msgId);
      e.completedCount++;
      this.engines.setDepth(e);
    }
    if (t0 !== undefined) {
      e.queue.delete(msgId);
      this.ctx.queues.mux.latency.observe((Date.now() - t0) / 1000);
    }
    if (status === "ok") this.ctx.queues.mux.completed.inc();
    else this.ctx.metrics.tasksFailed.labels("mux", String(content.ename ?? status ?? "error")).inc();
    records.db.update(msgId, {
      result_header: header, result_metadata: md, result_content: content, result_buffers: raw.buffers,
      started: (md.started as string | undefined) ?? null, completed: (header.date as string | undefined) ?? this.ctx.now(), received: this.ctx.now(), engine_uuid: e.uuid,
    });
    records.touched();
  };

  readonly onControlRequest = (frames: Frames): void => this.relayControl(frames, "control", "engine", this.ctx.out.ctlOut);

  readonly onControlReply = (frames: Frames): void => this.relayControl(frames, "engine_control", "client", this.ctx.out.ctlIn);

  readonly onIopub = (frames: Frames): void => {
    const { bad, records } = this.ctx;
    const n = countIn(this.ctx.traffic.iopub, frames);
    const raw = bad.check("iopub", frames, n);
    if (!raw) return;
    this.ctx.out.iopubOut.send(frames);
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
      const e = this.engines.byUuid.get(String(header.session));
      if (e) this.engines.unregister(e.id, "shutdown_reply");
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
    // output for a request without a record (not one of ours, or culled) is not recorded
    if (!records.db.has(msgId)) return;
    if (msgType === "stream") {
      records.db.appendText(msgId, content.name === "stderr" ? "stderr" : "stdout", String(content.text ?? ""));
      return;
    }
    const d: Partial<TaskRecord> = {};
    if (msgType === "error") d.error = content;
    else if (msgType === "execute_input") d.execute_input = String(content.code ?? "");
    else if (msgType === "execute_result" || msgType === "display_data") d[msgType] = content;
    else return;
    records.db.update(msgId, d);
  };

  /** Control messages are only checked and relayed; the hub keeps no record of them. */
  private relayControl(frames: Frames, channel: "control" | "engine_control", peer: "engine" | "client", to: Outlet): void {
    const { bad } = this.ctx;
    const n = countIn(this.ctx.traffic.control, frames);
    const raw = bad.check(channel, frames, n);
    if (!raw) return;
    if (raw.ids.length < 2) return bad.drop(channel, "bad_routing", `control ${peer === "engine" ? "request" : "reply"} without ${peer} routing frame`);
    if (!bad.header(channel, raw)) return;
    to.send(swapRouting(frames, raw.ids));
  }
}
