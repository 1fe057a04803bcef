/**
 * Runs an EngineCluster's launcher LOCALLY, as the launcher pod would run it: the environment is
 * the launcher Job's (rendered by src/backends/mpi/core), the script is native/engine's
 * entrypoint-launcher.sh, and the hostfile is the builder's with every worker replaced by
 * localhost (same total slots). Local mode (IPP_LOCAL=1) skips ssh and adds --oversubscribe and
 * --allow-run-as-root. Engines read IPP_CONNECTION_INFO: the connection Secret's engine JSON with
 * the controller's in-cluster DNS name replaced by a local address (the real controller you start
 * with `controllerConfigFromObjects`, i.e. the Secret's key and ports).
 *
 * The process tree (mpiexec, orted, ipengines and their nannies) is tracked by PID and stopped
 * completely by `stop()`.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MpiObjects } from "../../src/backends/mpi/core/builders.ts";
import { parseHostfile, renderHostfile } from "../../src/backends/mpi/core/hostfile.ts";
import { CLIENT_PORTS, CONNECTION_KEYS, ENGINE_PORTS, HOSTFILE_KEY } from "../../src/backends/mpi/core/names.ts";
import { descendants, isLive, readProc, readProcTable } from "../../src/local/proctree.ts";
import { REPO_ROOT, venvBin, type IppMajor } from "./paths.ts";

export const LAUNCHER_SCRIPT = join(REPO_ROOT, "native/engine/entrypoint-launcher.sh");

type J = Record<string, unknown>;
const secretValue = (secret: J, key: string): string => {
  const v = (secret.data as Record<string, string> | undefined)?.[key];
  if (v === undefined) throw new Error(`connection Secret has no key ${key}`);
  return Buffer.from(v, "base64").toString("utf8");
};

/** The HMAC key and fixed ports from the connection Secret, as a ControllerConfig subset. */
export function controllerConfigFromObjects(objects: MpiObjects, ip = "127.0.0.1") {
  return {
    ip,
    location: ip,
    key: secretValue(objects.connectionSecret, CONNECTION_KEYS.hmacKey),
    ports: {
      registration: ENGINE_PORTS.registration,
      control: CLIENT_PORTS.control, mux: CLIENT_PORTS.mux, task: CLIENT_PORTS.task, iopub: CLIENT_PORTS.iopub,
      notification: CLIENT_PORTS.notification, broadcast: CLIENT_PORTS.broadcast,
      engine_control: ENGINE_PORTS.control, engine_mux: ENGINE_PORTS.mux, engine_task: ENGINE_PORTS.task, engine_iopub: ENGINE_PORTS.iopub,
      hb_ping: ENGINE_PORTS.hb_ping, hb_pong: ENGINE_PORTS.hb_pong, engine_broadcast: ENGINE_PORTS.broadcast[0],
    },
  };
}

/** The connection Secret's engine JSON, pointed at `host` instead of the controller Service. */
export function localEngineConnection(objects: MpiObjects, host = "127.0.0.1"): J {
  const engine = JSON.parse(secretValue(objects.connectionSecret, CONNECTION_KEYS.engine)) as J;
  return { ...engine, interface: `tcp://${host}`, location: host };
}

export interface LocalLaunchOptions {
  objects: MpiObjects;
  /** Engine connection info; default: the Secret's, pointed at 127.0.0.1. */
  engineConnection?: J;
  /** ipyparallel major version whose venv provides ipengine (default 9), or an explicit path. */
  ipp?: IppMajor;
  ipengine?: string;
  mpiexec?: string;
  /** Extra environment for mpiexec (e.g. OMPI_MCA_* settings). */
  env?: NodeJS.ProcessEnv;
}

export interface RenderedLaunch {
  /** The command the script runs (mpiexec ... ipengine --mpi ...). */
  argv: string[];
  /** The environment the script gets: the launcher Job's, localised. */
  env: Record<string, string>;
  /** The hostfile as the builder rendered it, and its localhost version (written to hostfilePath). */
  hostfile: string;
  localHostfile: string;
  hostfilePath: string;
  workDir: string;
}

function launcherContainer(objects: MpiObjects): J {
  const spec = (objects.launcher as { spec?: { template?: { spec?: { containers?: J[] } } } }).spec;
  const c = spec?.template?.spec?.containers?.[0];
  if (c === undefined) throw new Error("launcher Job has no container");
  return c;
}

