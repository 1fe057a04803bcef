/**
 * Every Prometheus metric of the controller (prefix `ipp_controller_`), created on a caller-supplied
 * Registry. Per-engine series are removed when the engine goes away.
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from "prom-client";

export type Direction = "in" | "out";

export interface ControllerMetrics {
  enginesRegistered: Gauge<string>;
  enginesAlive: Gauge<string>;
  heartbeatMisses: Counter<"engine">;
  messages: Counter<"channel" | "direction">;
  bytes: Counter<"channel" | "direction">;
  tasksSubmitted: Counter<"queue">;
  tasksCompleted: Counter<"queue">;
  tasksFailed: Counter<"queue" | "reason">;
  taskLatency: Histogram<"queue">;
  queueDepth: Gauge<"engine">;
  badMessages: Counter<"channel" | "reason">;
  messagesDropped: Counter<"channel" | "reason">;
  messagesHeld: Counter<"channel">;
  timeToFirstEngine: Gauge<string>;
  registrations: Counter<"result">;
  unregistrations: Counter<"reason">;
  lateRegistrations: Counter<"result">;
  dbRecords: Gauge<string>;
  dbCulled: Counter<string>;
  /** Drop every series labelled with this engine id. */
  forgetEngine(engine: string): void;
}

export function createControllerMetrics(registry: Registry): ControllerMetrics {
  const registers = [registry];
  const m = {
    enginesRegistered: new Gauge({ name: "ipp_controller_engines_registered", help: "Engines currently registered", registers }),
    enginesAlive: new Gauge({ name: "ipp_controller_engines_alive", help: "Registered engines that answered the last heartbeat", registers }),
    heartbeatMisses: new Counter({ name: "ipp_controller_heartbeat_misses_total", help: "Missed heartbeats by engine id", labelNames: ["engine"], registers }),
    messages: new Counter({ name: "ipp_controller_messages_total", help: "Messages by channel and direction (in = received by the controller)", labelNames: ["channel", "direction"], registers }),
    bytes: new Counter({ name: "ipp_controller_bytes_total", help: "Message bytes by channel and direction", labelNames: ["channel", "direction"], registers }),
    tasksSubmitted: new Counter({ name: "ipp_controller_tasks_submitted_total", help: "Requests submitted by queue (mux, task, broadcast)", labelNames: ["queue"], registers }),
    tasksCompleted: new Counter({ name: "ipp_controller_tasks_completed_total", help: "Requests answered with status ok, by queue", labelNames: ["queue"], registers }),
    tasksFailed: new Counter({ name: "ipp_controller_tasks_failed_total", help: "Requests answered with an error, by queue and reason", labelNames: ["queue", "reason"], registers }),
    taskLatency: new Histogram({
      name: "ipp_controller_task_latency_seconds", help: "Time from request received to reply relayed, by queue", labelNames: ["queue"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers,
    }),
    queueDepth: new Gauge({ name: "ipp_controller_queue_depth", help: "Outstanding requests per engine id (mux + task)", labelNames: ["engine"], registers }),
    badMessages: new Counter({ name: "ipp_controller_bad_messages_total", help: "Dropped malformed messages by channel and reason", labelNames: ["channel", "reason"], registers }),
    messagesDropped: new Counter({
      name: "ipp_controller_messages_dropped_total",
      help: "Outgoing messages not delivered, by channel and reason (hwm: a client's or subscriber's queue was full; unroutable: the client is gone)",
      labelNames: ["channel", "reason"], registers,
    }),
    messagesHeld: new Counter({
      name: "ipp_controller_messages_held_total",
      help: "Messages for an engine held because its connection to that socket was not up (sent once it is), by channel",
      labelNames: ["channel"], registers,
    }),
    timeToFirstEngine: new Gauge({ name: "ipp_controller_time_to_first_engine_seconds", help: "Seconds from controller start to the first registered engine", registers }),
    registrations: new Counter({ name: "ipp_controller_registrations_total", help: "Engine registration attempts by result", labelNames: ["result"], registers }),
    unregistrations: new Counter({ name: "ipp_controller_unregistrations_total", help: "Engines that left, by reason", labelNames: ["reason"], registers }),
    lateRegistrations: new Counter({
      name: "ipp_controller_late_registrations_total",
      help: "Registrations purged as stalled whose heart answered later: completed after all, or id_taken (another engine holds the id; the engine stays out)",
      labelNames: ["result"], registers,
    }),
    dbRecords: new Gauge({ name: "ipp_controller_db_records", help: "Task records held by the hub", registers }),
    dbCulled: new Counter({ name: "ipp_controller_db_culled_total", help: "Task records culled by the record/size limits", registers }),
  };
  return {
    ...m,
    forgetEngine(engine: string) {
      m.heartbeatMisses.remove({ engine });
      m.queueDepth.remove({ engine });
    },
  };
}

/**
 * The controller process's own figures, once per process (the commands call it; controllers started
 * in-process by tests do not): prom-client's defaults with our prefix (resident memory, V8 heap and
 * its spaces, external memory, CPU, GC pauses, event-loop lag) and the bytes held in ArrayBuffers
 * (the relayed frames' Buffers), which the defaults leave out. Memory that grows with the number
 * of tasks ever run shows up here first (bench/controller/soak.ts reads them).
 */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, prefix: "ipp_controller_" });
  new Gauge({
    name: "ipp_controller_nodejs_array_buffers_bytes", help: "Bytes held by ArrayBuffers and Buffers (part of nodejs_external_memory_bytes)", registers: [registry],
    collect() { this.set(process.memoryUsage().arrayBuffers); },
  });
}

export interface ApiMetrics {
  /** JSON API requests refused for want of a valid credential, by reason (missing, malformed, invalid, forbidden, unavailable). */
  authFailures: Counter<"reason">;
}

/** The JSON API's metrics; several HTTP listeners over one registry share them. */
export function createApiMetrics(registry: Registry): ApiMetrics {
  const name = "ipp_controller_api_auth_failures_total";
  const existing = registry.getSingleMetric(name) as Counter<"reason"> | undefined;
  return {
    authFailures: existing ?? new Counter({
      name, help: "JSON API requests refused for want of a valid credential, by reason", labelNames: ["reason"], registers: [registry],
    }),
  };
}
