/**
 * ipcontroller's command line and environment, as ipyparallel 7.1, 8.x and 9.x launchers and users
 * pass them, turned into one validated options object for `ipp-operator controller`.
 *
 * Pure: argv + environment values in, options out (or a ControllerArgsError naming the flag).
 * Follows traitlets' rules: aliases (`--ip=x`, `--ip x`), flags (`--reuse`, no value), any
 * `--Class.trait=value` / `--Class.trait value` for the classes ipcontroller configures (a trait of
 * a parent class may be set through a subclass name, e.g. `--IPController.cluster_id`), container
 * traits accumulate over repeated options, `-h/--help/--help-all/--version` anywhere before `--`.
 * Environment: IPP_SESSION_KEY, IPP_CLUSTER_ID, IPP_PROFILE_DIR, IPP_ENABLE_CURVE,
 * IPP_CURVE_SECRETKEY, IPP_CURVE_PUBLICKEY, IPYTHONDIR, applied before the command line as
 * ipyparallel does (so the command line wins).
 *
 * Every setting ipcontroller knows is classified: supported, accepted but meaningless here (noted
 * in `options.notes` so the command can log it), or rejected with an error that says why. Anything
 * else is an unknown option and an error, never silently ignored.
 */
import type { LogLevel } from "../util/log.ts";
import { TASK_SCHEMES, type TaskScheme } from "./core/choosers.ts";

export { TASK_SCHEMES, type TaskScheme };

export type ControllerArgsErrorCode =
  | "IPP_ARGS_UNKNOWN_OPTION"   // no such flag/alias/trait in ipcontroller (or in ours)
  | "IPP_ARGS_UNSUPPORTED"     // ipcontroller has it, ipp-operator does not implement it
  | "IPP_ARGS_BAD_VALUE"       // value does not parse or is out of range
  | "IPP_ARGS_MISSING_VALUE"   // an option that needs a value got none
  | "IPP_ARGS_UNEXPECTED_VALUE" // a flag given a value
  | "IPP_ARGS_POSITIONAL";     // ipcontroller takes no positional arguments

export class ControllerArgsError extends Error {
  readonly code: ControllerArgsErrorCode;
  /** The option as the user spelled it (e.g. `--mongodb`, `--IPController.transport`, `$IPP_ENABLE_CURVE`). */
  readonly flag: string;
  constructor(code: ControllerArgsErrorCode, flag: string, message: string) {
    super(message);
    this.name = "ControllerArgsError";
    this.code = code;
    this.flag = flag;
  }
}

/** Port pools, consumed in ipcontroller's order (see assignPorts). */
export interface PortPools { common: number[]; engine: number[]; client: number[] }

/** A setting that was accepted but has no effect here, with the reason (logged at start-up). */
export interface Note { flag: string; reason: string }

export type Mode = "run" | "help" | "help-all" | "version" | "show-config" | "show-config-json";

export interface ControllerOptions {
  mode: Mode;
  // where: profile and files
  profile: string;
  profileDir?: string;        // explicit location (--profile-dir, ProfileDir.location, $IPP_PROFILE_DIR)
  ipythonDir?: string;        // --ipython-dir, $IPYTHONDIR
  autoCreate: boolean;
  clusterId: string;
  clientJsonFile?: string;    // IPController.client_json_file (default from cluster id)
  engineJsonFile?: string;
  connectionDir?: string;     // ours: write connection files here instead of <profile>/security
  reuse: boolean;
  /** --restore: re-attach the previous controller's engines from the engine state file. */
  restore: boolean;
  /** --config=FILE: a config file loaded after the profile's (BaseIPythonApplication.extra_config_file). */
  extraConfigFile?: string;
  /** ours: with --restore, the state file to restore from when the profile has none (the operator's saved copy). */
  restoreFallback?: string;
  /** Seconds to stay up after closing every socket on a stop signal (ours; default 0). */
  shutdownDelaySeconds?: number;
  workDir?: string;
  // network
  ip: string;
  location?: string;          // default: the host name (resolved by the command)
  ports: PortPools;
  sshServer: string;
  engineSshServer: string;
  // behaviour
  heartbeatPeriodMs: number;
  maxHeartbeatMisses: number;
  registrationTimeoutS?: number;
  taskScheme: TaskScheme;
  hwm: number;
  /** In-memory, bounded records (DictDB, the default; --nodb is accepted and noted) or SQLite (--sqlitedb). */
  db: "dictdb" | "sqlitedb";
  /** SQLiteDB.filename (default tasks.db), SQLiteDB.location (default: the profile directory), SQLiteDB.table. */
  sqlite: { filename: string; location?: string; table: string };
  broadcastDepth: number;
  dbRecordLimit?: number;
  dbSizeLimit?: number;
  /** Finished tasks remembered by id for dependencies and result status (ours). */
  taskHistory?: number;
  /** Message signatures remembered to refuse replays (Session.digest_history_size). */
  signatureHistory?: number;
  /** Messages queued per subscriber on the PUBs (ours). */
  subscriberHwm?: number;
  /** Replies queued per client on the client-facing ROUTERs (ours). */
  clientHwm?: number;
  /** Largest message part accepted from a peer (libzmq ZMQ_MAXMSGSIZE) and largest message (ours). */
  maxMessageBytes?: number;
  // security
  key?: string;               // explicit HMAC key ("" = no signing)
  keyFlag?: string;           // which option or variable set `key` (for error messages)
  keyFile?: string;           // read the key from this file (whitespace stripped)
  generateKey: boolean;       // --secure: always a fresh random key
  enableCurve: boolean;
  curveSecretKey?: string;
  curvePublicKey?: string;
  // logging
  logLevel: LogLevel;
  logToFile: boolean;
  cleanLogs: boolean;
  // ours: HTTP (/metrics, /healthz, /readyz, JSON API)
  httpPort?: number;          // 0 = any free port; undefined = no HTTP server
  httpHost: string;
  notes: Note[];
}

export interface ParseInput {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** For `~` expansion in paths (traitlets expands it in every string setting). */
  home?: string;
  /**
   * Settings from the profile's ipcontroller_config.py, as `--Class.trait=value` (see
   * config-file.ts): applied after the environment and before the command line. Supported,
   * meaningless and rejected as on the command line; an unknown class or trait is noted, not an
   * error (traitlets ignores those in config files).
   */
  config?: { argv: readonly string[]; source: string };
}

// ---------------------------------------------------------------------------------------------
// Values

type Kind = "int" | "float" | "bool" | "str" | "ports" | "loglevel" | "bytes";
type Value = number | boolean | string | number[];

function badValue(flag: string, raw: string, what: string): ControllerArgsError {
  return new ControllerArgsError("IPP_ARGS_BAD_VALUE", flag, `${flag}: ${JSON.stringify(raw)} is not ${what}`);
}

/** traitlets strips one pair of matching quotes from a string value and expands a leading `~`. */
function unquote(raw: string, home: string | undefined): string {
  let s = raw;
  if (s.length >= 2 && (s[0] === '"' || s[0] === "'") && s[s.length - 1] === s[0]) s = s.slice(1, -1);
  if (home !== undefined && (s === "~" || s.startsWith("~/"))) s = home + s.slice(1);
  return s;
}

