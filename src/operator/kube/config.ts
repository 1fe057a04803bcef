/**
 * Where the API server is and how to authenticate: a kubeconfig file (current context) or the
 * in-cluster service account. Static credentials (bearer token, token file, client certificate,
 * basic auth) are read here directly; kubeconfigs that need an exec or auth-provider plugin are
 * handed to @kubernetes/client-node, loaded only then (it costs ~70 MB of memory to load).
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { parse } from "yaml";

export interface ConnectionConfig {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecureSkipTLSVerify?: boolean;
  tlsServerName?: string;
  /** Authentication headers for the next request (tokens that rotate are re-read). */
  headers(): Promise<Record<string, string>>;
}

export interface LoadOptions {
  /** An explicit kubeconfig path (wins over everything else). */
  kubeconfig?: string;
  /** The process environment (KUBERNETES_SERVICE_HOST/PORT, KUBECONFIG), passed in by the command. */
  env?: Record<string, string | undefined>;
  /** The service account folder (tests point it elsewhere). */
  serviceAccountDir?: string;
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
const TOKEN_REFRESH_MS = 60_000;

/** A token file re-read at most once a minute (projected service-account tokens rotate). */
function tokenFileHeaders(path: string): () => Promise<Record<string, string>> {
  let token = "";
  let at = 0;
  return async () => {
    if (!token || Date.now() - at > TOKEN_REFRESH_MS) { token = readFileSync(path, "utf8").trim(); at = Date.now(); }
    return { Authorization: `Bearer ${token}` };
  };
}

export async function loadConnectionConfig(opts: LoadOptions = {}): Promise<ConnectionConfig> {
  const env = opts.env ?? {};
  if (opts.kubeconfig) return fromKubeconfig(opts.kubeconfig);
  const saDir = opts.serviceAccountDir ?? SA_DIR;
  if (env.KUBERNETES_SERVICE_HOST && existsSync(join(saDir, "token"))) {
    const host = env.KUBERNETES_SERVICE_HOST.includes(":") ? `[${env.KUBERNETES_SERVICE_HOST}]` : env.KUBERNETES_SERVICE_HOST;
    return {
      server: `https://${host}:${env.KUBERNETES_SERVICE_PORT ?? "443"}`,
      ca: readFileSync(join(saDir, "ca.crt")),
      headers: tokenFileHeaders(join(saDir, "token")),
    };
  }
  const fromEnv = env.KUBECONFIG?.split(":").find((p) => p && existsSync(p));
  const path = fromEnv ?? join(homedir(), ".kube", "config");
  if (!existsSync(path)) throw new Error("no Kubernetes configuration: not in a cluster, no --kubeconfig, $KUBECONFIG or ~/.kube/config");
  return fromKubeconfig(path);
}

interface Named<T> { name: string; [k: string]: T | string }
type Kv = Record<string, unknown>;

function pick<T>(list: unknown, name: string, field: string): T {
  const found = (Array.isArray(list) ? (list as Named<T>[]) : []).find((x) => x.name === name);
  if (!found) throw new Error(`kubeconfig: no ${field} named '${name}'`);
  return (found[field] ?? {}) as T;
}

async function fromKubeconfig(path: string): Promise<ConnectionConfig> {
  const doc = parse(readFileSync(path, "utf8")) as Kv;
  const base = dirname(resolve(path));
  const ctxName = doc["current-context"] as string | undefined;
  if (!ctxName) throw new Error(`kubeconfig ${path}: no current-context`);
  const ctx = pick<Kv>(doc.contexts, ctxName, "context");
  const cluster = pick<Kv>(doc.clusters, String(ctx.cluster), "cluster");
  const user = ctx.user ? pick<Kv>(doc.users, String(ctx.user), "user") : {};
  const file = (p: unknown) => (typeof p === "string" ? readFileSync(isAbsolute(p) ? p : join(base, p)) : undefined);
  const data = (d: unknown) => (typeof d === "string" ? Buffer.from(d, "base64") : undefined);

  const cfg: ConnectionConfig = {
    server: String(cluster.server ?? ""),
    ca: data(cluster["certificate-authority-data"]) ?? file(cluster["certificate-authority"]),
    insecureSkipTLSVerify: cluster["insecure-skip-tls-verify"] === true,
    tlsServerName: typeof cluster["tls-server-name"] === "string" ? cluster["tls-server-name"] : undefined,
    cert: data(user["client-certificate-data"]) ?? file(user["client-certificate"]),
    key: data(user["client-key-data"]) ?? file(user["client-key"]),
    headers: async () => ({}),
  };
  if (!cfg.server) throw new Error(`kubeconfig ${path}: cluster has no server`);
  if (user.exec || user["auth-provider"]) {
    const { KubeConfig } = await import("@kubernetes/client-node");
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    cfg.headers = async () => {
      const o: { headers?: Record<string, unknown> } = {};
      await kc.applyToHTTPSOptions(o);
      return Object.fromEntries(Object.entries(o.headers ?? {}).map(([k, v]) => [k, String(v)]));
    };
  } else if (typeof user.token === "string") {
    const h = { Authorization: `Bearer ${user.token}` };
    cfg.headers = async () => h;
  } else if (typeof user.tokenFile === "string") {
    cfg.headers = tokenFileHeaders(isAbsolute(user.tokenFile) ? user.tokenFile : join(base, user.tokenFile));
  } else if (typeof user.username === "string") {
    const h = { Authorization: `Basic ${Buffer.from(`${user.username}:${String(user.password ?? "")}`).toString("base64")}` };
    cfg.headers = async () => h;
  }
  return cfg;
}
