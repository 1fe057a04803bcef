/**
 * Structured logging: a constant message plus key/value pairs, one JSON object per line on stderr
 * (or a caller-supplied sink). Loggers are passed in, never imported as a singleton, so tests can
 * capture them. Errors are logged with `error()` and carry the error's message and code.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
const LEVEL_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;
export type LogSink = (line: string) => void;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, err?: unknown, fields?: LogFields): void;
  /** A logger whose every line also carries `fields` (e.g. the component or object key). */
  with(fields: LogFields): Logger;
  readonly level: LogLevel;
}

export interface LoggerOptions {
  level?: LogLevel;
  sink?: LogSink;
  clock?: () => Date;
}

function errorFields(err: unknown): LogFields {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { error: err.message, ...(code !== undefined ? { errorCode: code } : {}) };
  }
  return err === undefined ? {} : { error: String(err) };
}

export function createLogger(opts: LoggerOptions = {}, bound: LogFields = {}): Logger {
  const level = opts.level ?? "info";
  const sink: LogSink = opts.sink ?? ((line) => process.stderr.write(line + "\n"));
  const clock = opts.clock ?? (() => new Date());
  const emit = (lvl: LogLevel, msg: string, fields: LogFields) => {
    if (LEVEL_ORDER[lvl] < LEVEL_ORDER[level]) return;
    sink(JSON.stringify({ ts: clock().toISOString(), level: lvl, msg, ...bound, ...fields }));
  };
  return {
    level,
    debug: (msg, fields = {}) => emit("debug", msg, fields),
    info: (msg, fields = {}) => emit("info", msg, fields),
    warn: (msg, fields = {}) => emit("warn", msg, fields),
    error: (msg, err, fields = {}) => emit("error", msg, { ...errorFields(err), ...fields }),
    with: (fields) => createLogger(opts, { ...bound, ...fields }),
  };
}

/** A logger that drops everything; for tests that do not look at logs. */
export const silentLogger: Logger = createLogger({ sink: () => {}, level: "error" });
