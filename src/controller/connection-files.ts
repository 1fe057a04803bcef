/**
 * ipcontroller-client.json / ipcontroller-engine.json, with the keys and layout ipyparallel 8/9
 * write (JSON with indent 2, mode 0600), and the IPP_CONNECTION_INFO value for engines.
 */
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { ControllerConfig } from "./config.ts";
import type { BoundPorts } from "./sockets.ts";

/** The ports both files list (each file with its own side's port). */
interface ConnectionPorts {
  ssh: string;
  interface: string;
  registration: number;
  control: number;
  mux: number;
  task: number;
  iopub: number;
}

/** The fields both files end with. */
interface ConnectionCommon {
  key: string;
  curve_serverkey: string | null;
  location: string;
  pack: "json";
  unpack: "json";
  signature_scheme: string;
}

export interface ClientConnectionInfo extends ConnectionPorts, ConnectionCommon {
  task_scheme: string;
  notification: number;
  broadcast: number;
}

export interface EngineConnectionInfo extends ConnectionPorts, ConnectionCommon {
  hb_ping: number;
  hb_pong: number;
  broadcast: number[];
}

export const CLIENT_FILE = "ipcontroller-client.json";
export const ENGINE_FILE = "ipcontroller-engine.json";

/** File names as ipcontroller names them (`ipcontroller-<cluster_id>-client.json` with a cluster id). */
export function connectionFileNames(clusterId = ""): { client: string; engine: string } {
  const base = clusterId ? `ipcontroller-${clusterId}` : "ipcontroller";
  return { client: `${base}-client.json`, engine: `${base}-engine.json` };
}

export async function writeConnectionFile(path: string, info: ClientConnectionInfo | EngineConnectionInfo): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, JSON.stringify(info, null, 2), { mode: 0o600 });
  await chmod(path, 0o600);
}

/** Write both files into `dir`; returns their paths. */
export async function writeConnectionFiles(
  dir: string, client: ClientConnectionInfo, engine: EngineConnectionInfo, clusterId = "",
): Promise<{ client: string; engine: string }> {
  const names = connectionFileNames(clusterId);
  const paths = { client: join(dir, names.client), engine: join(dir, names.engine) };
  await writeConnectionFile(paths.client, client);
  await writeConnectionFile(paths.engine, engine);
  return paths;
}

/** The value engines (ipyparallel ≥ 8) read from $IPP_CONNECTION_INFO: the engine file's JSON. */
export function engineConnectionEnv(engine: EngineConnectionInfo): string {
  return JSON.stringify(engine);
}

/** The two files' contents for a controller bound on `ports` (the key order is the files' order). */
export function connectionInfo(
  config: Pick<ControllerConfig, "ip" | "key" | "curve" | "signatureScheme" | "taskScheme" | "sshServer" | "engineSshServer">,
  location: string, ports: BoundPorts,
): { client: ClientConnectionInfo; engine: EngineConnectionInfo } {
  const iface = `tcp://${config.ip}`;
  const common: ConnectionCommon = {
    key: config.key,
    curve_serverkey: config.curve ? config.curve.publicKey : null,
    location,
    pack: "json",
    unpack: "json",
    signature_scheme: config.signatureScheme ?? "hmac-sha256",
  };
  return {
    client: {
      ssh: config.sshServer ?? "", interface: iface, registration: ports.registration, control: ports.control,
      mux: ports.mux, task: ports.task, task_scheme: config.taskScheme, iopub: ports.iopub,
      notification: ports.notification, broadcast: ports.broadcast, ...common,
    },
    engine: {
      ssh: config.engineSshServer ?? config.sshServer ?? "", interface: iface, registration: ports.registration, control: ports.engine_control,
      mux: ports.engine_mux, task: ports.engine_task, iopub: ports.engine_iopub, hb_ping: ports.hb_ping,
      hb_pong: ports.hb_pong, broadcast: ports.leaves, ...common,
    },
  };
}
