/**
 * What `ipp-operator connect` decides from plain values: whether a cluster can be connected to
 * now, the client connection file from the connection Secret, and the same file rewritten for a
 * port-forward (every client port on 127.0.0.1). No I/O here.
 */
import { CLIENT_PORTS, CONNECTION_KEYS, ENGINE_PORTS } from "../../backends/mpi/core/names.ts";

/** An error the user can act on: it names what is missing. `exitCode` is what the command returns. */
export class ConnectError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = "ConnectError";
  }
}

interface ConditionLike { type?: string; status?: string; reason?: string; message?: string }
interface ClusterLike { status?: { phase?: string; reason?: string; conditions?: ConditionLike[] } }

/**
 * A client can connect once the controller answers: ControllerReady=True (engines may still be
 * registering; `rc.wait_for_engines(n)` waits for them). Returns why not, or undefined.
 */
export function notReadyReason(ec: ClusterLike, id: string): string | undefined {
  const conds = ec.status?.conditions ?? [];
  const controller = conds.find((c) => c.type === "ControllerReady");
  if (controller?.status === "True") return undefined;
  const ready = conds.find((c) => c.type === "Ready");
  const phase = ec.status?.phase ?? "no status yet";
  const why = ready?.reason !== undefined ? `${ready.reason}: ${ready.message ?? ""}`.replace(/: $/, "")
    : controller?.reason !== undefined ? `${controller.reason}: ${controller.message ?? ""}`.replace(/: $/, "")
      : "the operator has not reported on it yet";
  return `EngineCluster ${id} is not ready yet (phase ${phase}; ${why}); its controller must be available before a client can connect — see 'kubectl describe ec ${id.split("/")[1] ?? id}'`;
}

/** The client ports a notebook connects to, by connection-file field (registration is shared with engines). */
export const CLIENT_FILE_PORTS = {
  registration: ENGINE_PORTS.registration,
  control: CLIENT_PORTS.control, mux: CLIENT_PORTS.mux, task: CLIENT_PORTS.task,
  iopub: CLIENT_PORTS.iopub, notification: CLIENT_PORTS.notification, broadcast: CLIENT_PORTS.broadcast,
} as const;
export type ClientPortField = keyof typeof CLIENT_FILE_PORTS;

const REQUIRED = ["interface", "key", "signature_scheme", ...Object.keys(CLIENT_FILE_PORTS)];

export type ClientInfo = Record<string, unknown>;

/** The client connection file from the Secret's data (base64 values, as the API returns them). */
export function clientInfoFromSecret(data: Record<string, string> | undefined, secretId: string): ClientInfo {
  const raw = data?.[CONNECTION_KEYS.client];
  if (raw === undefined) throw new ConnectError(`Secret ${secretId} has no key ${CONNECTION_KEYS.client}: it is not an EngineCluster connection Secret, or the operator has not filled it yet`);
  let info: unknown;
  try { info = JSON.parse(Buffer.from(raw, "base64").toString("utf8")); } catch {
    throw new ConnectError(`Secret ${secretId}: ${CONNECTION_KEYS.client} is not JSON`);
  }
  if (typeof info !== "object" || info === null || Array.isArray(info)) throw new ConnectError(`Secret ${secretId}: ${CONNECTION_KEYS.client} is not a JSON object`);
  const missing = REQUIRED.filter((k) => !(k in info));
  if (missing.length > 0) throw new ConnectError(`Secret ${secretId}: ${CONNECTION_KEYS.client} lacks ${missing.join(", ")}`);
  return info as ClientInfo;
}

/** The remote ports to forward: the file's own port numbers (each distinct one once). */
export function forwardedPorts(info: ClientInfo): number[] {
  const ports = new Set<number>();
  for (const field of Object.keys(CLIENT_FILE_PORTS)) {
    const p = info[field];
    if (typeof p === "number" && Number.isInteger(p) && p > 0 && p < 65536) ports.add(p);
    else throw new ConnectError(`connection file field ${field} is not a port: ${JSON.stringify(p)}`);
  }
  return [...ports].sort((a, b) => a - b);
}

/** The same file pointing at 127.0.0.1, every port replaced by its local forward. */
export function forwardedClientInfo(info: ClientInfo, localPort: ReadonlyMap<number, number>): ClientInfo {
  const out: ClientInfo = { ...info, interface: "tcp://127.0.0.1", location: "127.0.0.1", ssh: "" };
  for (const field of Object.keys(CLIENT_FILE_PORTS)) {
    const local = localPort.get(info[field] as number);
    if (local === undefined) throw new Error(`no local forward for ${field} (${String(info[field])})`);
    out[field] = local;
  }
  return out;
}

/** The one line a notebook runs: the seed's own `ipp.Client(profile=...)`. */
export function pythonLine(profile: string): string {
  return `import ipyparallel as ipp; rc = ipp.Client(profile=${JSON.stringify(profile)})`;
}
