/**
 * `ipp-operator local`: the embedded default. Runs our controller in-process, N ipengines under a
 * local mpiexec, and two HTTP listeners: /metrics, /healthz, /readyz (open) and the JSON API (only
 * with the API token, written beside the connection files with mode 0600, as
 * ipcontroller-api-token). Writes ipcontroller-client.json and prints the one Python line a
 * notebook needs. On SIGINT/SIGTERM it stops what it started (engines first, then the HTTP
 * servers and the controller), removes the connection and token files and returns 0.
 *
 * This module is where configuration is read (argv, IPP_PYTHON, HOME/IPYTHONDIR).
 */
import { randomUUID } from "node:crypto";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { homedir, hostname, availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { Registry } from "prom-client";
import { collectProcessMetrics } from "../metrics/controller.ts";
import { startController, type ControllerHandle } from "../controller/controller.ts";
import { writeConnectionFiles } from "../controller/connection-files.ts";
import { apiTokenFileName, resolveProfile } from "../controller/profile.ts";
import { startHttpServer, type HttpServerHandle } from "../controller/http/server.ts";
import { newApiToken, tokenAuth } from "../controller/http/auth.ts";
import { launchEngines, type EngineGroup, type LauncherExit } from "../local/engines.ts";
import { createLogger, type LogLevel } from "../util/log.ts";

const SCHEMES = ["leastload", "lru", "plainrandom", "twobin", "weighted"] as const;
type Scheme = (typeof SCHEMES)[number];
const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

export const USAGE = `usage: ipp-operator local [options]

Runs the controller in-process and N ipengines under a local mpiexec (one MPI world: engine id =
MPI rank), writes ipcontroller-client.json and prints the Python line that connects to it.
Ctrl-C / SIGTERM stops everything and removes the connection files.

options:
  --engines N          number of engines (MPI ranks) (default: number of CPUs)
  --ip ADDR            address the controller binds and engines connect to (default: 127.0.0.1)
  --out DIR            write the connection files into DIR
  --profile-dir DIR    write them into DIR/security (an IPython profile directory)
  --profile NAME       profile name when neither --out nor --profile-dir is given (default: default);
                       files go to <ipython dir>/profile_NAME/security, so ipp.Client(profile=NAME) works
  --http-port P        port of the JSON API, /api/v1 (default: 0 = any free port); every request needs
                       Authorization: Bearer <token>, the token being in ipcontroller-api-token
                       beside the connection files (mode 0600)
  --http-host ADDR     bind address of both HTTP listeners (default: 127.0.0.1)
  --metrics-port P     port of /metrics, /healthz and /readyz, open without a token (default: 0 = any free port)
  --python PATH        ipengine executable, or a Python interpreter that has ipyparallel
                       (default: $IPP_PYTHON, else ipengine on PATH)
  --mpiexec PATH       mpiexec to use (default: mpiexec on PATH)
  --scheme NAME        task scheme: ${SCHEMES.join("|")} (default: leastload)
  --heartbeat-ms MS    heartbeat period (default: 3000)
  --timeout SECONDS    give up when not all engines registered in time (default: 300)
  --grace-ms MS        SIGTERM-to-SIGKILL grace when stopping engines (default: 5000)
  --log-level LEVEL    ${LEVELS.join("|")} (default: warn)
  -h, --help           show this help
`;

export interface LocalOptions {
  engines: number;
  ip: string;
  outDir: string;
  http: { port: number; host: string; metricsPort: number };
  python: string;
  mpiexec: string;
  scheme: Scheme;
  heartbeatMs: number;
  timeoutMs: number;
  graceMs: number;
  logLevel: LogLevel;
}

export class UsageError extends Error {
  readonly code = "usage";
}

function intOpt(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name}: expected an integer, got '${v}'`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`--${name}: must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** argv + environment → options; throws UsageError. Returns "help" for --help. */
export function parseLocalArgs(
  argv: string[], env: { IPP_PYTHON?: string; IPYTHONDIR?: string; HOME?: string; cpus?: number; cwd?: string },
): LocalOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        engines: { type: "string", short: "n" },
        ip: { type: "string" },
        out: { type: "string" },
        "profile-dir": { type: "string" },
        profile: { type: "string" },
        "http-port": { type: "string" },
        "http-host": { type: "string" },
        "metrics-port": { type: "string" },
        python: { type: "string" },
        mpiexec: { type: "string" },
        scheme: { type: "string" },
        "heartbeat-ms": { type: "string" },
        timeout: { type: "string" },
        "grace-ms": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const v = parsed.values;
  if (v.help) return "help";
  const scheme = (v.scheme ?? "leastload") as Scheme;
  if (!SCHEMES.includes(scheme)) throw new UsageError(`--scheme: one of ${SCHEMES.join(", ")}, got '${v.scheme}'`);
  const logLevel = (v["log-level"] ?? "warn") as LogLevel;
  if (!LEVELS.includes(logLevel)) throw new UsageError(`--log-level: one of ${LEVELS.join(", ")}, got '${v["log-level"]}'`);
  const given = [v.out !== undefined && "--out", v["profile-dir"] !== undefined && "--profile-dir", v.profile !== undefined && "--profile"].filter(Boolean);
  if (given.length > 1) throw new UsageError(`${given.join(" and ")} are exclusive`);
  if (v.ip !== undefined && v.ip.trim() === "") throw new UsageError("--ip: empty");
  const home = env.HOME ?? homedir();
  const cwd = env.cwd ?? process.cwd();
  const outDir = v.out !== undefined
    ? resolveProfile({ profile: "default", profileDir: v.out }, { cwd, home }).dir
    : resolveProfile({ profile: v.profile ?? "default", profileDir: v["profile-dir"], ipythonDir: env.IPYTHONDIR }, { cwd, home }).securityDir;
  return {
    engines: intOpt("engines", v.engines, env.cpus ?? 1, 1, 4096),
    ip: v.ip ?? "127.0.0.1",
    outDir,
    http: {
      port: intOpt("http-port", v["http-port"], 0, 0, 65535), host: v["http-host"] ?? "127.0.0.1",
      metricsPort: intOpt("metrics-port", v["metrics-port"], 0, 0, 65535),
    },
    python: v.python ?? env.IPP_PYTHON ?? "ipengine",
    mpiexec: v.mpiexec ?? "mpiexec",
    scheme,
    heartbeatMs: intOpt("heartbeat-ms", v["heartbeat-ms"], 3000, 100, 600_000),
    timeoutMs: intOpt("timeout", v.timeout, 300, 1, 86_400) * 1000,
    graceMs: intOpt("grace-ms", v["grace-ms"], 5000, 0, 600_000),
    logLevel,
  };
}

