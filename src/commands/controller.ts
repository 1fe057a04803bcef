/**
 * `ipp-operator controller`: our controller as a drop-in for ipcontroller. Accepts ipcontroller's
 * options and environment (see ../controller/ipcontroller-args.ts), so ipcluster, ipp.Cluster and
 * JupyterLab's cluster panel start it through ipyparallel's own launchers with
 *   c.LocalControllerLauncher.controller_cmd = ["ipp-operator", "controller"]
 * It binds the sockets, writes <profile>/security/ipcontroller[-<cluster id>]-{client,engine}.json
 * (mode 0600, written atomically so a launcher never reads half a file), optionally serves HTTP
 * (/metrics, /healthz, /readyz, JSON API), and on SIGINT/SIGTERM (or a client's shutdown request)
 * removes the files (unless --reuse) and stops.
 *
 * `--metrics-port P [--metrics-host H]` (ours, not ipcontroller's) moves /metrics, /healthz and
 * /readyz to a listener of their own, so scrapers and probes can be let in without opening the
 * JSON API (which executes code on the engines); --http-port then serves only the API.
 *
 * Exit status: 0 clean stop; 1 the controller failed (e.g. a port in use); 2 bad options.
 * This module is the one place that reads the environment for the controller.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream, type WriteStream } from "node:fs";
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir, hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { Registry } from "prom-client";
import { collectProcessMetrics } from "../metrics/controller.ts";
import { curveKeyPair } from "zeromq";
import { createLogger, type Logger } from "../util/log.ts";
import {
  ControllerArgsError, assignPorts, helpText, parseControllerArgs, type ControllerOptions, type PortAssignment,
} from "../controller/ipcontroller-args.ts";
import { apiTokenFileName, connectionFileNames, connectionFilePaths, ensureProfileDirs, resolveProfile, type ConnectionFileNames, type ProfileLocation } from "../controller/profile.ts";
import { ConfigFileError, configFiles, configToArgv, findExtraConfigFile, loadConfigFiles } from "../controller/config-file.ts";
import { readReusedConnection, type ReusedConnection } from "../controller/reuse.ts";
import { DEFAULT_MAX_MESSAGE_BYTES, startController, type ChannelName, type ControllerConfig, type ControllerHandle } from "../controller/controller.ts";
import { writeConnectionFile, type ClientConnectionInfo, type EngineConnectionInfo } from "../controller/connection-files.ts";
import { startHttpServer, type HttpServerHandle } from "../controller/http/server.ts";
import { delegatedReviewer, kubernetesAuth, newApiToken, tokenAuth, type ApiAuth, type TokenReviewer } from "../controller/http/auth.ts";
import { kubeReviews, selfReviewer, type ApiServerAddress } from "../controller/http/kube-reviews.ts";
import { createKubeClient } from "../operator/kube/client.ts";
import { loadConnectionConfig } from "../operator/kube/config.ts";

const PROG = "ipp-operator controller";

/** Our listener options that ipcontroller does not have. */
export interface MetricsListener { port?: number; host?: string }

export const METRICS_HELP = [
  "",
  "metrics listener (ipp-operator only):",
  `  ${"--metrics-port=PORT".padEnd(34)} serve /metrics, /healthz and /readyz on a port of their own (0 = any free port);`,
  `  ${"".padEnd(34)} --http-port then serves only the JSON API`,
  `  ${"--metrics-host=ADDRESS".padEnd(34)} address of the metrics listener (default: --http-host, else 127.0.0.1)`,
].join("\n") + "\n";

