/**
 * The controller's HTTP server (node:http, no framework): /metrics, /healthz, /readyz and a small
 * JSON API for tools that are not Python. The API is an internal ZeroMQ client of its own
 * controller (./ipp-client.ts), so it goes through the same sockets a Python client uses.
 *
 *   GET  /api/v1/engines
 *   POST /api/v1/execute        {code, targets?: "all" | number[], timeoutMs?}
 *   PUT  /api/v1/arrays/<name>  JSON {data, dtype?, targets?} or raw little-endian bytes
 *                               (Content-Type: application/octet-stream; ?dtype=float64|int64&targets=0,1)
 *   GET  /api/v1/arrays/<name>  JSON, or raw bytes with Accept: application/octet-stream
 *
 * Every /api/ request needs a credential (./auth.ts), checked before anything else is read:
 * without one it gets 401 (403 when a Kubernetes identity lacks the API verb) and nothing runs.
 * Refusals are counted in ipp_controller_api_auth_failures_total{reason} and logged at most once
 * per interval, never with the token.
 *
 * Every error is a JSON body {error, message} with a stable `error` code.
 *
 * `serve` splits the routes over two listeners: "metrics" serves only /metrics, /healthz and
 * /readyz (for scrapers and probes, no credential), "api" only /api/v1/* (it executes code on the
 * engines); "all" (the default) serves both on one port.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { z } from "zod";
import type { Logger } from "../../util/log.ts";
import { createApiMetrics } from "../../metrics/controller.ts";
import { RefusalLog, type ApiAuth } from "./auth.ts";
import {
  DTYPES, ITEM_BYTES, decodeArray, encodeArray, gatherApplyBuffers, isPythonName, parseGatherResult, partition,
  scatterApplyBuffers, type Dtype,
} from "./arrays.ts";
import { EngineUnknownError, IppClient, type ApplyOutcome, type ClientConnection } from "./ipp-client.ts";

/** What the server needs from a controller (ControllerHandle satisfies it). */
export interface HttpControllerView {
  readonly clientConnection: ClientConnection;
  engines(): ReadonlyArray<{
    id: number; uuid: string; alive: boolean; registeredAt: Date; queueDepth: number; missedBeats: number;
  }>;
  /** The id the next new engine gets (absent: not reported). */
  nextEngineId?(): number;
  /** false while the controller's sockets are not bound (absent: a started controller is ready) */
  ready?(): boolean;
}

export interface HttpServerOptions {
  controller: HttpControllerView;
  registry: Registry;
  port: number;
  host?: string;
  logger: Logger;
  /** cap for raw (octet-stream) bodies; default 256 MiB */
  maxBodyBytes?: number;
  /** cap for JSON bodies; default 64 MiB */
  maxJsonBytes?: number;
  /** default per-engine timeout for API calls; default 60 s */
  defaultTimeoutMs?: number;
  /** which routes this listener serves; default "all" */
  serve?: HttpServe;
  /** who may call /api/ routes; required unless serve is "metrics" */
  auth?: ApiAuth;
  /** refused API requests are logged at most once per this interval; default 60 s */
  refusalLogIntervalMs?: number;
}

export type HttpServe = "all" | "metrics" | "api";

export interface HttpServerHandle {
  readonly port: number;
  close(): Promise<void>;
}

export class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly refused = false) {
    super(message);
  }
}

/** Refused requests' bodies up to this size are read and discarded rather than cut off. */
const DRAIN_LIMIT = 1024 * 1024;

const REFUSAL_CODES = { 401: "unauthorized", 403: "forbidden", 503: "auth_unavailable" } as const;

const targetsSchema = z.union([
  z.literal("all"),
  z.array(z.number().int().min(0)).min(1).max(4096)
    .refine((a) => new Set(a).size === a.length, { message: "targets must not repeat" }),
]);
const timeoutSchema = z.number().int().min(1).max(3_600_000);

export const executeBody = z.strictObject({
  code: z.string().max(1_000_000),
  targets: targetsSchema.optional(),
  timeoutMs: timeoutSchema.optional(),
});