const LOG_LEVELS: Record<string, LogLevel> = {
  DEBUG: "debug", INFO: "info", WARN: "warn", WARNING: "warn", ERROR: "error", CRITICAL: "error",
};

export function parsePortRange(flag: string, raw: string): number[] {
  const out: number[] = [];
  for (const part of raw.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw badValue(flag, raw, "a port list like 10101-10120,10130");
    const start = Number(m[1]);
    const end = m[2] === undefined ? start : Number(m[2]);
    if (end < start) throw badValue(flag, raw, "a port range with start <= end");
    if (end - start > 65535) throw badValue(flag, raw, "a port range within 1-65535");
    for (let p = start; p <= end; p++) {
      if (p < 1 || p > 65535) throw badValue(flag, raw, "made of ports in 1-65535");
      out.push(p);
    }
  }
  return out;
}

function parseValue(kind: Kind, flag: string, raw: string, home: string | undefined): Value {
  switch (kind) {
    case "int": {
      const s = raw.trim().replace(/_/g, "");
      if (!/^[+-]?\d+$/.test(s)) throw badValue(flag, raw, "an integer");
      return Number(s);
    }
    case "bytes": {
      // an integer number of bytes, optionally with a unit: k/M/G (powers of 1000) or Ki/Mi/Gi (powers of 1024)
      const m = /^\s*(\d+)\s*(k|K|M|G|Ki|Mi|Gi)?B?\s*$/.exec(unquote(raw, undefined));
      if (!m) throw badValue(flag, raw, "a size in bytes (e.g. 1073741824, 512Mi, 1Gi)");
      const unit = { k: 1e3, K: 1e3, M: 1e6, G: 1e9, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 }[m[2] ?? ""] ?? 1;
      return Number(m[1]) * unit;
    }
    case "float": {
      const n = Number(raw.trim());
      if (raw.trim() === "" || !Number.isFinite(n)) throw badValue(flag, raw, "a number");
      return n;
    }
    case "bool": {
      const s = raw.trim().toLowerCase();
      if (s === "true" || s === "1") return true;
      if (s === "false" || s === "0") return false;
      throw badValue(flag, raw, "1, 0, true or false");
    }
    case "str":
      return unquote(raw, home);
    case "ports": {
      const s = unquote(raw, undefined).trim();
      // also the Python list form some configs use: [10101, 10102]
      const list = /^\[(.*)\]$/.exec(s);
      return parsePortRange(flag, list ? list[1]!.replace(/\s+/g, "") : s);
    }
    case "loglevel": {
      const s = unquote(raw, undefined).trim();
      if (/^\d+$/.test(s)) {
        const n = Number(s);
        if (n === 0 || n === 10) return "debug";
        if (n === 20) return "info";
        if (n === 30) return "warn";
        if (n === 40 || n === 50) return "error";
        throw badValue(flag, raw, "a log level (0, 10, 20, 30, 40, 50, DEBUG, INFO, WARN, ERROR, CRITICAL)");
      }
      const lvl = LOG_LEVELS[s.toUpperCase()];
      if (!lvl) throw badValue(flag, raw, "a log level (DEBUG, INFO, WARN, ERROR, CRITICAL or 10-50)");
      return lvl;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The settings table: every configurable trait of the classes ipcontroller configures.

type Status = "supported" | "meaningless" | "rejected";
type Opts = ControllerOptions;

interface Setting {
  kind: Kind;
  status: Status;
  /** supported: what it does; meaningless: why it has no effect; rejected: why it is not implemented. */
  why: string;
  /** Apply a parsed value (supported and meaningless settings; may throw UNSUPPORTED for some values). */
  apply?: (o: Opts, v: Value, flag: string) => void;
  /** Container traits: repeated options accumulate. */
  append?: boolean;
}

const unsupported = (flag: string, why: string) =>
  new ControllerArgsError("IPP_ARGS_UNSUPPORTED", flag, `${flag} is not supported by ipp-operator controller: ${why}`);

const note = (o: Opts, flag: string, reason: string) => { o.notes.push({ flag, reason }); };

/** How to name a setting in an error: a flag as typed (`--restore`), anything else with its value. */
function named(flag: string, v: Value): string {
  return flag.startsWith("--") && flag.slice(2) in FLAGS ? flag : `${flag}=${String(v)}`;
}

/** Accept only the default value (or equivalents); anything else is an UNSUPPORTED error. */
function onlyDefault(allowed: readonly Value[], why: string): Setting["apply"] {
  return (_o, v, flag) => {
    if (!allowed.some((a) => a === v)) throw unsupported(named(flag, v), why);
  };
}

const str = (v: Value) => v as string;
const num = (v: Value) => v as number;

function positiveInt(flag: string, v: number, min = 1): number {
  if (!Number.isSafeInteger(v) || v < min) throw badValue(flag, String(v), `an integer >= ${min}`);
  return v;
}

const DB_CLASSES: Record<string, "dictdb" | "nodb" | "sqlitedb" | "mongodb"> = {
  dictdb: "dictdb", "ipyparallel.controller.dictdb.dictdb": "dictdb",
  nodb: "nodb", "ipyparallel.controller.dictdb.nodb": "nodb",
  sqlitedb: "sqlitedb", "ipyparallel.controller.sqlitedb.sqlitedb": "sqlitedb",
  mongodb: "mongodb", "ipyparallel.controller.mongodb.mongodb": "mongodb",
};

const SETTINGS: Record<string, Setting> = {
  // --- Application (traitlets)
  "Application.log_level": { kind: "loglevel", status: "supported", why: "log level (DEBUG, INFO, WARN, ERROR, CRITICAL or 10..50)", apply: (o, v) => { o.logLevel = v as LogLevel; } },
  "Application.show_config": { kind: "bool", status: "supported", why: "print the resolved configuration and exit", apply: (o, v) => { if (v) o.mode = "show-config"; } },
  "Application.show_config_json": { kind: "bool", status: "supported", why: "print the resolved configuration as JSON and exit", apply: (o, v) => { if (v) o.mode = "show-config-json"; } },
  "Application.log_format": { kind: "str", status: "meaningless", why: "logs are structured JSON lines (constant message plus fields), not printf-formatted", apply: (o, _v, f) => note(o, f, "logs are JSON lines") },
  "Application.log_datefmt": { kind: "str", status: "meaningless", why: "log timestamps are ISO 8601 in every JSON line", apply: (o, _v, f) => note(o, f, "log timestamps are ISO 8601") },
  "Application.logging_config": { kind: "str", status: "rejected", why: "Python logging dictConfig cannot configure this process's logger; use --log-level / --log-to-file" },
  // --- BaseIPythonApplication (IPython)
  "BaseIPythonApplication.profile": { kind: "str", status: "supported", why: "profile name: files go to <ipython-dir>/profile_<name>/security", apply: (o, v, f) => { if (!str(v)) throw badValue(f, "", "a profile name"); o.profile = str(v); } },
  "BaseIPythonApplication.ipython_dir": { kind: "str", status: "supported", why: "IPython directory holding profile_<name> (default $IPYTHONDIR or ~/.ipython)", apply: (o, v) => { o.ipythonDir = str(v) || undefined; } },
  "BaseIPythonApplication.auto_create": { kind: "bool", status: "supported", why: "create the profile directory if missing (default true, as ipcontroller)", apply: (o, v) => { o.autoCreate = v as boolean; } },
  "BaseIPythonApplication.extra_config_file": { kind: "str", status: "supported", why: "a config file loaded after the profile's ipcontroller_config.py (read by a Python helper with traitlets, as upstream; the command line still wins)", apply: (o, v) => { o.extraConfigFile = str(v) || undefined; } },
  "BaseIPythonApplication.copy_config_files": { kind: "bool", status: "meaningless", why: "no Python config files are read, so none are copied into the profile", apply: (o, v, f) => { if (v) note(o, f, "no config files to copy"); } },
  "BaseIPythonApplication.overwrite": { kind: "bool", status: "meaningless", why: "only applies to copying config files", apply: (o, v, f) => { if (v) note(o, f, "no config files to overwrite"); } },
  "BaseIPythonApplication.verbose_crash": { kind: "bool", status: "meaningless", why: "IPython's crash handler is Python-only (ipcontroller disables it too)", apply: (o, v, f) => { if (v) note(o, f, "no IPython crash handler"); } },
  "BaseIPythonApplication.add_ipython_dir_to_sys_path": { kind: "bool", status: "meaningless", why: "no Python sys.path in this process", apply: (o, v, f) => { if (v) note(o, f, "no Python sys.path"); } },
  // --- BaseParallelApplication (ipyparallel)
  "BaseParallelApplication.cluster_id": { kind: "str", status: "supported", why: "cluster id: files are named ipcontroller-<id>-{client,engine}.json", apply: (o, v) => { o.clusterId = str(v); } },
  "BaseParallelApplication.work_dir": { kind: "str", status: "supported", why: "working directory of the process", apply: (o, v) => { o.workDir = str(v) || undefined; } },
  "BaseParallelApplication.log_to_file": { kind: "bool", status: "supported", why: "log to <profile>/log/ipcontroller-<cluster_id>-<pid>.log instead of stderr", apply: (o, v) => { o.logToFile = v as boolean; } },
  "BaseParallelApplication.clean_logs": { kind: "bool", status: "supported", why: "remove old ipcontroller-<n>.{log,err,out} files from <profile>/log at start", apply: (o, v) => { o.cleanLogs = v as boolean; } },
  "BaseParallelApplication.log_url": { kind: "str", status: "rejected", why: "forwarding logs over ZeroMQ to iplogger is not implemented (iplogger is gone since ipyparallel 7); scrape /metrics and read stderr instead", apply: (_o, v, f) => { if (str(v)) throw unsupported(f, SETTINGS["BaseParallelApplication.log_url"]!.why); } },
  // --- IPController
  "IPController.ip": { kind: "str", status: "supported", why: "listen address for clients and engines (default 127.0.0.1; '*' or 0.0.0.0 for all interfaces)", apply: (o, v, f) => { if (!str(v)) throw badValue(f, "", "an IP address"); o.ip = str(v); } },
  "IPController.location": { kind: "str", status: "supported", why: "host name or IP written into the connection files so remote clients/engines find a controller listening on '*' (default: this host's name)", apply: (o, v) => { o.location = str(v) || undefined; } },
  "IPController.engine_ip": { kind: "str", status: "rejected", why: "one listen address serves clients and engines; use --ip", apply: (o, v, f) => { if (str(v) && str(v) !== o.ip) throw unsupported(f, "separate listen addresses for engines and clients are not implemented; use --ip"); } },
  "IPController.client_ip": { kind: "str", status: "rejected", why: "one listen address serves clients and engines; use --ip", apply: (o, v, f) => { if (str(v) && str(v) !== o.ip) throw unsupported(f, "separate listen addresses for engines and clients are not implemented; use --ip"); } },
  "IPController.monitor_ip": { kind: "str", status: "meaningless", why: "there is no internal monitor socket: relays report in-process", apply: (o, _v, f) => note(o, f, "no monitor socket") },
  "IPController.transport": { kind: "str", status: "rejected", why: "only the tcp transport is implemented", apply: onlyDefault(["tcp"], "only the tcp transport is implemented") },
  "IPController.engine_transport": { kind: "str", status: "rejected", why: "only the tcp transport is implemented", apply: onlyDefault(["tcp"], "only the tcp transport is implemented") },
  "IPController.client_transport": { kind: "str", status: "rejected", why: "only the tcp transport is implemented", apply: onlyDefault(["tcp"], "only the tcp transport is implemented") },
  "IPController.monitor_transport": { kind: "str", status: "meaningless", why: "there is no internal monitor socket", apply: (o, _v, f) => note(o, f, "no monitor socket") },
  "IPController.ports": { kind: "ports", status: "supported", append: true, why: "common port pool (e.g. 10101-10120), consumed in ipcontroller's order after the engine/client pools", apply: (o, v) => { o.ports.common.push(...(v as number[])); } },
  "IPController.engine_ports": { kind: "ports", status: "supported", append: true, why: "port pool for engine-facing sockets (registration first)", apply: (o, v) => { o.ports.engine.push(...(v as number[])); } },
  "IPController.client_ports": { kind: "ports", status: "supported", append: true, why: "port pool for client-facing sockets", apply: (o, v) => { o.ports.client.push(...(v as number[])); } },
  "IPController.regport": { kind: "int", status: "supported", why: "deprecated since ipyparallel 7: appends a port to the engine pool (the registration port when the pool was empty)", apply: (o, v, f) => { o.ports.engine.push(positiveInt(f, num(v))); } },
  "IPController.notifier_port": { kind: "int", status: "supported", why: "deprecated since ipyparallel 7: appends a port to the client pool", apply: (o, v, f) => { o.ports.client.push(positiveInt(f, num(v))); } },
  "IPController.mon_port": { kind: "int", status: "supported", why: "deprecated since ipyparallel 7: appends a port to the common pool (there is no monitor socket to use it)", apply: (o, v, f) => { o.ports.common.push(positiveInt(f, num(v))); } },
  "IPController.hb": { kind: "str", status: "rejected", why: "port pairs were removed in ipyparallel 7; use --engine-ports / --client-ports" },
  "IPController.mux": { kind: "str", status: "rejected", why: "port pairs were removed in ipyparallel 7; use --engine-ports / --client-ports" },
  "IPController.task": { kind: "str", status: "rejected", why: "port pairs were removed in ipyparallel 7; use --engine-ports / --client-ports" },
  "IPController.control": { kind: "str", status: "rejected", why: "port pairs were removed in ipyparallel 7; use --engine-ports / --client-ports" },
  "IPController.iopub": { kind: "str", status: "rejected", why: "port pairs were removed in ipyparallel 7; use --engine-ports / --client-ports" },
  "IPController.reuse_files": { kind: "bool", status: "supported", why: "reuse existing connection files (same ports and key) and keep them on exit", apply: (o, v) => { o.reuse = v as boolean; } },
  "IPController.restore_engines": { kind: "bool", status: "supported", why: "after a restart, take back the engines the previous controller had (from <profile>/log/engines<cluster_id>.json) with their ids; use with --reuse", apply: (o, v) => { o.restore = v as boolean; } },
  "IPController.ssh_server": { kind: "str", status: "supported", why: "ssh server written into the client connection file for clients to tunnel through", apply: (o, v) => { o.sshServer = str(v); } },
  "IPController.engine_ssh_server": { kind: "str", status: "supported", why: "ssh server written into the engine connection file for engines to tunnel through", apply: (o, v) => { o.engineSshServer = str(v); } },
  "IPController.enable_curve": { kind: "bool", status: "supported", why: "CurveZMQ encryption on every socket (then messages are not HMAC-signed unless a key is given)", apply: (o, v) => { o.enableCurve = v as boolean; } },
  "IPController.curve_secretkey": { kind: "str", status: "supported", why: "Z85 CurveZMQ secret key (default $IPP_CURVE_SECRETKEY or generated)", apply: (o, v) => { o.curveSecretKey = str(v) || undefined; } },
  "IPController.curve_publickey": { kind: "str", status: "supported", why: "Z85 CurveZMQ public key (default $IPP_CURVE_PUBLICKEY or generated)", apply: (o, v) => { o.curvePublicKey = str(v) || undefined; } },
  "IPController.use_threads": { kind: "bool", status: "meaningless", why: "schedulers and relays always run in this one process (no Python subprocesses)", apply: (o, v, f) => { if (v) note(o, f, "schedulers already run in-process"); } },
  "IPController.db_class": {
    kind: "str", status: "supported", why: "DictDB (bounded in-memory task records, the default) or SQLiteDB (records in <profile>/tasks.db, upstream's format); NoDB is accepted and behaves as DictDB; MongoDB is rejected",
    apply: (o, v, f) => {
      const db = DB_CLASSES[str(v).toLowerCase()];
      if (db === undefined) throw badValue(f, str(v), "one of DictDB, NoDB, SQLiteDB, MongoDB");
      if (db === "mongodb") throw unsupported(named(f, v), "the MongoDB task database is not implemented; use --sqlitedb, or the in-memory records (--dictdb, the default)");
      if (db === "nodb") note(o, f, "task records are always kept in memory, bounded by the DictDB limits (record_limit, size_limit)");
      o.db = db === "sqlitedb" ? "sqlitedb" : "dictdb";
    },
  },
  "IPController.registration_timeout": { kind: "int", status: "supported", why: "seconds an engine may take to complete registration (default max(30, 10 heartbeats))", apply: (o, v, f) => { o.registrationTimeoutS = num(v) === 0 ? undefined : positiveInt(f, num(v)); } },
  "IPController.engine_json_file": { kind: "str", status: "supported", why: "file name of the engine connection file in the security dir", apply: (o, v, f) => { if (!str(v)) throw badValue(f, "", "a file name"); o.engineJsonFile = str(v); } },
  "IPController.client_json_file": { kind: "str", status: "supported", why: "file name of the client connection file in the security dir", apply: (o, v, f) => { if (!str(v)) throw badValue(f, "", "a file name"); o.clientJsonFile = str(v); } },
  "IPController.broadcast_scheduler_depth": { kind: "int", status: "supported", why: "broadcast tree depth: 2**depth engine-side broadcast ports (default 1)", apply: (o, v, f) => { const d = num(v); if (!Number.isInteger(d) || d < 0 || d > 8) throw badValue(f, String(v), "a depth in 0-8"); o.broadcastDepth = d; } },
  // --- HeartMonitor
  "HeartMonitor.period": { kind: "int", status: "supported", why: "heartbeat period in ms (default 3000)", apply: (o, v, f) => { o.heartbeatPeriodMs = positiveInt(f, num(v), 10); } },
  "HeartMonitor.max_heartmonitor_misses": { kind: "int", status: "supported", why: "consecutive missed heartbeats before an engine is unregistered (default 10)", apply: (o, v, f) => { o.maxHeartbeatMisses = positiveInt(f, num(v)); } },
  "HeartMonitor.debug": { kind: "bool", status: "meaningless", why: "every heartbeat is visible at --log-level=DEBUG and in the heartbeat metrics", apply: (o, v, f) => { if (v) note(o, f, "use --log-level=DEBUG"); } },
  // --- TaskScheduler
  "TaskScheduler.scheme_name": {
    kind: "str", status: "supported", why: "load-balancing scheme: leastload (default), lru, plainrandom, twobin, weighted; 'pure' is rejected",
    apply: (o, v, f) => {
      const s = str(v);
      if (s === "pure") throw unsupported(named(f, v), "the pure ZeroMQ DEALER scheduler is not implemented (it also breaks dependencies and retries); use leastload");
      if (!(TASK_SCHEMES as readonly string[]).includes(s)) throw badValue(f, s, `one of ${TASK_SCHEMES.join(", ")}`);
      o.taskScheme = s as TaskScheme;
    },
  },
  "TaskScheduler.hwm": { kind: "int", status: "supported", why: "maximum outstanding tasks per engine (default 1; 0 = unlimited)", apply: (o, v, f) => { o.hwm = positiveInt(f, num(v), 0); } },
  // --- DictDB
  "DictDB.record_limit": { kind: "int", status: "supported", why: "maximum task records kept in memory (default 1024)", apply: (o, v, f) => { o.dbRecordLimit = positiveInt(f, num(v)); } },
  "DictDB.size_limit": { kind: "int", status: "supported", why: "maximum bytes of task records kept in memory: buffers and stdout/stderr text (default 64 MiB)", apply: (o, v, f) => { o.dbSizeLimit = positiveInt(f, num(v)); } },
  "DictDB.cull_fraction": { kind: "float", status: "rejected", why: "records are culled 10 % at a time (the default, 0.1); other fractions are not implemented", apply: onlyDefault([0.1], "records are culled 10 % at a time; other fractions are not implemented") },
  // --- SQLiteDB
  "SQLiteDB.filename": { kind: "str", status: "supported", why: "file name of the SQLite task database (default tasks.db)", apply: (o, v, f) => { if (!str(v)) throw badValue(f, "", "a file name"); o.sqlite.filename = str(v); } },
  "SQLiteDB.location": { kind: "str", status: "supported", why: "directory of the SQLite task database (default: the profile directory)", apply: (o, v) => { o.sqlite.location = str(v) || undefined; } },
  "SQLiteDB.table": { kind: "str", status: "supported", why: "table of the SQLite task database (default ipython-tasks); a table of that name with other columns is left alone and <table>_1, _2, ... is used", apply: (o, v, f) => { if (!str(v)) throw badValue(f, "", "a table name"); o.sqlite.table = str(v); } },
  // --- Session (jupyter_client)
  "Session.key": { kind: "str", status: "supported", why: "HMAC key for message signatures ('' only with CurveZMQ)", apply: (o, v, f) => { o.key = str(v); o.keyFlag = f; o.keyFile = undefined; o.generateKey = false; } },
  "Session.keyfile": { kind: "str", status: "supported", why: "file whose contents (whitespace stripped) are the HMAC key", apply: (o, v) => { if (str(v)) { o.keyFile = str(v); o.key = undefined; o.generateKey = false; } else o.keyFile = undefined; } },
  "Session.signature_scheme": { kind: "str", status: "supported", why: "only hmac-sha256 (the default) is implemented", apply: onlyDefault(["hmac-sha256"], "only the hmac-sha256 signature scheme is implemented") },
  "Session.packer": { kind: "str", status: "supported", why: "only JSON message packing (json/orjson, the default) is implemented", apply: onlyDefault(["json", "orjson"], "messages are packed as JSON; pickle/msgpack packers are not implemented") },
  "Session.unpacker": { kind: "str", status: "supported", why: "only JSON message packing (json/orjson, the default) is implemented", apply: onlyDefault(["json", "orjson"], "messages are packed as JSON; pickle/msgpack packers are not implemented") },
  "Session.session": { kind: "str", status: "meaningless", why: "the controller's own session id is generated; clients and engines never depend on it", apply: (o, _v, f) => note(o, f, "the controller's session id is generated") },
  "Session.username": { kind: "str", status: "meaningless", why: "only labels the controller's own message headers", apply: (o, _v, f) => note(o, f, "header username is fixed") },
  "Session.debug": { kind: "bool", status: "meaningless", why: "use --log-level=DEBUG", apply: (o, v, f) => { if (v) note(o, f, "use --log-level=DEBUG"); } },
  "Session.check_pid": { kind: "bool", status: "meaningless", why: "no fork-safety check is needed: the controller never forks", apply: (o, _v, f) => note(o, f, "the controller never forks") },
  "Session.buffer_threshold": { kind: "int", status: "meaningless", why: "pyzmq send tuning; the relays forward frames without re-serialising them", apply: (o, _v, f) => note(o, f, "pyzmq send tuning") },
  "Session.copy_threshold": { kind: "int", status: "meaningless", why: "pyzmq zero-copy tuning; not applicable to zeromq.js", apply: (o, _v, f) => note(o, f, "pyzmq zero-copy tuning") },
  "Session.item_threshold": { kind: "int", status: "meaningless", why: "pyzmq serialisation tuning; the relays forward frames as they are", apply: (o, _v, f) => note(o, f, "pyzmq serialisation tuning") },
  "Session.digest_history_size": { kind: "int", status: "supported", why: "signatures of recent messages remembered to refuse replays (default 65536)", apply: (o, v, f) => { o.signatureHistory = positiveInt(f, num(v)); } },
  "Session.metadata": { kind: "str", status: "meaningless", why: "only labels the controller's own messages", apply: (o, _v, f) => note(o, f, "metadata of the controller's own messages") },
  // --- ProfileDir (IPython)
  "ProfileDir.location": { kind: "str", status: "supported", why: "profile directory; connection files go to <dir>/security", apply: (o, v) => { o.profileDir = str(v) || undefined; } },
  // --- ours (not in ipcontroller)
  "IppOperator.http_port": { kind: "int", status: "supported", why: "serve /metrics, /healthz, /readyz and the JSON API on this port (0 = any free port; default: no HTTP server)", apply: (o, v, f) => { if (num(v) < 0 || num(v) > 65535) throw badValue(f, String(v), "a port in 0-65535"); o.httpPort = num(v); } },
  "IppOperator.http_host": { kind: "str", status: "supported", why: "address of the HTTP server (default 127.0.0.1)", apply: (o, v, f) => { if (!str(v)) throw badValue(f, "", "an address"); o.httpHost = str(v); } },
  "IppOperator.max_message_size": { kind: "bytes", status: "supported", why: "largest message a peer may send, in bytes (k/M/G or Ki/Mi/Gi units); a larger frame disconnects the peer before anything is allocated (default 1Gi)", apply: (o, v, f) => { o.maxMessageBytes = positiveInt(f, num(v), 1024); if (o.maxMessageBytes > 2 ** 32) throw badValue(f, String(v), "at most 4Gi"); } },
  "IppOperator.subscriber_hwm": { kind: "int", status: "supported", why: "messages queued per subscriber on the iopub, notification and heartbeat PUBs; past it a slow subscriber misses messages, counted in ipp_controller_messages_dropped_total (default 10000)", apply: (o, v, f) => { o.subscriberHwm = positiveInt(f, num(v)); } },
  "IppOperator.client_hwm": { kind: "int", status: "supported", why: "replies queued per client on the client-facing sockets; past it replies are dropped and counted, results stay in the task records (default 100000)", apply: (o, v, f) => { o.clientHwm = positiveInt(f, num(v)); } },
  "IppOperator.task_history": { kind: "int", status: "supported", why: "finished tasks remembered by id for after/follow dependencies and result status, beyond the DictDB records (default 65536; upstream remembers all)", apply: (o, v, f) => { o.taskHistory = positiveInt(f, num(v)); } },
  "IppOperator.connection_dir": { kind: "str", status: "supported", why: "write the connection files here instead of <profile>/security (e.g. a volume the operator publishes)", apply: (o, v) => { o.connectionDir = str(v) || undefined; } },
  "IppOperator.shutdown_delay": { kind: "int", status: "supported", why: "seconds the process stays up after a stop signal has closed every socket (default 0): its address keeps refusing connections, so reconnecting engines retry at once, until a Kubernetes Service has moved on to a replacement; a connection attempt toward an address that no longer exists waits out TCP's SYN retries, about 2 minutes", apply: (o, v, f) => { if (num(v) < 0 || num(v) > 600) throw badValue(f, String(v), "0-600 seconds"); o.shutdownDelaySeconds = num(v); } },
  "IppOperator.restore_fallback": { kind: "str", status: "supported", why: "with --restore, the engine state file to restore from when the profile has none (a copy kept elsewhere, e.g. the one the operator mounts into a replaced controller pod)", apply: (o, v) => { o.restoreFallback = str(v) || undefined; } },
};

/** Class hierarchy for `--Class.trait`: a trait may be set through its own class or a subclass. */
const CLASS_PARENTS: Record<string, string[]> = {
  IPController: ["IPController", "BaseParallelApplication", "BaseIPythonApplication", "Application"],
  BaseParallelApplication: ["BaseParallelApplication", "BaseIPythonApplication", "Application"],
  BaseIPythonApplication: ["BaseIPythonApplication", "Application"],
  Application: ["Application"],
  HeartMonitor: ["HeartMonitor"],
  TaskScheduler: ["TaskScheduler"],
  DictDB: ["DictDB"],
  SQLiteDB: ["SQLiteDB"],
  Session: ["Session"],
  ProfileDir: ["ProfileDir"],
  IppOperator: ["IppOperator"],
};
/** Class names ipyparallel 7+ still accepts with a deprecation warning. */
const DEPRECATED_CLASSES: Record<string, string> = { HubFactory: "IPController", IPControllerApp: "IPController" };
/** Classes ipcontroller configures that we do not implement at all. */
const REJECTED_CLASSES: Record<string, string> = {
  MongoDB: "the MongoDB task database is not implemented",
  NoDB: "NoDB has no settings",
  Hub: "the Hub has no settings",
};

/** Resolve `Class.trait` (as typed) to the canonical key in SETTINGS. */
function resolveTrait(spelled: string, flag: string): string {
  const dot = spelled.indexOf(".");
  let cls = spelled.slice(0, dot);
  const trait = spelled.slice(dot + 1);
  cls = DEPRECATED_CLASSES[cls] ?? cls;
  const rejected = REJECTED_CLASSES[cls];
  if (rejected !== undefined) throw unsupported(flag, rejected);
  const chain = CLASS_PARENTS[cls];
  if (chain === undefined) {
    throw new ControllerArgsError("IPP_ARGS_UNKNOWN_OPTION", flag, `unknown option ${flag}: ipcontroller has no configurable class ${cls}`);
  }
  for (const c of chain) if (`${c}.${trait}` in SETTINGS) return `${c}.${trait}`;
  throw new ControllerArgsError("IPP_ARGS_UNKNOWN_OPTION", flag, `unknown option ${flag}: ${cls} has no setting ${trait}${suggest(trait, chain)}`);
}

function suggest(trait: string, chain: string[]): string {
  const names = Object.keys(SETTINGS).filter((k) => chain.includes(k.split(".")[0]!)).map((k) => k.split(".")[1]!);
  const near = names.filter((n) => n.includes(trait) || trait.includes(n));
  return near.length > 0 ? ` (did you mean ${near.slice(0, 3).join(", ")}?)` : "";
}

// ---------------------------------------------------------------------------------------------
// Aliases and flags (ipcontroller's, plus ours)

/** ipcontroller's aliases (identical in ipyparallel 7.1, 8.8 and 9.2) and ours. */
export const ALIASES: Record<string, string> = {
  // traitlets Application / IPython
  "log-level": "Application.log_level",
  "profile-dir": "ProfileDir.location",
  profile: "BaseIPythonApplication.profile",
  "ipython-dir": "BaseIPythonApplication.ipython_dir",
  config: "BaseIPythonApplication.extra_config_file",
  // ipyparallel base
  "work-dir": "BaseParallelApplication.work_dir",
  "log-to-file": "BaseParallelApplication.log_to_file",
  "clean-logs": "BaseParallelApplication.clean_logs",
  "log-url": "BaseParallelApplication.log_url",
  "cluster-id": "BaseParallelApplication.cluster_id",
  // ipcontroller
  ssh: "IPController.ssh_server",
  enginessh: "IPController.engine_ssh_server",
  location: "IPController.location",
  ip: "IPController.ip",
  transport: "IPController.transport",
  port: "IPController.regport",
  ports: "IPController.ports",
  ping: "HeartMonitor.period",
  scheme: "TaskScheduler.scheme_name",
  hwm: "TaskScheduler.hwm",
  // jupyter_client Session
  ident: "Session.session",
  user: "Session.username",
  keyfile: "Session.keyfile",
  // ours: spellings ipcontroller lacks (it needs --IPController.engine_ports=... etc.)
  "engine-ports": "IPController.engine_ports",
  "client-ports": "IPController.client_ports",
  "key-file": "Session.keyfile",
  "http-port": "IppOperator.http_port",
  "http-host": "IppOperator.http_host",
  "connection-dir": "IppOperator.connection_dir",
  "max-message-size": "IppOperator.max_message_size",
  "restore-fallback": "IppOperator.restore_fallback",
  "shutdown-delay": "IppOperator.shutdown_delay",
};
/** Aliases that are ours, not ipcontroller's. */
export const OUR_ALIASES = new Set(["engine-ports", "client-ports", "key-file", "http-port", "http-host", "connection-dir", "max-message-size", "restore-fallback", "shutdown-delay"]);

interface Flag {
  /** traitlets-style assignments, applied in order; a function for the special ones. */
  set: Array<[string, string]> | ((o: Opts, flag: string) => void);
  help: string;
}

/** ipcontroller's flags (identical in 7.1, 8.8, 9.2) and ours (enable-curve). */
export const FLAGS: Record<string, Flag> = {
  debug: { set: [["Application.log_level", "10"]], help: "log level DEBUG" },
  quiet: { set: [["Application.log_level", "50"]], help: "log level CRITICAL (errors only)" },
  "show-config": { set: [["Application.show_config", "true"]], help: "print the resolved configuration and exit" },
  "show-config-json": { set: [["Application.show_config_json", "true"]], help: "print the resolved configuration as JSON and exit" },
  init: { set: [["BaseIPythonApplication.copy_config_files", "true"], ["BaseIPythonApplication.auto_create", "true"]], help: "create the profile directory (it is created anyway)" },
  "log-to-file": { set: [["BaseParallelApplication.log_to_file", "true"]], help: "log to <profile>/log/ipcontroller-<cluster_id>-<pid>.log" },
  usethreads: { set: [["IPController.use_threads", "true"]], help: "accepted; schedulers always run in-process" },
  sqlitedb: { set: [["IPController.db_class", "SQLiteDB"]], help: "keep task records in SQLite (<profile>/tasks.db, upstream's table and columns); they outlive the controller" },
  mongodb: { set: [["IPController.db_class", "MongoDB"]], help: "rejected: MongoDB task database not implemented" },
  dictdb: { set: [["IPController.db_class", "DictDB"]], help: "keep task records in memory (default)" },
  nodb: { set: [["IPController.db_class", "NoDB"]], help: "accepted; task records are still kept in memory, bounded as with --dictdb" },
  reuse: { set: [["IPController.reuse_files", "true"]], help: "reuse existing connection files (same ports and key); keep them on exit" },
  restore: { set: [["IPController.restore_engines", "true"], ["IPController.reuse_files", "true"]], help: "restore the engines of the previous controller (same cluster id and profile) with their ids; implies --reuse" },
  secure: { set: (o) => { o.key = undefined; o.keyFile = undefined; o.generateKey = true; }, help: "sign messages with a new random HMAC key (the default)" },
  "no-secure": { set: (o, f) => { o.key = ""; o.keyFlag = f; o.keyFile = undefined; o.generateKey = false; }, help: "do not sign messages (empty key): only with --enable-curve" },
  // ours
  "enable-curve": { set: [["IPController.enable_curve", "true"]], help: "CurveZMQ encryption (same as --IPController.enable_curve=True)" },
};
export const OUR_FLAGS = new Set(["enable-curve"]);

// ---------------------------------------------------------------------------------------------
// Parsing

export function defaultOptions(): ControllerOptions {
  return {
    mode: "run",
    profile: "default",
    autoCreate: true,
    clusterId: "",
    reuse: false,
    restore: false,
    ip: "127.0.0.1",
    ports: { common: [], engine: [], client: [] },
    sshServer: "",
    engineSshServer: "",
    heartbeatPeriodMs: 3000,
    maxHeartbeatMisses: 10,
    taskScheme: "leastload",
    hwm: 1,
    db: "dictdb",
    sqlite: { filename: "tasks.db", table: "ipython-tasks" },
    broadcastDepth: 1,
    generateKey: false,
    enableCurve: false,
    logLevel: "info",
    logToFile: false,
    cleanLogs: false,
    httpHost: "127.0.0.1",
    notes: [],
  };
}

/** Environment variables ipyparallel's controller reads (8.0+; 7.1 reads only IPP_SESSION_KEY). */
export const ENV_VARS = [
  "IPP_SESSION_KEY", "IPP_CLUSTER_ID", "IPP_PROFILE_DIR", "IPP_ENABLE_CURVE",
  "IPP_CURVE_SECRETKEY", "IPP_CURVE_PUBLICKEY", "IPYTHONDIR", "IPP_KEY",
] as const;

function applyEnv(o: Opts, env: ParseInput["env"], home: string | undefined): void {
  const sessionKey = env.IPP_SESSION_KEY;
  const ourKey = env.IPP_KEY;
  if (sessionKey !== undefined && ourKey !== undefined && sessionKey !== ourKey) {
    throw new ControllerArgsError("IPP_ARGS_BAD_VALUE", "$IPP_KEY", "$IPP_KEY and $IPP_SESSION_KEY are both set and differ; set one");
  }
  const key = sessionKey ?? ourKey;
  if (key !== undefined) {
    o.key = key;
    o.keyFlag = sessionKey !== undefined ? "$IPP_SESSION_KEY" : "$IPP_KEY";
  }
  if (env.IPP_CLUSTER_ID !== undefined) o.clusterId = env.IPP_CLUSTER_ID;
  // launchers export IPP_PROFILE_DIR even when empty; empty means "not given"
  if (env.IPP_PROFILE_DIR) o.profileDir = unquote(env.IPP_PROFILE_DIR, home);
  if (env.IPYTHONDIR) o.ipythonDir = unquote(env.IPYTHONDIR, home);
  if (env.IPP_ENABLE_CURVE !== undefined) o.enableCurve = env.IPP_ENABLE_CURVE === "1";
  if (env.IPP_CURVE_SECRETKEY) o.curveSecretKey = env.IPP_CURVE_SECRETKEY;
  if (env.IPP_CURVE_PUBLICKEY) o.curvePublicKey = env.IPP_CURVE_PUBLICKEY;
}

const CLASS_TRAIT = /^--([A-Za-z_]\w*)\.([A-Za-z_]\w*)$/;

function isOptionLike(tok: string): boolean {
  // argparse: a token starting with '-' is an option unless it is '-' or a negative number
  return tok.startsWith("-") && tok !== "-" && !/^-\d+$|^-\d*\.\d+$/.test(tok);
}

/**
 * Parse ipcontroller's argv and environment. Throws ControllerArgsError for anything unknown,
 * unsupported or malformed.
 */
export function parseControllerArgs(input: ParseInput): ControllerOptions {
  const { argv, env, home } = input;
  const o = defaultOptions();

  // help/version first, like traitlets, anywhere before "--"
  const dd = argv.indexOf("--");
  const interpreted = dd >= 0 ? argv.slice(0, dd) : argv;
  if (interpreted[0] === "help") return { ...o, mode: "help" };
  if (interpreted.includes("--help-all")) return { ...o, mode: "help-all" };
  if (interpreted.includes("-h") || interpreted.includes("--help")) return { ...o, mode: "help" };
  if (interpreted.includes("--version") || interpreted.includes("-V")) return { ...o, mode: "version" };

  applyEnv(o, env, home);

  const assign = (key: string, raw: string, flag: string) => {
    const setting = SETTINGS[key]!;
    if (setting.status === "rejected" && !setting.apply) {
      throw unsupported(flag, setting.why);
    }
    const value = parseValue(setting.kind, flag, raw, home);
    setting.apply!(o, value, flag);
  };

  for (const tok of input.config?.argv ?? []) {
    const m = /^--([A-Za-z_]\w*\.[A-Za-z_]\w*)=(.*)$/s.exec(tok);
    if (!m) continue;
    const spelled = `${input.config!.source}: c.${m[1]}`;
    try {
      assign(resolveTrait(m[1]!, spelled), m[2]!, spelled);
    } catch (err) {
      if (err instanceof ControllerArgsError && err.code === "IPP_ARGS_UNKNOWN_OPTION") {
        o.notes.push({ flag: spelled, reason: `not an ipcontroller setting; ignored (${err.message})` });
      } else throw err;
    }
  }

  for (let i = 0; i < interpreted.length; i++) {
    const tok = interpreted[i]!;
    if (!tok.startsWith("-") || tok === "-") {
      throw new ControllerArgsError("IPP_ARGS_POSITIONAL", tok, `unexpected argument ${JSON.stringify(tok)}: ipcontroller takes only options (did you forget '--' before a value, or '=' in --name=value?)`);
    }
    if (!tok.startsWith("--")) {
      throw new ControllerArgsError("IPP_ARGS_UNKNOWN_OPTION", tok, `unknown option ${tok}: ipcontroller options are spelled with two dashes (--${tok.replace(/^-+/, "")})`);
    }
    const eq = tok.indexOf("=");
    const name = eq >= 0 ? tok.slice(2, eq) : tok.slice(2);
    const inlineValue = eq >= 0 ? tok.slice(eq + 1) : undefined;
    const spelled = `--${name}`;

    const takeValue = (): string => {
      if (inlineValue !== undefined) return inlineValue;
      const next = interpreted[i + 1];
      if (next === undefined || isOptionLike(next)) {
        throw new ControllerArgsError("IPP_ARGS_MISSING_VALUE", spelled, `${spelled} expects a value (${spelled}=VALUE or ${spelled} VALUE)`);
      }
      i++;
      return next;
    };

    const flag = FLAGS[name];
    const alias = ALIASES[name];
    // a name that is both a flag and an alias (log-to-file) is an alias when given a value
    const next = interpreted[i + 1];
    const flagWithValue = flag !== undefined && alias !== undefined &&
      (inlineValue !== undefined || (next !== undefined && !isOptionLike(next)));
    if (flag !== undefined && !flagWithValue) {
      if (inlineValue !== undefined) {
        throw new ControllerArgsError("IPP_ARGS_UNEXPECTED_VALUE", spelled, `${spelled} is a flag and takes no value`);
      }
      if (typeof flag.set === "function") flag.set(o, spelled);
      else for (const [key, raw] of flag.set) assign(key, raw, spelled);
      continue;
    }
    if (alias !== undefined) {
      assign(alias, takeValue(), spelled);
      continue;
    }
    const m = CLASS_TRAIT.exec(spelled);
    if (m) {
      const key = resolveTrait(`${m[1]}.${m[2]}`, spelled);
      assign(key, takeValue(), spelled);
      continue;
    }
    throw new ControllerArgsError("IPP_ARGS_UNKNOWN_OPTION", spelled, `unknown option ${spelled}${suggestAlias(name)}; see 'ipp-operator controller --help'`);
  }
  if (dd >= 0 && argv.length > dd + 1) {
    throw new ControllerArgsError("IPP_ARGS_POSITIONAL", argv[dd + 1]!, `unexpected argument ${JSON.stringify(argv[dd + 1])} after '--': ipcontroller takes only options`);
  }
  return finish(o);
}

function suggestAlias(name: string): string {
  const all = [...Object.keys(ALIASES), ...Object.keys(FLAGS)];
  const under = name.replace(/_/g, "-");
  if (all.includes(under)) return ` (did you mean --${under}?)`;
  const near = all.filter((a) => a.startsWith(name) || (name.length >= 3 && a.includes(name)));
  return near.length > 0 ? ` (did you mean ${near.slice(0, 3).map((a) => "--" + a).join(", ")}?)` : "";
}

function finish(o: Opts): ControllerOptions {
  // CurveZMQ replaces message signing unless a key was given explicitly (ipcontroller's rule)
  if (o.enableCurve && o.key === undefined && o.keyFile === undefined && !o.generateKey) {
    o.key = "";
    o.keyFlag = "--enable-curve";
  }
  if (o.key === "" && !o.enableCurve) {
    const flag = o.keyFlag ?? "--no-secure";
    throw unsupported(flag, "unsigned messages (an empty HMAC key) are only allowed together with CurveZMQ (--enable-curve); drop it to get a random key");
  }
  if ((o.curveSecretKey === undefined) !== (o.curvePublicKey === undefined)) {
    const missing = o.curveSecretKey === undefined ? "IPController.curve_secretkey ($IPP_CURVE_SECRETKEY)" : "IPController.curve_publickey ($IPP_CURVE_PUBLICKEY)";
    throw new ControllerArgsError("IPP_ARGS_MISSING_VALUE", missing, `a CurveZMQ key pair needs both keys; ${missing} is missing`);
  }
  for (const [name, k] of [["curve_secretkey", o.curveSecretKey], ["curve_publickey", o.curvePublicKey]] as const) {
    if (k !== undefined && !/^[0-9A-Za-z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/.test(k)) {
      throw badValue(`IPController.${name}`, "<hidden>", "a 40-character Z85 CurveZMQ key");
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Ports: ipcontroller's consumption order

export interface EnginePorts { control?: number; mux?: number; task?: number; iopub?: number; hb_ping?: number; hb_pong?: number; broadcast: Array<number | undefined> }
export interface ClientPorts { control?: number; mux?: number; task?: number; iopub?: number; notification?: number; broadcast?: number }
export interface PortAssignment {
  /** Shared by clients and engines. undefined = any free port. */
  registration?: number;
  engine: EnginePorts;
  client: ClientPorts;
}

/**
 * Which port each socket gets from the pools, in the order ipcontroller's init_hub draws them:
 * registration, then engine control, mux, task, iopub, hb_ping, hb_pong, the broadcast leaves (2 by default), then
 * client control, mux, task, iopub, notification, broadcast. Each engine/client draw takes the
 * side's own pool first, then the common pool; an exhausted pool means "any free port".
 */
export function assignPorts(pools: PortPools, broadcastLeaves = 2): PortAssignment {
  const idx = { common: 0, engine: 0, client: 0 };
  const next = (side: "engine" | "client"): number | undefined => {
    if (idx[side] < pools[side].length) return pools[side][idx[side]++];
    if (idx.common < pools.common.length) return pools.common[idx.common++];
    return undefined;
  };
  const registration = next("engine");
  const engine: EnginePorts = {
    control: next("engine"), mux: next("engine"), task: next("engine"), iopub: next("engine"),
    hb_ping: next("engine"), hb_pong: next("engine"), broadcast: Array.from({ length: broadcastLeaves }, () => next("engine")),
  };
  const client: ClientPorts = {
    control: next("client"), mux: next("client"), task: next("client"), iopub: next("client"),
    notification: next("client"), broadcast: next("client"),
  };
  const all = [registration, ...Object.values(engine).flat(), ...Object.values(client)].filter((p): p is number => p !== undefined);
  const dup = all.find((p, i) => all.indexOf(p) !== i);
  if (dup !== undefined) {
    throw new ControllerArgsError("IPP_ARGS_BAD_VALUE", "--ports", `port ${dup} is assigned to two sockets; give each port once across --ports, --engine-ports and --client-ports`);
  }
  return { registration, engine, client };
}

// ---------------------------------------------------------------------------------------------
// The catalogue (for --help, docs and tests)

export interface CatalogueEntry {
  /** Spellings: alias/flag first (if any), then --Class.trait. */
  spellings: string[];
  status: Status;
  why: string;
  ours: boolean;
}

/** Every option ipcontroller accepts (and ours), with its status here. */
export function optionCatalogue(): CatalogueEntry[] {
  const out: CatalogueEntry[] = [];
  const byTrait = new Map<string, string[]>();
  for (const [alias, trait] of Object.entries(ALIASES)) {
    byTrait.set(trait, [...(byTrait.get(trait) ?? []), `--${alias}`]);
  }
  for (const [name, f] of Object.entries(FLAGS)) {
    const status: Status = ["mongodb"].includes(name) ? "rejected"
      : ["usethreads", "init", "nodb"].includes(name) ? "meaningless" : "supported";
    out.push({ spellings: [`--${name}`], status, why: f.help, ours: OUR_FLAGS.has(name) });
  }
  for (const [trait, s] of Object.entries(SETTINGS)) {
    const aliases = byTrait.get(trait) ?? [];
    const ours = trait.startsWith("IppOperator.");
    out.push({ spellings: [...aliases, ...(ours ? [] : [`--${trait}`])], status: s.status, why: s.why, ours });
  }
  return out;
}

export function helpText(all: boolean): string {
  const lines = [
    "usage: ipp-operator controller [options]",
    "",
    "Start the ipyparallel-compatible controller. Accepts ipcontroller's options (ipyparallel 7.1, 8.x,",
    "9.x), so ipcluster / ipp.Cluster can start it with",
    "    c.LocalControllerLauncher.controller_cmd = [\"ipp-operator\", \"controller\"]",
    "Unknown options are errors; options for features not implemented here fail with the reason.",
    "",
    "Environment: IPP_PROFILE_DIR, IPP_CLUSTER_ID, IPP_SESSION_KEY (or IPP_KEY), IPP_ENABLE_CURVE=1,",
    "IPP_CURVE_SECRETKEY, IPP_CURVE_PUBLICKEY, IPYTHONDIR. The command line wins over the environment.",
    "",
    "Exit status: 0 after SIGINT/SIGTERM or a clean stop, 1 when the controller fails, 2 for bad options.",
    "",
    "options:",
  ];
  const row = (s: string, w: string) => lines.push(`  ${s.padEnd(34)} ${w}`);
  for (const [name, f] of Object.entries(FLAGS)) row(`--${name}`, f.help);
  for (const [alias, trait] of Object.entries(ALIASES)) {
    const s = SETTINGS[trait]!;
    row(`--${alias}=${trait.startsWith("IppOperator.") ? "VALUE" : trait}`, (s.status === "rejected" ? "rejected: " : s.status === "meaningless" ? "accepted, no effect: " : "") + s.why);
  }
  if (all) {
    lines.push("", "class options (--Class.trait=VALUE):");
    for (const [trait, s] of Object.entries(SETTINGS)) {
      if (trait.startsWith("IppOperator.")) continue;
      row(`--${trait}`, `[${s.status}] ${s.why}`);
    }
  } else {
    lines.push("", "Run with --help-all for every --Class.trait option and its status.");
  }
  return lines.join("\n") + "\n";
}