/** Our JSON API options that ipcontroller does not have. */
export interface ApiListener {
  /** read the API token from this file (e.g. a mounted Secret) instead of generating one */
  tokenFile?: string;
  /** token (default): the cluster's API token only; kubernetes: also Kubernetes identities (TokenReview + SubjectAccessReview) */
  auth?: "token" | "kubernetes";
  /** the EngineCluster whose engineclusters/api a Kubernetes caller needs (kubernetes mode) */
  cluster?: { namespace: string; name: string };
  /**
   * who asks the Kubernetes API: delegated (default): the controller's own identity, with
   * TokenReview + SubjectAccessReview (needs system:auth-delegator); self: the caller's token, with
   * a SelfSubjectAccessReview (needs no credential of the controller's)
   */
  review?: "delegated" | "self";
  /** kubeconfig for the reviews (default: in-cluster service account, then $KUBECONFIG); in self mode only its server and CA are used */
  kubeconfig?: string;
  /** self mode in a pod without a service-account token: the API server's CA file (with $KUBERNETES_SERVICE_HOST/PORT) */
  ca?: string;
}

export const API_HELP = [
  "",
  "JSON API credential (ipp-operator only; the API is served with --http-port):",
  `  ${"--api-token-file=PATH".padEnd(34)} the API token (default: a new random token written next to the connection`,
  `  ${"".padEnd(34)} files as ipcontroller[-<cluster id>]-api-token, mode 0600)`,
  `  ${"--api-auth=token|kubernetes".padEnd(34)} kubernetes: also accept Kubernetes bearer tokens whose user may create`,
  `  ${"".padEnd(34)} engineclusters/api (group ipp.dev) of --api-auth-cluster (TokenReview + SubjectAccessReview)`,
  `  ${"--api-auth-cluster=NAMESPACE/NAME".padEnd(34)} the EngineCluster checked in kubernetes mode`,
  `  ${"--api-auth-review=delegated|self".padEnd(34)} delegated (default): TokenReview + SubjectAccessReview as the controller's`,
  `  ${"".padEnd(34)} identity (needs system:auth-delegator); self: a SelfSubjectAccessReview with the caller's token`,
  `  ${"--api-auth-kubeconfig=PATH".padEnd(34)} kubeconfig for the reviews (default: in-cluster, then $KUBECONFIG; self: its server and CA)`,
  `  ${"--api-auth-ca=PATH".padEnd(34)} self, in a pod without a service-account token: the API server's CA`,
  `  ${"".padEnd(34)} (server from $KUBERNETES_SERVICE_HOST/PORT)`,
].join("\n") + "\n";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Takes our own options (--metrics-port/--metrics-host, --api-*) out of argv (`--name=value` or
 * `--name value`, before any `--`); the rest goes to the ipcontroller parser. Throws
 * ControllerArgsError on a bad value.
 */
export function splitOwnArgs(argv: string[]): { rest: string[]; metrics: MetricsListener; api: ApiListener } {
  const metrics: MetricsListener = {};
  const api: ApiListener = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (tok === "--") { rest.push(...argv.slice(i)); break; }
    const m = /^--(metrics-port|metrics-host|api-token-file|api-auth|api-auth-cluster|api-auth-review|api-auth-kubeconfig|api-auth-ca)(?:=(.*))?$/s.exec(tok);
    if (!m) { rest.push(tok); continue; }
    let value = m[2];
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined || value.startsWith("--")) throw new ControllerArgsError("IPP_ARGS_MISSING_VALUE", tok, `${tok} needs a value`);
      i++;
    }
    const bad = (why: string) => new ControllerArgsError("IPP_ARGS_BAD_VALUE", tok, `--${m[1]}: ${why}`);
    switch (m[1]) {
      case "metrics-port":
        if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) throw bad(`${JSON.stringify(value)} is not a port in 0-65535`);
        metrics.port = Number(value);
        break;
      case "metrics-host":
        if (value === "") throw bad("an address");
        metrics.host = value;
        break;
      case "api-token-file":
        if (value === "") throw bad("a file path");
        api.tokenFile = value;
        break;
      case "api-auth":
        if (value !== "token" && value !== "kubernetes") throw bad(`token or kubernetes, not ${JSON.stringify(value)}`);
        api.auth = value;
        break;
      case "api-auth-cluster": {
        const parts = value.split("/");
        if (parts.length !== 2 || !DNS_LABEL.test(parts[0]!) || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(parts[1]!)) throw bad("NAMESPACE/NAME of an EngineCluster");
        api.cluster = { namespace: parts[0]!, name: parts[1]! };
        break;
      }
      case "api-auth-review":
        if (value !== "delegated" && value !== "self") throw bad(`delegated or self, not ${JSON.stringify(value)}`);
        api.review = value;
        break;
      case "api-auth-ca":
        if (value === "") throw bad("a file path");
        api.ca = value;
        break;
      default:
        if (value === "") throw bad("a file path");
        api.kubeconfig = value;
    }
  }
  if (api.auth === "kubernetes" && api.cluster === undefined) {
    throw new ControllerArgsError("IPP_ARGS_MISSING_VALUE", "--api-auth", "--api-auth=kubernetes needs --api-auth-cluster=NAMESPACE/NAME");
  }
  return { rest, metrics, api };
}

