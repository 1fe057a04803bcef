/**
 * What every part of the controller is handed: config, logger, session, metrics, the outlets it
 * sends on, the bad-message accounting, the hub's records and the timers. Built once per
 * controller in controller.ts; there is no module-level state.
 */
import type { JsonObject, Session } from "../protocol/index.ts";
import type { ControllerMetrics } from "../metrics/controller.ts";
import type { Logger } from "../util/log.ts";
import type { BadMessages } from "./bad-messages.ts";
import type { ControllerConfig } from "./config.ts";
import type { HubRecords } from "./records.ts";
import type { Outlets } from "./sockets.ts";
import type { Timers } from "./timers.ts";
import type { Queues, Traffic } from "./traffic.ts";

export interface ControllerContext {
  readonly config: ControllerConfig;
  readonly log: Logger;
  readonly clock: () => Date;
  /** Date.now() at start: heartbeat lifetimes and time-to-first-engine count from here. */
  readonly startedAt: number;
  readonly session: Session;
  readonly metrics: ControllerMetrics;
  readonly traffic: Traffic;
  readonly queues: Queues;
  readonly out: Outlets;
  readonly bad: BadMessages;
  readonly records: HubRecords;
  readonly timers: Timers;
  /** The clock as an ISO date, as the hub records dates. */
  now(): string;
}

/** Publish a hub notification (registration, unregistration, shutdown) to every client. */
export function notify(ctx: ControllerContext, msgType: string, content: JsonObject, parent?: JsonObject): void {
  ctx.out.notif.send(ctx.session.build(msgType, content, parent ? { parent } : {}));
}
