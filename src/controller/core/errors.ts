/**
 * Error contents in the shape ipyparallel's `error.wrap_exception()` produces, for replies the
 * controller itself builds (EngineError, ImpossibleDependency, TaskTimeout, hub_error, ...).
 */
export interface ErrorContent {
  [key: string]: unknown;
  status: "error";
  ename: string;
  evalue: string;
  traceback: string[];
  engine_info: Record<string, unknown>;
}

export function errorContent(ename: string, evalue: string, engineInfo: Record<string, unknown> = {}): ErrorContent {
  return {
    status: "error",
    ename,
    evalue,
    traceback: ["Traceback (most recent call last):\n", `ipyparallel.error.${ename}: ${evalue}\n`],
    engine_info: engineInfo,
  };
}

/** Python's repr of a str, as used in upstream messages ('...'). */
export const pyRepr = (s: string) => `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