/** splitOwnArgs without the API options (they are taken out of `rest` all the same). */
export function splitMetricsArgs(argv: string[]): { rest: string[]; metrics: MetricsListener } {
  const { rest, metrics } = splitOwnArgs(argv);
  return { rest, metrics };
}

/** A random key in jupyter_client's new_id() format: 8 and 24 hex digits. */
export function newKey(): string {
  const b = randomBytes(16).toString("hex");
  return `${b.slice(0, 8)}-${b.slice(8)}`;
}

/** Our channel names for the ports ipcontroller's pools assign. */
export function channelPorts(a: PortAssignment): { ports: Partial<Record<ChannelName, number>>; leaves: Array<number | undefined> } {
  const ports: Partial<Record<ChannelName, number>> = {};
  const set = (k: ChannelName, v: number | undefined) => { if (v !== undefined) ports[k] = v; };
  set("registration", a.registration);
  set("control", a.client.control); set("mux", a.client.mux); set("task", a.client.task);
  set("iopub", a.client.iopub); set("notification", a.client.notification); set("broadcast", a.client.broadcast);
  set("engine_control", a.engine.control); set("engine_mux", a.engine.mux); set("engine_task", a.engine.task);
  set("engine_iopub", a.engine.iopub); set("hb_ping", a.engine.hb_ping); set("hb_pong", a.engine.hb_pong);
  set("engine_broadcast", a.engine.broadcast[0]);
  return { ports, leaves: a.engine.broadcast };
}

/** Write atomically (temp file + rename) with mode 0600, so a launcher never sees half a file. */
async function writeAtomically(path: string, info: ClientConnectionInfo | EngineConnectionInfo): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeConnectionFile(tmp, info);
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

async function removeFiles(paths: ConnectionFileNames, log: Logger): Promise<void> {
  for (const p of [paths.client, paths.engine]) {
    try {
      await rm(p, { force: true });
      log.debug("removed connection file", { path: p });
    } catch (err) {
      log.error("failed to remove connection file", err, { path: p });
    }
  }
}

async function cleanOldLogs(dir: string, log: Logger): Promise<void> {
  let names: string[] = [];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (/^ipcontroller-\d+\.(log|err|out)$/.test(n)) await rm(join(dir, n), { force: true }).catch((err) => log.warn("could not remove old log", { path: n, error: String(err) }));
  }
}

function showConfig(o: ControllerOptions, metrics: MetricsListener, loc: ProfileLocation, paths: ConnectionFileNames, json: boolean): string {
  const view = {
    profile: loc.name, profileDir: loc.dir, connectionFiles: paths, clusterId: o.clusterId, ip: o.ip,
    location: o.location ?? hostname(), ports: o.ports, heartbeatPeriodMs: o.heartbeatPeriodMs,
    maxHeartbeatMisses: o.maxHeartbeatMisses, taskScheme: o.taskScheme, hwm: o.hwm, broadcastDepth: o.broadcastDepth,
    maxMessageBytes: o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    reuse: o.reuse, restore: o.restore, enableCurve: o.enableCurve,
    db: o.db === "sqlitedb" ? { sqlite: join(o.sqlite.location ?? loc.dir, o.sqlite.filename), table: o.sqlite.table } : "dictdb",
    key: o.key !== undefined ? "<given>" : o.keyFile !== undefined ? `<from ${o.keyFile}>` : "<random>",
    logLevel: o.logLevel, httpPort: o.httpPort ?? null, httpHost: o.httpHost,
    metricsPort: metrics.port ?? null, metricsHost: metrics.host ?? o.httpHost, notes: o.notes,
  };
  if (json) return JSON.stringify(view, null, 2) + "\n";
  return Object.entries(view).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n") + "\n";
}

