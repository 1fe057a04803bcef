/**
 * The broadcast scheduler's I/O over core/broadcast.ts: a client's request on `broadcast` is split
 * over the leaves (one copy per target engine, with a per-engine msg_id); replies are relayed one by
 * one, or, for coalescing requests, gathered into one reply once every live target has answered.
 */
import { encodeJson, parseJsonFrame, type RawMessage } from "../protocol/index.ts";
import { broadcastMsgId, parseBroadcastTargets, splitTargets, type BroadcastTarget } from "./core/broadcast.ts";
import type { ControllerContext } from "./context.ts";
import type { EngineRegistry } from "./engines.ts";
import type { Frames } from "./socket-io.ts";
import { countIn } from "./traffic.ts";

interface PendingBroadcast {
  clientId: Buffer;
  groups: BroadcastTarget[][];
  /** Per target uuid: its reply, or null while awaited. */
  replies: Map<string, { raw: RawMessage; buffers: Buffer[] } | null>;
  /** Targets still awaited (the nulls in `replies`), so each reply costs O(1), not O(targets). */
  outstanding: number;
  last: RawMessage | null;
  receivedAt: number;
}

const SUB0 = Buffer.from("sub_scheduler_0");

export class BroadcastScheduler {
  private readonly pending = new Map<string, PendingBroadcast>();
  private readonly depth: number;

  constructor(private readonly ctx: ControllerContext, private readonly engines: EngineRegistry) {
    this.depth = ctx.config.broadcastDepth ?? 1;
  }

  readonly onRequest = (frames: Frames): void => {
    const { bad, session, out } = this.ctx;
    const n = countIn(this.ctx.traffic.broadcast, frames);
    const raw = bad.check("broadcast", frames, n);
    if (!raw) return;
    const clientId = raw.ids[0];
    if (!clientId) return bad.drop("broadcast", "bad_routing", "no routing id");
    const header = bad.header("broadcast", raw);
    const md = header && bad.metadata("broadcast", raw);
    if (!header || !md) return;
    const targets = parseBroadcastTargets(md.targets);
    if (!targets) return bad.drop("broadcast", "bad_header", "broadcast without metadata.targets");
    const orig = typeof md.original_msg_id === "string" ? md.original_msg_id : String(header.msg_id);
    const coalescing = Boolean(md.is_coalescing);
    const groups = splitTargets(targets, this.depth);
    this.ctx.queues.broadcast.submitted.inc();
    if (coalescing) {
      const replies = new Map<string, null>();
      for (const g of groups) for (const [uuid] of g) if (this.engines.byUuid.has(uuid)) replies.set(uuid, null);
      this.pending.set(orig, { clientId, groups, replies, outstanding: replies.size, last: null, receivedAt: Date.now() });
    }
    groups.forEach((group, leaf) => {
      if (!group.length) return;
      const mdFrame = encodeJson({ ...md, targets: group, original_msg_id: orig });
      for (const [uuid] of group) {
        const hFrame = encodeJson({ ...header, msg_id: broadcastMsgId(orig, uuid) });
        out.leaves[leaf]!.send(session.serializeParts([Buffer.from(uuid, "utf8"), SUB0, clientId], hFrame, raw.parent, mdFrame, raw.content, raw.buffers));
      }
    });
    if (coalescing) this.maybeFinish(orig, this.pending.get(orig)!);
  };

  readonly onReply = (frames: Frames): void => {
    const { bad } = this.ctx;
    const n = countIn(this.ctx.traffic.broadcast, frames);
    const raw = bad.check("engine_broadcast", frames, n);
    if (!raw) return;
    if (raw.ids.length < 3) return bad.drop("engine_broadcast", "bad_routing", "broadcast reply without scheduler/client routing frames");
    const md = bad.metadata("engine_broadcast", raw);
    if (!md) return;
    const orig = typeof md.original_msg_id === "string" ? md.original_msg_id : null;
    if (md.is_coalescing && orig) {
      const p = this.pending.get(orig);
      const uuid = raw.ids[0]!.toString("utf8");
      if (!p || p.replies.get(uuid) !== null) return;
      p.replies.set(uuid, { raw, buffers: raw.buffers });
      p.outstanding -= 1;
      p.last = raw;
      this.maybeFinish(orig, p);
      return;
    }
    this.ctx.out.bcastIn.send(frames.slice(2)); // [client_id, DELIM, ...]
    this.ctx.queues.broadcast.completed.inc();
  };

  /** Coalescing broadcasts still waiting on this engine complete without it. */
  engineRemoved(uuid: string): void {
    for (const [orig, p] of this.pending) {
      if (p.replies.get(uuid) === null) {
        p.replies.delete(uuid);
        p.outstanding -= 1;
        this.maybeFinish(orig, p);
      }
    }
  }

  private maybeFinish(orig: string, p: PendingBroadcast): void {
    if (p.outstanding > 0) return;
    this.pending.delete(orig);
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
    this.ctx.out.bcastIn.send(this.ctx.session.serializeParts(
      [p.clientId], p.last.header, p.last.parent, encodeJson({ ...md, broadcast_targets: doneTargets }), p.last.content, buffers,
    ));
    this.ctx.queues.broadcast.latency.observe((Date.now() - p.receivedAt) / 1000);
    this.ctx.queues.broadcast.completed.inc();
  }
}
