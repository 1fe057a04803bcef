/**
 * Pure builder for the local engine launch: N `ipengine --mpi` ranks under one `mpiexec`, so the
 * engines share one MPI_COMM_WORLD and engine ids equal MPI ranks. Values in, values out; the
 * process handling lives in ./engines.ts.
 */
import { basename } from "node:path";

export type MpiFlavor = "openmpi" | "mpich";

export interface EngineCommandOptions {
  /** number of engines (MPI ranks), ≥ 1 */
  engines: number;
  /** the mpiexec executable (path or name on PATH) */
  mpiexec: string;
  /**
   * What runs each rank: either an `ipengine` executable (any file whose name starts with
   * "ipengine") or a Python interpreter that has ipyparallel (run as `-m ipyparallel.engine`).
   */
  python: string;
  /** the engine connection info (ipcontroller-engine.json contents), passed as IPP_CONNECTION_INFO */
  connectionInfo: object;
  /** also pass `--file=<path>` (engines older than ipyparallel 8 only read the file) */
  connectionFile?: string;
  flavor?: MpiFlavor;
  /** Open MPI refuses to run as root without --allow-run-as-root */
  asRoot?: boolean;
  /** allow more ranks than cores (Open MPI refuses otherwise) */
  oversubscribe?: boolean;
  /** ipengine's --log-level (default WARN: ipengine is very chatty at debug) */
  logLevel?: "DEBUG" | "INFO" | "WARN" | "ERROR" | "CRITICAL";
  /** extra arguments for each engine, appended after the defaults */
  engineArgs?: string[];
}

export interface EngineCommand {
  file: string;
  args: string[];
  /** variables to add to the launcher's environment */
  env: Record<string, string>;
}

export const CONNECTION_INFO_ENV = "IPP_CONNECTION_INFO";

/** true when `exe` is an ipengine script rather than a Python interpreter */
export function isIpengine(exe: string): boolean {
  return basename(exe).startsWith("ipengine");
}

export function buildEngineCommand(opts: EngineCommandOptions): EngineCommand {
  if (!Number.isInteger(opts.engines) || opts.engines < 1) {
    throw new RangeError(`engines must be an integer ≥ 1, got ${opts.engines}`);
  }
  const flavor = opts.flavor ?? "openmpi";
  const args: string[] = ["-n", String(opts.engines)];
  if (flavor === "openmpi") {
    if (opts.oversubscribe ?? true) args.push("--oversubscribe");
    if (opts.asRoot) args.push("--allow-run-as-root");
    // ranks on other hosts get the variable too; local ranks inherit it anyway
    args.push("-x", CONNECTION_INFO_ENV);
  }
  // MPICH's Hydra passes the whole environment by default. The key is never put on argv (ps shows it).
  if (isIpengine(opts.python)) args.push(opts.python);
  else args.push(opts.python, "-m", "ipyparallel.engine");
  args.push("--mpi", `--log-level=${opts.logLevel ?? "WARN"}`);
  if (opts.connectionFile !== undefined) args.push(`--file=${opts.connectionFile}`);
  args.push(...(opts.engineArgs ?? []));
  return {
    file: opts.mpiexec,
    args,
    env: { [CONNECTION_INFO_ENV]: JSON.stringify(opts.connectionInfo) },
  };
}