async function packageVersion(): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version?: string };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

interface Resolved {
  key: string;
  curve?: { publicKey: string; secretKey: string };
  ip: string;
  location: string;
  ports: PortAssignment;
  sshServer: string;
  engineSshServer: string;
}

async function resolveRuntime(o: ControllerOptions, reused: ReusedConnection | undefined): Promise<Resolved> {
  let key: string;
  if (reused) key = reused.key;
  else if (o.key !== undefined) key = o.key;
  else if (o.keyFile !== undefined) key = (await readFile(o.keyFile, "utf8")).trim();
  else key = newKey();
  let curve: Resolved["curve"];
  if (o.enableCurve) {
    if (o.curvePublicKey && o.curveSecretKey) curve = { publicKey: o.curvePublicKey, secretKey: o.curveSecretKey };
    else {
      const kp = curveKeyPair();
      curve = { publicKey: kp.publicKey, secretKey: kp.secretKey };
    }
  }
  return {
    key,
    ...(curve ? { curve } : {}),
    ip: reused ? reused.ip : o.ip,
    location: (reused?.location || o.location) ?? hostname(),
    ports: reused ? reused.ports : assignPorts(o.ports, 2 ** o.broadcastDepth),
    sshServer: o.sshServer || reused?.sshServer || "",
    engineSshServer: o.engineSshServer || reused?.engineSshServer || "",
  };
}

