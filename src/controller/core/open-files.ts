/**
 * How many engines a controller's open-files limit holds. Every engine keeps 8 TCP connections to
 * the controller (registration, mux, task, broadcast leaf, control, iopub, heartbeat ping and pong),
 * each a file descriptor in the controller's process; the controller itself needs a few dozen more
 * (its sockets' mailboxes, listeners, HTTP, logs), counted generously as a margin. Past the limit
 * the kernel refuses the connections an engine opens (EMFILE at accept): the engine's registration
 * or its heart never reaches the controller, and it is lost without a word from either side, so
 * the controller says at start-up what its limit holds, and warns as the engines approach it.
 */
export const DESCRIPTORS_PER_ENGINE = 8;
export const DESCRIPTOR_MARGIN = 256;

/** RLIMIT_NOFILE (Infinity = unlimited). Node raises its soft limit to the hard one as it starts. */
export interface OpenFilesLimit {
  soft: number;
  hard: number;
}

/** Descriptors `engines` engines need in the controller's process. */
export function descriptorsFor(engines: number): number {
  return DESCRIPTORS_PER_ENGINE * engines + DESCRIPTOR_MARGIN;
}

/** Engines a limit holds. */
export function enginesWithin(limit: number): number {
  if (!Number.isFinite(limit)) return Infinity;
  return Math.max(0, Math.floor((limit - DESCRIPTOR_MARGIN) / DESCRIPTORS_PER_ENGINE));
}

export interface LimitAdvice {
  level: "info" | "warn";
  message: string;
  fields: Record<string, number | string>;
}

const HOW_TO_RAISE = "raise it where the controller is started: `ulimit -n` in its shell or batch script (up to the hard limit, "
  + "`ulimit -Hn`; only root with CAP_SYS_RESOURCE raises that), LimitNOFILE= for a systemd service, the container runtime's "
  + "nofile ulimit in Kubernetes";

/** What to log at start-up about the limit, given the engines expected (if known). */
export function startupAdvice(limit: OpenFilesLimit, expectedEngines?: number): LimitAdvice {
  const holds = enginesWithin(limit.soft);
  const fields: Record<string, number | string> = {
    soft: Number.isFinite(limit.soft) ? limit.soft : "unlimited",
    hard: Number.isFinite(limit.hard) ? limit.hard : "unlimited",
    engines: Number.isFinite(holds) ? holds : "unlimited",
  };
  if (expectedEngines !== undefined && expectedEngines > holds) {
    return {
      level: "warn",
      message: `the open-files limit (${fields.soft}) holds about ${holds} engines, ${expectedEngines} are expected and need `
        + `${descriptorsFor(expectedEngines)} (${DESCRIPTORS_PER_ENGINE} connections each plus ${DESCRIPTOR_MARGIN}): the engines past it `
        + `cannot connect; ${HOW_TO_RAISE}`,
      fields: { ...fields, expected: expectedEngines, needed: descriptorsFor(expectedEngines) },
    };
  }
  return { level: "info", message: "open-files limit", fields };
}

/**
 * A warning when the registered engines reach 90 % of what the limit holds (once per crossing), else
 * null. `previous` is the count before this change.
 */
export function nearLimitAdvice(limit: OpenFilesLimit, previous: number, now: number): LimitAdvice | null {
  const holds = enginesWithin(limit.soft);
  if (!Number.isFinite(holds)) return null;
  const mark = Math.floor(holds * 0.9);
  if (!(previous < mark && now >= mark)) return null;
  return {
    level: "warn",
    message: `${now} engines registered: the open-files limit (${limit.soft}) holds about ${holds}; more engines will not `
      + `be able to connect; ${HOW_TO_RAISE}`,
    fields: { registered: now, soft: limit.soft, engines: holds },
  };
}