/** Render the launcher's command and environment for a local run (writes a localhost hostfile). */
export function renderLocalLaunch(opts: LocalLaunchOptions): RenderedLaunch {
  const { objects } = opts;
  const hostfile = (objects.hostfile.data as Record<string, string>)[HOSTFILE_KEY];
  if (hostfile === undefined) throw new Error("hostfile ConfigMap has no hostfile key");
  const total = parseHostfile(hostfile).reduce((n, h) => n + h.slots, 0);
  const localHostfile = renderHostfile(["localhost"], total, objects.shape.implementation);
  const workDir = mkdtempSync(join(tmpdir(), "ipp-launcher-"));
  const hostfilePath = join(workDir, "hostfile");
  writeFileSync(hostfilePath, localHostfile);

  const env: Record<string, string> = {};
  for (const e of (launcherContainer(objects).env ?? []) as J[]) {
    const name = String(e.name);
    if (typeof e.value === "string") env[name] = e.value;
    // the API server drops `value: ""` (omitempty): neither value nor valueFrom is an empty string
    else if (e.valueFrom === undefined) env[name] = "";
    else if (name !== "IPP_CONNECTION_INFO" && opts.env?.[name] === undefined) {
      throw new Error(`launcher env ${name} comes from a reference; give it a value in opts.env`);
    }
  }
  env.IPP_CONNECTION_INFO = JSON.stringify(opts.engineConnection ?? localEngineConnection(objects));
  env.IPP_HOSTFILE = hostfilePath;
  env.IPP_LOCAL = "1";
  env.IPP_IPENGINE = opts.ipengine ?? venvBin(opts.ipp ?? 9, "ipengine");
  env.IPP_MPIEXEC = opts.mpiexec ?? "mpiexec";

  const fullEnv = { ...process.env, ...opts.env, ...env, IPP_PRINT_ONLY: "1" };
  const out = execFileSync("bash", [LAUNCHER_SCRIPT], { env: fullEnv, encoding: "utf8", timeout: 10_000 });
  const argv = out.split("\n").filter((l) => l !== "");
  return { argv, env, hostfile, localHostfile, hostfilePath, workDir };
}

export interface LocalLauncher {
  readonly pid: number;
  readonly rendered: RenderedLaunch;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
  /** SIGTERM every process of the tree, SIGKILL what is left after graceMs; resolves when none is alive. */
  stop(graceMs?: number): Promise<{ survivors: number[] }>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Start the launcher script locally (it execs mpiexec). */
export function startLocalLauncher(opts: LocalLaunchOptions): LocalLauncher {
  const rendered = renderLocalLaunch(opts);
  const child = spawn("bash", [LAUNCHER_SCRIPT], {
    env: { ...process.env, ...opts.env, ...rendered.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let out = "";
  const keep = (b: Buffer) => { out = (out + b.toString("utf8")).slice(-32_768); };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const pid = child.pid ?? -1;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", () => resolve({ code: 127, signal: null }));
  });

  // Track the tree while it runs: nannies re-parent to init when their engine dies.
  const tracked = new Map<string, { pid: number; start: number }>();
  const self = pid > 0 ? readProc(pid) : undefined;
  if (self !== undefined) tracked.set(`${pid}:${self.start}`, { pid, start: self.start });
  const refresh = () => {
    if (pid <= 0) return;
    for (const p of descendants(readProcTable(), pid)) {
      if (p.state !== "Z") tracked.set(`${p.pid}:${p.start}`, { pid: p.pid, start: p.start });
    }
  };
  const timer = setInterval(refresh, 250);
  timer.unref();

  let stopping: Promise<{ survivors: number[] }> | undefined;
  const stop = (graceMs = 5_000) => (stopping ??= (async () => {
    refresh();
    clearInterval(timer);
    const alive = () => { const t = readProcTable(); return [...tracked.values()].filter((p) => isLive(t, p.pid, p.start)); };
    const kill = (sig: NodeJS.Signals) => { for (const p of alive()) { try { process.kill(p.pid, sig); } catch { /* gone */ } } };
    kill("SIGTERM");
    const deadline = Date.now() + graceMs;
    while (alive().length > 0 && Date.now() < deadline) await sleep(100);
    kill("SIGKILL");
    for (let i = 0; i < 50 && alive().length > 0; i++) await sleep(100);
    rmSync(rendered.workDir, { recursive: true, force: true });
    return { survivors: alive().map((p) => p.pid) };
  })());

  return { pid, rendered, exited, output: () => out, stop };
}