export async function run(argv: string[]): Promise<number> {
  let o: ControllerOptions;
  let metrics: MetricsListener;
  let api: ApiListener;
  try {
    const split = splitOwnArgs(argv);
    metrics = split.metrics;
    api = split.api;
    o = parseControllerArgs({ argv: split.rest, env: process.env, home: homedir() });
  } catch (err) {
    if (err instanceof ControllerArgsError) {
      process.stderr.write(`${PROG}: error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (o.mode === "help" || o.mode === "help-all") {
    process.stdout.write(helpText(o.mode === "help-all") + METRICS_HELP + API_HELP);
    return 0;
  }
  if (o.mode === "version") {
    process.stdout.write(`${await packageVersion()}\n`);
    return 0;
  }

  let loc = resolveProfile(o, { cwd: process.cwd(), home: homedir() });
  // the profile's ipcontroller_config.py, then --config=FILE (later files win, as in traitlets):
  // read by a Python helper, applied under the command line
  const cfgFiles = configFiles(loc.dir);
  if (o.extraConfigFile !== undefined) {
    const extra = findExtraConfigFile(o.extraConfigFile, process.cwd(), loc.dir);
    if (extra === undefined) process.stderr.write(`${PROG}: warning: config file not found, skipping: ${o.extraConfigFile}\n`);
    else if (!cfgFiles.includes(extra)) cfgFiles.push(extra);
  }
  if (cfgFiles.length > 0) {
    try {
      const argvFromConfig = configToArgv(await loadConfigFiles(cfgFiles));
      const source = cfgFiles.map((f) => basename(f)).join("+");
      o = parseControllerArgs({ argv: splitOwnArgs(argv).rest, env: process.env, home: homedir(), config: { argv: argvFromConfig, source } });
      loc = resolveProfile(o, { cwd: process.cwd(), home: homedir() });
    } catch (err) {
      if (err instanceof ControllerArgsError) {
        process.stderr.write(`${PROG}: error: ${err.message}\n`);
        return 2;
      }
      if (err instanceof ConfigFileError) {
        process.stderr.write(`${PROG}: error: ${err.message}\n`);
        return 1;
      }
      throw err;
    }
  }
  const names = connectionFileNames(o.clusterId, {
    ...(o.clientJsonFile ? { client: o.clientJsonFile } : {}),
    ...(o.engineJsonFile ? { engine: o.engineJsonFile } : {}),
  });
  const connDir = o.connectionDir ?? loc.securityDir;
  const paths = connectionFilePaths(connDir, names);
  if (o.mode === "show-config" || o.mode === "show-config-json") {
    process.stdout.write(showConfig(o, metrics, loc, paths, o.mode === "show-config-json"));
    return 0;
  }

  // profile directory, working directory, logging
  try {
    await ensureProfileDirs(loc, o.autoCreate);
    if (o.connectionDir) await mkdir(o.connectionDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    process.stderr.write(`${PROG}: error: ${(err as Error).message}\n`);
    return 1;
  }
  if (o.workDir) {
    try {
      process.chdir(o.workDir);
    } catch (err) {
      process.stderr.write(`${PROG}: error: --work-dir ${o.workDir}: ${(err as Error).message}\n`);
      return 1;
    }
  }
  let logStream: WriteStream | undefined;
  if (o.logToFile) {
    const file = join(loc.logDir, `ipcontroller-${o.clusterId}-${process.pid}.log`);
    process.stderr.write(`Sending logs to ${file}\n`);
    logStream = createWriteStream(file, { flags: "a" });
  }
  const stream = logStream;
  const log = createLogger({ level: o.logLevel, ...(stream ? { sink: (line: string) => { stream.write(line + "\n"); } } : {}) })
    .with({ component: "ipcontroller", ...(o.clusterId ? { clusterId: o.clusterId } : {}) });
  try {
    return await serve(o, metrics, api, loc, paths, log);
  } finally {
    if (logStream) await new Promise<void>((r) => logStream.end(r));
  }
}

/**
 * The API's authenticator and where its token came from. The token is read from --api-token-file,
 * or (with --reuse) from the token file a previous run left, else made afresh and written beside
 * the connection files with mode 0600 (`written`: ours to remove on stop).
 */
async function apiCredential(api: ApiListener, tokenPath: string, reuse: boolean, log: Logger): Promise<{ auth: ApiAuth; written?: string }> {
  let token: string | undefined;
  let written: string | undefined;
  if (api.tokenFile !== undefined) {
    token = (await readFile(api.tokenFile, "utf8")).trim();
  } else {
    if (reuse) token = (await readFile(tokenPath, "utf8").catch(() => "")).trim() || undefined;
    if (token === undefined) {
      token = newApiToken();
      const tmp = `${tokenPath}.${process.pid}.tmp`;
      await writeFile(tmp, token + "\n", { mode: 0o600 });
      await chmod(tmp, 0o600);
      await rename(tmp, tokenPath);
    }
    written = tokenPath;
  }
  if (api.auth !== "kubernetes") return { auth: tokenAuth(token), ...(written ? { written } : {}) };
  let reviewer: TokenReviewer;
  let server: string;
  if (api.review === "self") {
    let address: ApiServerAddress;
    if (api.kubeconfig !== undefined || api.ca === undefined) {
      const c = await loadConnectionConfig({ kubeconfig: api.kubeconfig, env: process.env });
      address = { server: c.server, ...(c.ca ? { ca: c.ca } : {}), ...(c.tlsServerName ? { tlsServerName: c.tlsServerName } : {}), ...(c.insecureSkipTLSVerify ? { insecureSkipTLSVerify: true } : {}) };
    } else {
      const host = process.env.KUBERNETES_SERVICE_HOST;
      if (!host) throw new Error("--api-auth-ca needs $KUBERNETES_SERVICE_HOST (and $KUBERNETES_SERVICE_PORT) for the API server's address");
      address = { server: `https://${host.includes(":") ? `[${host}]` : host}:${process.env.KUBERNETES_SERVICE_PORT ?? "443"}`, ca: await readFile(api.ca) };
    }
    reviewer = selfReviewer(address);
    server = address.server;
  } else {
    const client = createKubeClient(await loadConnectionConfig({ kubeconfig: api.kubeconfig, env: process.env }));
    reviewer = delegatedReviewer(kubeReviews(client));
    server = client.server;
  }
  log.info("API accepts Kubernetes identities", { cluster: `${api.cluster!.namespace}/${api.cluster!.name}`, review: api.review ?? "delegated", server });
  return { auth: kubernetesAuth({ token, cluster: api.cluster!, reviewer }), ...(written ? { written } : {}) };
}

async function serve(o: ControllerOptions, metrics: MetricsListener, api: ApiListener, loc: ProfileLocation, paths: ConnectionFileNames, log: Logger): Promise<number> {
  if (o.cleanLogs) await cleanOldLogs(loc.logDir, log);
  for (const n of o.notes) log.info("option has no effect here", { flag: n.flag, reason: n.reason });

  let reused: ReusedConnection | undefined;
  if (o.reuse) {
    const r = await readReusedConnection(paths);
    if (r.kind === "loaded") {
      reused = r.connection;
      log.info("reusing connection files", { client: paths.client, engine: paths.engine });
    } else if (r.kind === "invalid") {
      log.error("could not load connection files for reuse; writing new ones", r.error, { client: paths.client, engine: paths.engine });
    }
  }

  let rt: Resolved;
  try {
    rt = await resolveRuntime(o, reused);
  } catch (err) {
    log.error("could not read the HMAC key file", err, { keyFile: o.keyFile });
    return 1;
  }
  const { ports, leaves } = channelPorts(rt.ports);
  const config: ControllerConfig = {
    ip: rt.ip,
    location: rt.location,
    // every leaf as assigned (or as a reused engine file lists them), not consecutive from the first
    ports: { ...ports, engine_broadcast: leaves },
    key: rt.key,
    heartbeatPeriodMs: o.heartbeatPeriodMs,
    maxHeartbeatMisses: o.maxHeartbeatMisses,
    taskScheme: o.taskScheme,
    taskHwm: o.hwm,
    broadcastDepth: o.broadcastDepth,
    sshServer: rt.sshServer,
    engineSshServer: rt.engineSshServer,
    ...(o.registrationTimeoutS !== undefined ? { registrationTimeoutMs: o.registrationTimeoutS * 1000 } : {}),
    ...(o.dbRecordLimit !== undefined ? { dbRecordLimit: o.dbRecordLimit } : {}),
    ...(o.dbSizeLimit !== undefined ? { dbSizeLimitBytes: o.dbSizeLimit } : {}),
    ...(o.taskHistory !== undefined ? { taskHistory: o.taskHistory } : {}),
    ...(o.signatureHistory !== undefined ? { signatureHistory: o.signatureHistory } : {}),
    ...(o.maxMessageBytes !== undefined ? { maxMessageBytes: o.maxMessageBytes } : {}),
    ...(o.subscriberHwm !== undefined ? { subscriberHwm: o.subscriberHwm } : {}),
    ...(o.clientHwm !== undefined ? { clientHwm: o.clientHwm } : {}),
    ...(rt.curve ? { curve: rt.curve } : {}),
    engineState: {
      path: join(loc.logDir, `engines${o.clusterId}.json`), clusterId: o.clusterId, restore: o.restore,
      ...(o.restoreFallback !== undefined ? { fallback: o.restoreFallback } : {}),
    },
    ...(o.db === "sqlitedb" ? { sqlite: { path: join(o.sqlite.location ?? loc.dir, o.sqlite.filename), table: o.sqlite.table } } : {}),
  };

  const registry = new Registry();
  collectProcessMetrics(registry);
  let controller: ControllerHandle;
  try {
    controller = await startController(config, { logger: log, registry });
  } catch (err) {
    log.error("controller failed to start", err, { ip: rt.ip, ports });
    return 1;
  }

  // connection files: as ipcontroller, not rewritten when reused as they are
  const client = controller.clientConnection;
  const engine = controller.engineConnection;
  const boundLeaves = engine.broadcast;
  const leavesMoved = leaves.some((p, i) => p !== undefined && p !== boundLeaves[i]);
  if (leavesMoved) {
    log.warn("engine broadcast ports differ from the ones requested", { requested: leaves, bound: boundLeaves });
  }
  const writeFiles = !reused || leavesMoved;
  let filesWritten = false;
  let http: HttpServerHandle | undefined;
  let metricsHttp: HttpServerHandle | undefined;
  let tokenWritten: string | undefined;
  const removeToken = async () => {
    if (tokenWritten !== undefined && !o.reuse) await rm(tokenWritten, { force: true }).catch((err) => log.error("failed to remove the API token file", err, { path: tokenWritten }));
  };
  try {
    if (writeFiles) {
      await writeAtomically(paths.client, client);
      await writeAtomically(paths.engine, engine);
      filesWritten = true;
      log.info("wrote connection files", { client: paths.client, engine: paths.engine });
    }
    if (metrics.port !== undefined) {
      const host = metrics.host ?? o.httpHost;
      metricsHttp = await startHttpServer({ controller, registry, port: metrics.port, host, logger: log, serve: "metrics" });
      log.info("serving metrics and health over HTTP", { host, port: metricsHttp.port });
    }
    if (o.httpPort !== undefined) {
      const tokenPath = join(dirname(paths.client), apiTokenFileName(o.clusterId));
      let credential;
      try {
        credential = await apiCredential(api, tokenPath, o.reuse, log);
      } catch (err) {
        throw new Error(`the JSON API's credential: ${err instanceof Error ? err.message : String(err)}`);
      }
      tokenWritten = credential.written;
      if (tokenWritten !== undefined) log.info("wrote the API token file", { path: tokenWritten });
      const serveWhat = metricsHttp ? "api" : "all";
      http = await startHttpServer({ controller, registry, port: o.httpPort, host: o.httpHost, logger: log, serve: serveWhat, auth: credential.auth });
      log.info(metricsHttp ? "serving the API over HTTP" : "serving metrics and API over HTTP", { host: o.httpHost, port: http.port });
    }
  } catch (err) {
    log.error("controller failed to start", err);
    await http?.close().catch(() => {});
    await metricsHttp?.close().catch(() => {});
    await controller.stop();
    if (filesWritten && !o.reuse) await removeFiles(paths, log);
    await removeToken();
    return 1;
  }
  log.info("controller ready", {
    profileDir: loc.dir, client: paths.client, ip: rt.ip, location: rt.location, registration: client.registration,
    heartbeatPeriodMs: o.heartbeatPeriodMs, taskScheme: config.taskScheme, reuse: o.reuse,
  });

  // run until a signal or a client's shutdown request
  const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  let onSignal: (sig: NodeJS.Signals) => void = () => {};
  const reason = await new Promise<string>((resolveStop) => {
    onSignal = (sig: NodeJS.Signals) => resolveStop(sig);
    for (const sig of SIGNALS) process.on(sig, onSignal);
    controller.on("shutdown-requested", () => resolveStop("shutdown_request"));
  });
  for (const sig of SIGNALS) process.removeListener(sig, onSignal);
  // a second signal while stopping: say so, keep stopping
  const again = (sig: NodeJS.Signals) => log.warn("already stopping", { signal: sig });
  for (const sig of SIGNALS) process.on(sig, again);
  log.info("stopping", { reason });
  try {
    // files first: a launcher that kills us after its grace period still finds them gone
    if (!o.reuse) await removeFiles(paths, log);
    await removeToken();
    await http?.close();
    await metricsHttp?.close();
    await controller.stop();
    if ((o.shutdownDelaySeconds ?? 0) > 0 && reason !== "shutdown_request") {
      // Every socket is closed: this address now refuses connections and engines retry at once.
      // Staying up keeps it so until the Service has moved on (our readiness is gone already);
      // once the address is gone, a SYN routed to it gets no answer at all and the engine's
      // connect waits out TCP's retries (about 2 minutes) before it tries the replacement.
      log.info("stopped; staying up before exiting", { seconds: o.shutdownDelaySeconds });
      await new Promise((r) => setTimeout(r, o.shutdownDelaySeconds! * 1000));
    }
  } catch (err) {
    log.error("error while stopping", err);
    return 1;
  } finally {
    for (const sig of SIGNALS) process.removeListener(sig, again);
  }
  return 0;
}
