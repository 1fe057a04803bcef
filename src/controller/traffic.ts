/**
 * Message and byte counters per channel and per queue. Label children are bound once here: a
 * labels() call per message would hash the label values every time.
 */
import { frameBytes } from "../protocol/index.ts";
import type { ControllerMetrics } from "../metrics/controller.ts";
import type { Frames } from "./socket-io.ts";

export interface ChannelCounters {
  readonly inMsg: { inc(): void };
  readonly inBytes: { inc(n: number): void };
  readonly outMsg: { inc(): void };
  readonly outBytes: { inc(n: number): void };
}

/** The `channel` label values of ipp_controller_messages_total / _bytes_total. */
export type TrafficChannel = "registration" | "mux" | "control" | "task" | "broadcast" | "iopub" | "heartbeat" | "notification";

export type Traffic = Record<TrafficChannel, ChannelCounters>;

export interface QueueCounters {
  readonly submitted: { inc(): void };
  readonly completed: { inc(): void };
  readonly latency: { observe(seconds: number): void };
}

export type Queues = Record<"mux" | "task" | "broadcast", QueueCounters>;

const TRAFFIC_CHANNELS: TrafficChannel[] = ["registration", "mux", "control", "task", "broadcast", "iopub", "heartbeat", "notification"];

export function trafficCounters(metrics: ControllerMetrics): Traffic {
  const t = {} as Traffic;
  for (const name of TRAFFIC_CHANNELS) {
    t[name] = {
      inMsg: metrics.messages.labels(name, "in"), inBytes: metrics.bytes.labels(name, "in"),
      outMsg: metrics.messages.labels(name, "out"), outBytes: metrics.bytes.labels(name, "out"),
    };
  }
  return t;
}

export function queueCounters(metrics: ControllerMetrics): Queues {
  const q = (name: string): QueueCounters => ({
    submitted: metrics.tasksSubmitted.labels(name), completed: metrics.tasksCompleted.labels(name), latency: metrics.taskLatency.labels(name),
  });
  return { mux: q("mux"), task: q("task"), broadcast: q("broadcast") };
}

/** Count a received message; returns its size (the size cap is checked against it). */
export function countIn(c: ChannelCounters, frames: Frames): number {
  const n = frameBytes(frames);
  c.inMsg.inc();
  c.inBytes.inc(n);
  return n;
}

export function countOut(c: ChannelCounters, frames: Frames): void {
  c.outMsg.inc();
  c.outBytes.inc(frameBytes(frames));
}
