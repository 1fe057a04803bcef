/**
 * What the controller is started with, and the checks it makes before binding anything.
 */
import { TASK_SCHEMES, type TaskScheme } from "./core/choosers.ts";

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
  /**
   * The largest message part a peer may send (libzmq's ZMQ_MAXMSGSIZE: a peer that announces a
   * larger frame is disconnected before anything is allocated) and the largest whole message
   * (checked before the signature; dropped as too_large). Default DEFAULT_MAX_MESSAGE_BYTES.
   */
  maxMessageBytes?: number;
  /** Messages queued per subscriber on the iopub, notification and heartbeat PUBs; past it a slow subscriber misses messages (counted). Default 10000. */
  subscriberHwm?: number;
  /** Replies queued per client on the client-facing ROUTERs; past it replies are dropped (counted). Default 100000. */
  clientHwm?: number;
  /** Max outstanding load-balanced tasks per engine (0 = unlimited). Default 1, as upstream. */
  taskHwm?: number;
  /** Consecutive missed beats before an engine is declared dead. Default 10. */
  maxHeartbeatMisses?: number;
  /** Drop a registration whose heart never beats. Default max(30 s, 10 × period). */
  registrationTimeoutMs?: number;
  /** Purged registrations remembered so that a heart answering after the timeout still completes them (core/registrations.ts). Default 8192. */
  purgedRegistrationsKept?: number;
  /** Wait before failing the tasks of a dead engine (late results may still arrive). Default 5000. */
  strandedTaskDelayMs?: number;
  /** Broadcast tree depth: 2**depth leaf ports in the engine file. Default 1, as upstream. */
  broadcastDepth?: number;
  /** Task records kept for hub queries (default 1024, as upstream). */
  dbRecordLimit?: number;
  /** Request+result buffer and stream-text bytes kept for hub queries (default 64 MiB; upstream keeps 1 GiB of buffers). */
  dbSizeLimitBytes?: number;
  /**
   * Finished tasks remembered by id, beyond the records: for `after`/`follow` dependencies in the
   * task scheduler and for result_request's status in the hub (upstream remembers all). Default 65536.
   */
  taskHistory?: number;
  /** Engines expected (when the caller knows): a start-up warning if the open-files limit cannot hold them (core/open-files.ts). */
  expectedEngines?: number;
  /** Signatures of recent messages remembered to refuse replays (jupyter_client's digest_history_size). Default 65536. */
  signatureHistory?: number;
  /**
   * Keep task records in this SQLite file (upstream's SQLiteDB format) instead of in memory.
   * `table` defaults to "ipython-tasks", as upstream.
   */
  sqlite?: { path: string; table?: string };
  /**
   * The engine state file (upstream's <profile>/log/engines<cluster_id>.json): rewritten as engines
   * come and go; with `restore`, the engines it lists are taken back at start (--restore).
   * `fallback`: with `restore`, the file read instead when `path` does not exist (a copy kept
   * outside the profile, e.g. the operator's, for a controller whose profile volume is new).
   */
  engineState?: { path: string; clusterId: string; restore: boolean; fallback?: string };
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

/**
 * 1 GiB: four times the largest message the benchmarks send (a 256 MiB array pushed whole to one
 * engine; the 256 MiB scatter is 32 MiB per engine), as large as upstream's whole record store
 * (DictDB.size_limit), and small enough that a peer without the key cannot make the controller
 * allocate more than that per connection before the signature check.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 2 ** 30;

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
  if (config.maxMessageBytes !== undefined && !(Number.isSafeInteger(config.maxMessageBytes) && config.maxMessageBytes > 0)) {
    throw new ConfigError("controller config: maxMessageBytes must be a positive integer");
  }
  for (const k of ["taskHistory", "signatureHistory", "subscriberHwm", "clientHwm"] as const) {
    const v = config[k];
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1)) throw new ConfigError(`controller config: ${k} must be a positive integer`);
  }
}
