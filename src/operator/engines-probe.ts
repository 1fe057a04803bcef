/**
 * Asks a cluster's controller how many engines registered, over its HTTP API
 * (GET /api/v1/engines, with the cluster's API token from its connection Secret). The controller
 * is only asked once its Deployment reports an available replica; before that, or when it does not
 * answer, the result says why (the planner shows it as not ready), so an unreachable controller
 * never turns into an error loop. The API is reached through the Service when it publishes it
 * (spec.controller.service.exposeApi), else at the controller pod's IP.
 */
import http from "node:http";
import { CONNECTION_KEYS, HTTP_PORT, names } from "../backends/mpi/core/names.ts";
import type { KubeObject } from "./kube/resources.ts";
import type { EngineProbe } from "./reconciler.ts";

export interface ProbeOptions {
  timeoutMs?: number;
  /** The controller's base URL for a cluster; default: its Service's `http` port via cluster DNS, else its pod's IP. */
  controllerUrl?: (cluster: KubeObject, owned: KubeObject[]) => string | undefined;
}

interface ServiceLike { metadata?: { name?: string; namespace?: string }; spec?: { ports?: Array<{ name?: string; port?: number }> } }

interface PodLike { metadata?: { labels?: Record<string, string>; deletionTimestamp?: string }; status?: { podIP?: string; phase?: string } }

export function serviceUrl(_cluster: KubeObject, owned: KubeObject[]): string | undefined {
  for (const o of owned) {
    if (o.kind !== "Service") continue;
    const s = o as ServiceLike;
    const port = s.spec?.ports?.find((p) => p.name === "http");
    if (port?.port) return `http://${s.metadata?.name}.${s.metadata?.namespace}.svc:${port.port}`;
  }
  for (const o of owned) {
    if (o.kind !== "Pod") continue;
    const p = o as PodLike;
    if (p.metadata?.labels?.["app.kubernetes.io/component"] !== "controller" || p.metadata.deletionTimestamp || p.status?.phase !== "Running") continue;
    const ip = p.status.podIP;
    if (ip) return `http://${ip.includes(":") ? `[${ip}]` : ip}:${HTTP_PORT}`;
  }
  return undefined;
}

/** The cluster's API token, from its connection Secret among the owned objects. */
export function apiToken(cluster: KubeObject, owned: KubeObject[]): string | undefined {
  const secret = owned.find((o) => o.kind === "Secret" && o.metadata?.name === names.connectionSecret(cluster.metadata?.name ?? ""));
  const b64 = (secret as { data?: Record<string, string> } | undefined)?.data?.[CONNECTION_KEYS.apiToken];
  return b64 ? Buffer.from(b64, "base64").toString("utf8") : undefined;
}

export function createEnginesProbe(opts: ProbeOptions = {}): (cluster: KubeObject, owned: KubeObject[]) => Promise<EngineProbe | undefined> {
  const urlOf = opts.controllerUrl ?? serviceUrl;
  const timeoutMs = opts.timeoutMs ?? 1500;
  return async (cluster, owned) => {
    const deployment = owned.find((o) => o.kind === "Deployment") as { status?: { availableReplicas?: number } } | undefined;
    if (!deployment) return undefined;
    if (!opts.controllerUrl && !(deployment.status?.availableReplicas ?? 0)) return { error: "controller Deployment has no available replica" };
    const base = urlOf(cluster, owned);
    if (!base) return { error: "neither the controller Service's http port nor a running controller pod was found" };
    const token = apiToken(cluster, owned);
    if (!token) return { error: `the connection Secret has no ${CONNECTION_KEYS.apiToken}` };
    try {
      const body = await getJson(`${base}/api/v1/engines`, token, timeoutMs);
      const { engines, nextId } = body as { engines?: Array<{ id?: unknown; uuid?: unknown; alive?: boolean }>; nextId?: unknown };
      if (!Array.isArray(engines)) return { error: "controller answered without an engine list" };
      // ids and uuids (and the next id) are what the operator keeps for a replaced controller pod
      const ids = engines.filter((e): e is { id: number; uuid: string } => Number.isInteger(e.id) && typeof e.uuid === "string" && e.uuid !== "")
        .map((e) => ({ id: e.id, uuid: e.uuid }));
      return {
        registered: engines.length, alive: engines.filter((e) => e.alive !== false).length,
        ...(ids.length === engines.length ? { engines: ids } : {}),
        ...(Number.isInteger(nextId) ? { nextId: nextId as number } : {}),
      };
    } catch (err) {
      return { error: `controller unreachable: ${err instanceof Error ? err.message : String(err)}` };
    }
  };
}

function getJson(url: string, token: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: "application/json", Authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        if ((res.statusCode ?? 0) >= 300) return reject(new Error(`HTTP ${res.statusCode}`));
        try { resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))); } catch (e) { reject(e as Error); }
      });
      res.on("error", reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}
