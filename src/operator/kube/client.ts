/**
 * A thin Kubernetes REST client: JSON requests and streaming watches over one keep-alive HTTPS
 * agent, configured by ./config.ts (kubeconfig or in-cluster). Plain node:https, so the operator
 * controls timeouts, watch streams and status codes (410 Gone, 409 Conflict) exactly.
 */
import http from "node:http";
import https from "node:https";
import type { ConnectionConfig } from "./config.ts";
import type { KubeObject } from "./resources.ts";

/** An API error with the HTTP status and the Status object's reason (NotFound, Conflict, Invalid...). */
export class KubeApiError extends Error {
  readonly code: string;
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "KubeApiError";
    this.code = `KUBE_${reason || status}`;
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof KubeApiError && e.status === 404;
export const isConflict = (e: unknown): boolean => e instanceof KubeApiError && e.status === 409;
export const isGone = (e: unknown): boolean => e instanceof KubeApiError && e.status === 410;
/** Errors a retry cannot fix: the request itself is wrong (bad object, forbidden, invalid). */
export const isPermanent = (e: unknown): boolean =>
  e instanceof KubeApiError && [400, 403, 405, 406, 413, 415, 422].includes(e.status);

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
export interface WatchEvent { type: WatchEventType; object: KubeObject }

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  /**
   * Drop a successful response's body unread (request resolves to undefined): an applied object
   * comes back whole, managedFields included, and parsing what nobody reads is garbage to collect.
   */
  discardResponse?: boolean;
}

export interface KubeClient {
  readonly server: string;
  request<T = KubeObject>(method: string, path: string, opts?: RequestOptions): Promise<T>;
  /** A watch stream; ends when the server closes it, throws KubeApiError on an HTTP error. */
  watch(path: string, opts?: RequestOptions): AsyncIterable<WatchEvent>;
  close(): void;
}

export interface ClientOptions {
  /** Client-side limit on concurrent connections. */
  maxSockets?: number;
}

/**
 * Accept header of a request whose response is discarded: the written object comes back as its
 * metadata only (PartialObjectMetadata, about half the bytes of a small object), so the API server
 * encodes less for a body nobody reads. Errors still come as a JSON Status; a server that can't
 * transform the object answers with the next type, the whole object as JSON.
 */
export const METADATA_ONLY_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

function queryString(q: RequestOptions["query"]): string {
  if (!q) return "";
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : "";
}

function apiError(status: number, text: string): KubeApiError {
  try {
    const s = JSON.parse(text) as { kind?: string; reason?: string; message?: string; details?: unknown };
    if (s.kind === "Status") return new KubeApiError(status, s.reason ?? "", s.message ?? text, s.details);
  } catch { /* not JSON */ }
  return new KubeApiError(status, "", text.trim().slice(0, 500) || `HTTP ${status}`);
}

export function createKubeClient(conn: ConnectionConfig, cfg: ClientOptions = {}): KubeClient {
  const base = new URL(conn.server);
  const isHttps = base.protocol === "https:";
  const common = { keepAlive: true, maxSockets: cfg.maxSockets ?? 64 };
  const agent: http.Agent = isHttps
    ? new https.Agent({
        ...common, ca: conn.ca, cert: conn.cert, key: conn.key, servername: conn.tlsServerName,
        rejectUnauthorized: !conn.insecureSkipTLSVerify,
      })
    : new http.Agent(common);

  function send(method: string, path: string, opts: RequestOptions, stream: false): Promise<{ status: number; text: string }>;
  function send(method: string, path: string, opts: RequestOptions, stream: true): Promise<http.IncomingMessage>;
  async function send(method: string, path: string, opts: RequestOptions, stream: boolean): Promise<unknown> {
    const headers = await conn.headers();
    const url = new URL(base.pathname.replace(/\/$/, "") + path + queryString(opts.query), base);
    const body = opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    const reqHeaders: Record<string, string> = { ...headers, Accept: opts.discardResponse ? METADATA_ONLY_ACCEPT : "application/json" };
    if (body !== undefined) {
      reqHeaders["Content-Type"] = opts.contentType ?? "application/json";
      reqHeaders["Content-Length"] = String(Buffer.byteLength(body));
    }
    const mod = isHttps ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { method, headers: reqHeaders, agent, signal: opts.signal }, (res) => {
        if (stream && (res.statusCode ?? 0) < 300) return resolve(res);
        if (opts.discardResponse && (res.statusCode ?? 0) < 300) {
          res.resume();
          res.on("error", reject);
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text: "" }));
          return;
        }
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (stream) reject(apiError(res.statusCode ?? 0, text));
          else resolve({ status: res.statusCode ?? 0, text });
        });
      });
      if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`request timed out after ${opts.timeoutMs} ms`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  return {
    server: conn.server,
    async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
      const { status, text } = await send(method, path, { timeoutMs: 30_000, ...opts }, false);
      if (status >= 300) throw apiError(status, text);
      return (text ? JSON.parse(text) : undefined) as T;
    },
    async *watch(path: string, opts: RequestOptions = {}): AsyncIterable<WatchEvent> {
      const res = await send("GET", path, { ...opts, query: { ...opts.query, watch: 1 } }, true);
      let buf = "";
      res.setEncoding("utf8");
      try {
        for await (const chunk of res) {
          buf += chunk as string;
          let nl: number;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line) yield JSON.parse(line) as WatchEvent;
          }
        }
      } finally {
        res.destroy();
      }
    },
    close() { agent.destroy(); },
  };
}