const dtypeSchema = z.enum(DTYPES as [Dtype, ...Dtype[]]);
export const scatterJsonBody = z.strictObject({
  data: z.array(z.number()),
  dtype: dtypeSchema.default("float64"),
  targets: targetsSchema.optional(),
  timeoutMs: timeoutSchema.optional(),
});

export const arrayQuery = z.strictObject({
  dtype: dtypeSchema.optional(),
  targets: z.string().regex(/^(all|\d+(,\d+)*)$/, "targets: 'all' or comma-separated engine ids").optional(),
  timeoutMs: z.coerce.number().int().min(1).max(3_600_000).optional(),
});

function zodMessage(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.length ? i.path.join(".") : "body"}: ${i.message}`).join("; ");
}

function parseQueryTargets(s: string | undefined): "all" | number[] | undefined {
  if (s === undefined || s === "all") return s;
  const ids = s.split(",").map(Number);
  if (new Set(ids).size !== ids.length) throw new HttpError(400, "validation_failed", "targets must not repeat");
  return ids;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: code, message });
}

function mediaType(req: IncomingMessage): string {
  return (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    throw new HttpError(413, "body_too_large", `request body of ${declared} bytes is over the ${limit}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) throw new HttpError(413, "body_too_large", `request body is over the ${limit}-byte limit`);
    chunks.push(b);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}

function parseJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString("utf8"));
  } catch (err) {
    throw new HttpError(400, "invalid_json", `body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The request's path without its query (the query is the caller's; keep it out of logs). */
const pathOf = (req: IncomingMessage): string => (req.url ?? "").split("?")[0]!;

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServerHandle> {
  const log = opts.logger.with({ component: "http" });
  const maxBody = opts.maxBodyBytes ?? 256 * 1024 * 1024;
  const maxJson = opts.maxJsonBytes ?? 64 * 1024 * 1024;
  const defaultTimeout = opts.defaultTimeoutMs ?? 60_000;
  const { controller, registry } = opts;
  const serve = opts.serve ?? "all";
  const auth = opts.auth;
  if (serve !== "metrics" && auth === undefined) throw new Error("startHttpServer: the JSON API needs an authenticator (opts.auth)");
  const apiMetrics = serve !== "metrics" ? createApiMetrics(registry) : undefined;
  const refusals = new RefusalLog((counts, remote) => {
    log.warn("API requests refused", { counts, lastRemote: remote, intervalMs: opts.refusalLogIntervalMs ?? 60_000 });
  }, opts.refusalLogIntervalMs ?? 60_000);

  let clientPromise: Promise<IppClient> | undefined;
  const apiClient = (): Promise<IppClient> => {
    clientPromise ??= IppClient.connect(controller.clientConnection, { logger: opts.logger }).catch((err: unknown) => {
      clientPromise = undefined;
      throw new HttpError(502, "controller_unreachable", `cannot reach the controller: ${err instanceof Error ? err.message : String(err)}`);
    });
    return clientPromise;
  };

  /** resolve "all"/ids to registered engine ids (ascending for "all") */
  const resolveTargets = async (client: IppClient, targets: "all" | number[] | undefined): Promise<number[]> => {
    let known = client.engines();
    if (targets !== undefined && targets !== "all" && targets.some((t) => !known.has(t))) {
      known = await client.refreshEngines(); // a notification may still be in flight
    }
    if (targets === undefined || targets === "all") {
      if (known.size === 0) known = await client.refreshEngines();
      const ids = [...known.keys()].sort((a, b) => a - b);
      if (ids.length === 0) throw new HttpError(409, "no_engines", "no engines are registered");
      return ids;
    }
    const missing = targets.filter((t) => !known.has(t));
    if (missing.length > 0) throw new HttpError(404, "unknown_engine", `no registered engine with id ${missing.join(", ")}`);
    return targets;
  };

  const applyFailure = (name: string, failed: ApplyOutcome[]): HttpError => {
    const first = failed[0]!;
    if (first.status === "timeout") {
      return new HttpError(504, "timeout", `engine ${first.engine} did not answer in time`);
    }
    const ename = String(first.content.ename ?? "");
    const evalue = String(first.content.evalue ?? first.status);
    if (ename === "NameError") return new HttpError(404, "array_not_found", `engine ${first.engine}: '${name}' is not defined`);
    return new HttpError(422, "engine_error", `engine ${first.engine}: ${ename}: ${evalue}`);
  };

  const handleExecute = async (req: IncomingMessage, res: ServerResponse) => {
    if (mediaType(req) !== "application/json") throw new HttpError(415, "unsupported_media_type", "POST /api/v1/execute takes application/json");
    const parsed = executeBody.safeParse(parseJson(await readBody(req, maxJson)));
    if (!parsed.success) throw new HttpError(400, "validation_failed", zodMessage(parsed.error));
    const client = await apiClient();
    const targets = await resolveTargets(client, parsed.data.targets);
    const timeoutMs = parsed.data.timeoutMs ?? defaultTimeout;
    const results = await Promise.all(targets.map((t) => client.execute(t, parsed.data.code, timeoutMs)));
    sendJson(res, 200, { results });
  };

  const handleScatter = async (name: string, req: IncomingMessage, res: ServerResponse, query: URLSearchParams) => {
    const q = arrayQuery.safeParse(Object.fromEntries(query));
    if (!q.success) throw new HttpError(400, "validation_failed", zodMessage(q.error));
    let data: Buffer;
    let dtype: Dtype;
    let targetsSpec: "all" | number[] | undefined;
    let timeoutMs = q.data.timeoutMs ?? defaultTimeout;
    const type = mediaType(req);
    if (type === "application/octet-stream") {
      data = await readBody(req, maxBody);
      dtype = q.data.dtype ?? "float64";
      if (data.length % ITEM_BYTES !== 0) {
        throw new HttpError(400, "validation_failed", `raw body length ${data.length} is not a multiple of ${ITEM_BYTES} bytes`);
      }
      targetsSpec = parseQueryTargets(q.data.targets);
    } else if (type === "application/json") {
      const body = scatterJsonBody.safeParse(parseJson(await readBody(req, maxJson)));
      if (!body.success) throw new HttpError(400, "validation_failed", zodMessage(body.error));
      dtype = body.data.dtype;
      try {
        data = encodeArray(body.data.data, dtype);
      } catch (err) {
        throw new HttpError(400, "validation_failed", err instanceof Error ? err.message : String(err));
      }
      targetsSpec = body.data.targets ?? parseQueryTargets(q.data.targets);
      timeoutMs = body.data.timeoutMs ?? timeoutMs;
    } else {
      throw new HttpError(415, "unsupported_media_type", "PUT /api/v1/arrays/<name> takes application/json or application/octet-stream");
    }
    const client = await apiClient();
    const targets = await resolveTargets(client, targetsSpec);
    const n = data.length / ITEM_BYTES;
    const parts = targets.map((engine, i) => {
      const [lo, hi] = partition(n, i, targets.length);
      return { engine, offset: lo, length: hi - lo, bytes: data.subarray(lo * ITEM_BYTES, hi * ITEM_BYTES) };
    });
    const outcomes = await Promise.all(parts.map((p) => client.apply(p.engine, scatterApplyBuffers(name, p.bytes, dtype), timeoutMs)));
    const failed = outcomes.filter((o) => o.status !== "ok");
    if (failed.length > 0) throw applyFailure(name, failed);
    sendJson(res, 200, { name, dtype, length: n, parts: parts.map(({ engine, offset, length }) => ({ engine, offset, length })) });
  };

  const handleGather = async (name: string, req: IncomingMessage, res: ServerResponse, query: URLSearchParams) => {
    const q = arrayQuery.safeParse(Object.fromEntries(query));
    if (!q.success) throw new HttpError(400, "validation_failed", zodMessage(q.error));
    if (q.data.dtype !== undefined) throw new HttpError(400, "validation_failed", "dtype: not accepted on GET (the engines' dtype is returned)");
    const accept = (req.headers.accept ?? "").toLowerCase();
    const raw = accept.includes("application/octet-stream");
    if (!raw && accept !== "" && !/application\/json|\*\/\*|application\/\*/.test(accept)) {
      throw new HttpError(406, "not_acceptable", "GET /api/v1/arrays/<name> returns application/json or application/octet-stream");
    }
    const client = await apiClient();
    const targets = await resolveTargets(client, parseQueryTargets(q.data.targets));
    const outcomes = await Promise.all(targets.map((t) => client.apply(t, gatherApplyBuffers(name), q.data.timeoutMs ?? defaultTimeout)));
    const failed = outcomes.filter((o) => o.status !== "ok");
    if (failed.length > 0) throw applyFailure(name, failed);
    const parts = outcomes.map((o) => ({ engine: o.engine, ...parseGatherResult(o.buffers) }));
    const bad = parts.find((p) => p.dtype === undefined);
    if (bad) throw new HttpError(422, "unsupported_dtype", `engine ${bad.engine}: '${name}' has dtype ${bad.numpyDtype}; only float64 and int64 are served`);
    const dtypes = new Set(parts.map((p) => p.dtype));
    if (dtypes.size > 1) throw new HttpError(409, "mixed_dtypes", `'${name}' has different dtypes on different engines: ${[...dtypes].join(", ")}`);
    const dtype = parts[0]!.dtype as Dtype;
    const data = Buffer.concat(parts.map((p) => p.data));
    const length = data.length / ITEM_BYTES;
    if (raw) {
      res.writeHead(200, {
        "content-type": "application/octet-stream", "content-length": data.length,
        "x-ipp-dtype": dtype, "x-ipp-length": String(length),
      });
      res.end(data);
      return;
    }
    let offset = 0;
    const layout = parts.map((p) => {
      const n = p.data.length / ITEM_BYTES;
      const e = { engine: p.engine, offset, length: n };
      offset += n;
      return e;
    });
    sendJson(res, 200, { name, dtype, length, parts: layout, data: decodeArray(data, dtype) });
  };

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
    } catch {
      throw new HttpError(400, "bad_request", "the request target is not a valid path");
    }
    const path = url.pathname;
    const method = req.method ?? "GET";
    const isApi = path === "/api" || path.startsWith("/api/");
    if (serve !== "all" && isApi !== (serve === "api")) {
      throw new HttpError(404, "not_found", `no route ${path} on the ${serve} port`);
    }
    if (isApi) {
      // before any body is read or any route is told apart: unknown /api/ paths answer 401 too
      const decision = await auth!.check(req.headers.authorization);
      if (!decision.allowed) {
        apiMetrics!.authFailures.inc({ reason: decision.reason });
        refusals.record(decision.reason, req.socket.remoteAddress);
        if (decision.status === 401) res.setHeader("www-authenticate", 'Bearer realm="ipp-controller"');
        throw new HttpError(decision.status, REFUSAL_CODES[decision.status], decision.message, true);
      }
    }
    const only = (...allowed: string[]) => {
      if (!allowed.includes(method)) {
        res.setHeader("allow", allowed.join(", "));
        throw new HttpError(405, "method_not_allowed", `${method} is not allowed on ${path}`);
      }
    };
    if (path === "/healthz") {
      only("GET", "HEAD");
      return sendJson(res, 200, { status: "ok" });
    }
    if (path === "/readyz") {
      only("GET", "HEAD");
      const want = url.searchParams.get("engines");
      if (want !== null && !/^\d{1,6}$/.test(want)) throw new HttpError(400, "validation_failed", "engines: a non-negative integer");
      const alive = controller.engines().filter((e) => e.alive).length;
      const bound = controller.ready ? controller.ready() : true;
      const ok = bound && alive >= Number(want ?? 0);
      return sendJson(res, ok ? 200 : 503, { ready: ok, controller: bound, engines: alive, ...(want !== null ? { want: Number(want) } : {}) });
    }
    if (path === "/metrics") {
      only("GET", "HEAD");
      const text = await registry.metrics();
      res.writeHead(200, { "content-type": registry.contentType });
      res.end(text);
      return;
    }
    if (path === "/api/v1/engines") {
      only("GET");
      const engines = [...controller.engines()].sort((a, b) => a.id - b.id).map((e) => ({
        id: e.id, uuid: e.uuid, alive: e.alive, registeredAt: e.registeredAt.toISOString(),
        queueDepth: e.queueDepth, missedBeats: e.missedBeats,
      }));
      // nextId with the ids and uuids is what an engine state file holds: the operator keeps a copy
      // so that a replaced controller pod takes the engines back (--restore-fallback)
      const nextId = controller.nextEngineId?.();
      return sendJson(res, 200, { engines, ...(nextId !== undefined ? { nextId } : {}) });
    }
    if (path === "/api/v1/execute") {
      only("POST");
      return handleExecute(req, res);
    }
    const m = /^\/api\/v1\/arrays\/([^/]+)$/.exec(path);
    if (m) {
      only("GET", "PUT");
      let name: string;
      try {
        name = decodeURIComponent(m[1]!);
      } catch {
        throw new HttpError(400, "invalid_name", "the array name is not valid percent-encoding");
      }
      if (!isPythonName(name)) throw new HttpError(400, "invalid_name", `array name must be a Python identifier (not a keyword): ${JSON.stringify(name)}`);
      return method === "PUT" ? handleScatter(name, req, res, url.searchParams) : handleGather(name, req, res, url.searchParams);
    }
    throw new HttpError(404, "not_found", `no route ${path}`);
  };

  const server = createServer((req, res) => {
    const started = Date.now();
    route(req, res).then(
      () => log.debug("request", { method: req.method, path: pathOf(req), status: res.statusCode, ms: Date.now() - started }),
      (err: unknown) => {
        if (err instanceof EngineUnknownError) err = new HttpError(404, "unknown_engine", err.message);
        const e = err instanceof HttpError ? err : new HttpError(500, "internal", err instanceof Error ? err.message : String(err));
        if (e.refused) { /* counted and logged (rate-limited) where refused */ }
        else if (e.status >= 500) log.error("request failed", err, { method: req.method, path: pathOf(req), status: e.status });
        else log.info("request rejected", { method: req.method, path: pathOf(req), status: e.status, error: e.code });
        if (res.headersSent) {
          res.destroy();
          return;
        }
        // the body of a refused request is never parsed: a small one is discarded so the client
        // reads its answer cleanly; a large one (or one of unknown size) is not read at all, and
        // the connection closes after the answer
        const unread = (e.status === 413 || e.refused) && !req.complete;
        const declared = Number(req.headers["content-length"]);
        const drain = unread && req.headers["transfer-encoding"] === undefined && Number.isFinite(declared) && declared <= DRAIN_LIMIT;
        if (drain) req.resume();
        else if (unread) res.setHeader("connection", "close");
        sendError(res, e.status, e.code, e.message);
        if (unread && !drain) res.once("finish", () => req.destroy());
      },
    );
  });
  server.requestTimeout = 0; // large uploads; per-call timeouts bound the engine side
  // requests node cannot parse (bad request line or headers, headers too large): a JSON error too
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || (err.code === "ECONNRESET")) { socket.destroy(); return; }
    const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
    const body = JSON.stringify(tooLarge
      ? { error: "headers_too_large", message: "the request headers are over the server's limit" }
      : { error: "bad_request", message: "the request is not valid HTTP/1.1" });
    socket.end(`HTTP/1.1 ${tooLarge ? "431 Request Header Fields Too Large" : "400 Bad Request"}\r\ncontent-type: application/json; charset=utf-8\r\n`
      + `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info("http server listening", { host: opts.host ?? "127.0.0.1", port, serve });
  return {
    port,
    close: async () => {
      if (clientPromise) {
        try {
          (await clientPromise).close();
        } catch {
          // never connected
        }
      }
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