/** How to call the JSON API: a curl line that reads the token from its file (never prints it). */
export function curlLine(tokenFile: string, apiBase: string): string {
  const quoted = `'${tokenFile.replace(/'/g, "'\\''")}'`;
  return `curl -H "Authorization: Bearer $(cat ${quoted})" ${apiBase}/api/v1/engines`;
}

/** Write the token with mode 0600 (temp file + rename: never readable half-written or wider). */
async function writeTokenFile(path: string, token: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, token + "\n", { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

/** The line a notebook runs. The path is positional: ipyparallel 9.2 ignores the url_file keyword. */
export function pythonLine(clientFile: string): string {
  return `import ipyparallel as ipp; rc = ipp.Client(${JSON.stringify(clientFile)})`;
}

function describeExit(e: LauncherExit): string {
  return e.signal ? `killed by ${e.signal}` : `exit status ${e.code}`;
}

export async function run(argv: string[]): Promise<number> {
  let opts: LocalOptions | "help";
  try {
    opts = parseLocalArgs(argv, {
      IPP_PYTHON: process.env.IPP_PYTHON, IPYTHONDIR: process.env.IPYTHONDIR, HOME: process.env.HOME,
      cpus: availableParallelism(), cwd: process.cwd(),
    });
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`ipp-operator local: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (opts === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  const o = opts;
  const logger = createLogger({ level: o.logLevel }).with({ process: "local" });
  const say = (line: string) => process.stderr.write(`${line}\n`);
  const registry = new Registry();
  collectProcessMetrics(registry);

  // Signals: record the first one; everything below checks it at each step.
  let signalled: NodeJS.Signals | undefined;
  let wake: () => void = () => {};
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) return;
    signalled = sig;
    say(`${sig}: stopping engines and controller`);
    wake();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let controller: ControllerHandle | undefined;
  let http: HttpServerHandle | undefined;
  let metricsHttp: HttpServerHandle | undefined;
  let group: EngineGroup | undefined;
  let files: { client: string; engine: string } | undefined;
  let tokenFile: string | undefined;
  let code = 0;
  try {
    controller = await startController(
      { ip: o.ip, location: hostname(), key: randomUUID(), heartbeatPeriodMs: o.heartbeatMs, taskScheme: o.scheme, expectedEngines: o.engines },
      { logger, registry },
    );
    await mkdir(o.outDir, { recursive: true, mode: 0o700 }); // the mode applies only to directories it creates
    files = await writeConnectionFiles(o.outDir, controller.clientConnection, controller.engineConnection);
    const token = newApiToken();
    tokenFile = join(o.outDir, apiTokenFileName(""));
    await writeTokenFile(tokenFile, token);
    metricsHttp = await startHttpServer({ controller, registry, port: o.http.metricsPort, host: o.http.host, logger, serve: "metrics" });
    http = await startHttpServer({ controller, registry, port: o.http.port, host: o.http.host, logger, serve: "api", auth: tokenAuth(token) });
    const apiBase = `http://${o.http.host}:${http.port}`;
    say(`controller up; connection file ${files.client}`);
    say(`metrics: http://${o.http.host}:${metricsHttp.port}/metrics (and /healthz, /readyz)`);
    say(`JSON API: ${apiBase}/api/v1 with the token in ${tokenFile}, e.g.\n  ${curlLine(tokenFile, apiBase)}`);

    const registered = new Set<number>();
    let lastShown = -1;
    const show = () => {
      if (registered.size !== lastShown) {
        lastShown = registered.size;
        say(`engines ${registered.size}/${o.engines} registered`);
      }
    };
    controller.on("engine-registered", (e) => {
      registered.add(e.id);
      show();
      if (registered.size >= o.engines) wake();
    });
    controller.on("engine-unregistered", (e) => {
      registered.delete(e.id);
      show();
    });
    controller.on("shutdown-requested", () => onSignal("SIGTERM"));

    group = launchEngines({
      engines: o.engines, mpiexec: o.mpiexec, python: o.python, connectionInfo: controller.engineConnection,
      connectionFile: files.engine, asRoot: process.getuid?.() === 0, oversubscribe: true,
    }, { logger });
    show();

    let launcherExit: LauncherExit | undefined;
    void group.exited.then((e) => {
      launcherExit = e;
      wake();
    });
    const deadline = Date.now() + o.timeoutMs;
    // phase 1: until every engine registered (or failure / signal / timeout)
    while (!signalled && !launcherExit && registered.size < o.engines && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.min(1000, Math.max(0, deadline - Date.now()))).unref?.();
      });
    }
    if (!signalled) {
      if (launcherExit) {
        say(`mpiexec ended before all engines registered (${registered.size}/${o.engines}): ${describeExit(launcherExit)}`);
        say(`--- last output of mpiexec and the engines ---\n${group.outputTail().trimEnd()}\n---`);
        code = 1;
      } else if (registered.size < o.engines) {
        say(`only ${registered.size}/${o.engines} engines registered within ${o.timeoutMs / 1000} s; giving up`);
        say(`--- last output of mpiexec and the engines ---\n${group.outputTail().trimEnd()}\n---`);
        code = 1;
      } else {
        say(`all ${o.engines} engines registered; Python:`);
        process.stdout.write(`${pythonLine(files.client)}\n`);
        // phase 2: serve until a signal, or until the engines go away
        while (!signalled && !launcherExit) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
        if (!signalled && launcherExit) {
          say(`mpiexec ended while serving: ${describeExit(launcherExit)}`);
          say(`--- last output of mpiexec and the engines ---\n${group.outputTail().trimEnd()}\n---`);
          code = 1;
        }
      }
    }
  } catch (err) {
    logger.error("local cluster failed", err);
    say(`ipp-operator local: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  } finally {
    // engines first, then the HTTP server and the controller, then the files
    if (group) {
      const report = await group.stop({ graceMs: o.graceMs });
      if (report.survivors.length > 0) {
        say(`processes still alive after SIGKILL: ${report.survivors.join(" ")}`);
        code = code || 1;
      }
    }
    if (http) await http.close();
    if (metricsHttp) await metricsHttp.close();
    if (controller) await controller.stop();
    if (files) {
      await rm(files.client, { force: true });
      await rm(files.engine, { force: true });
    }
    if (tokenFile) await rm(tokenFile, { force: true });
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    say("stopped");
  }
  return code;
}
