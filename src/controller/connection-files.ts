/**
 * ipcontroller-client.json / ipcontroller-engine.json, with the keys and layout ipyparallel 8/9
 * write (JSON with indent 2, mode 0600), and the IPP_CONNECTION_INFO value for engines.
 */
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

export interface ClientConnectionInfo {
  ssh: string;
  interface: string;
  registration: number;
  control: number;
  mux: number;
  task: number;
  task_scheme: string;
  iopub: number;
  notification: number;
  broadcast: number;
  key: string;
  curve_serverkey: string | null;
  location: string;
  pack: "json";
  unpack: "json";
  signature_scheme: string;
}

export interface EngineConnectionInfo {
  ssh: string;
  interface: string;
  registration: number;
  control: number;
  mux: number;
  task: number;
  iopub: number;
  hb_ping: number;
  hb_pong: number;
  broadcast: number[];
  key: string;
  curve_serverkey: string | null;
  location: string;
  pack: "json";
  unpack: "json";
  signature_scheme: string;
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
