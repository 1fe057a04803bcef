/**
 * --reuse: read back the connection files a previous controller left, so a restarted controller
 * binds the same ports with the same key and clients/engines holding the old files reconnect.
 * Follows ipcontroller's load_config_from_json: the key, interface (transport + ip), location and
 * ssh servers come from the files; the two files must agree on key, registration port, packers and
 * signature scheme. parseReusedConnection is pure; readReusedConnection reads the two files.
 */
import { readFile } from "node:fs/promises";
import type { ConnectionFileNames } from "./profile.ts";
import type { PortAssignment } from "./ipcontroller-args.ts";

export interface ReusedConnection {
  key: string;
  signatureScheme: string;
  pack: string;
  unpack: string;
  location: string;
  /** Host part of the engine file's interface ("tcp://<ip>"); the client file's must match. */
  ip: string;
  transport: string;
  sshServer: string;
  engineSshServer: string;
  taskScheme?: string;
  curveServerKey: string | null;
  /** Every port, fully specified. */
  ports: PortAssignment;
}

export class ReuseError extends Error {
  readonly code = "IPP_REUSE_INVALID";
}

type Json = Record<string, unknown>;

function obj(v: unknown, what: string): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ReuseError(`${what} is not a JSON object`);
  return v as Json;
}

function port(o: Json, k: string, what: string): number {
  const v = o[k];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) throw new ReuseError(`${what}: "${k}" is not a port`);
  return v;
}

function text(o: Json, k: string, what: string, fallback?: string): string {
  const v = o[k];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ReuseError(`${what}: "${k}" is missing`);
  }
  if (typeof v !== "string") throw new ReuseError(`${what}: "${k}" is not a string`);
  return v;
}

function splitInterface(iface: string, what: string): { transport: string; ip: string } {
  const i = iface.indexOf("://");
  if (i <= 0) throw new ReuseError(`${what}: interface ${JSON.stringify(iface)} is not transport://host`);
  return { transport: iface.slice(0, i), ip: iface.slice(i + 3) };
}

export function parseReusedConnection(clientJson: unknown, engineJson: unknown): ReusedConnection {
  const c = obj(clientJson, "client connection file");
  const e = obj(engineJson, "engine connection file");
  for (const k of ["key", "registration", "pack", "unpack", "signature_scheme"]) {
    if (JSON.stringify(c[k]) !== JSON.stringify(e[k])) throw new ReuseError(`mismatch between engine and client connection files: "${k}"`);
  }
  const ei = splitInterface(text(e, "interface", "engine file"), "engine file");
  const ci = splitInterface(text(c, "interface", "client file"), "client file");
  if (ei.ip !== ci.ip || ei.transport !== ci.transport) {
    throw new ReuseError(`engine interface ${ei.transport}://${ei.ip} and client interface ${ci.transport}://${ci.ip} differ; one listen address serves both here`);
  }
  const bcast = e.broadcast;
  if (!Array.isArray(bcast) || bcast.length !== 2) throw new ReuseError(`engine file: "broadcast" is not a list of 2 ports`);
  const broadcast = bcast.map((p, i) => port({ p }, "p", `engine file broadcast[${i}]`));
  const curve = e.curve_serverkey;
  return {
    key: text(e, "key", "engine file"),
    signatureScheme: text(e, "signature_scheme", "engine file", "hmac-sha256"),
    pack: text(e, "pack", "engine file", "json"),
    unpack: text(e, "unpack", "engine file", "json"),
    location: text(e, "location", "engine file", ""),
    ip: ei.ip,
    transport: ei.transport,
    sshServer: text(c, "ssh", "client file", ""),
    engineSshServer: text(e, "ssh", "engine file", ""),
    ...(typeof c.task_scheme === "string" ? { taskScheme: c.task_scheme } : {}),
    curveServerKey: typeof curve === "string" && curve !== "" ? curve : null,
    ports: {
      registration: port(e, "registration", "engine file"),
      engine: {
        control: port(e, "control", "engine file"), mux: port(e, "mux", "engine file"), task: port(e, "task", "engine file"),
        iopub: port(e, "iopub", "engine file"), hb_ping: port(e, "hb_ping", "engine file"), hb_pong: port(e, "hb_pong", "engine file"),
        broadcast,
      },
      client: {
        control: port(c, "control", "client file"), mux: port(c, "mux", "client file"), task: port(c, "task", "client file"),
        iopub: port(c, "iopub", "client file"), notification: port(c, "notification", "client file"),
        broadcast: port(c, "broadcast", "client file"),
      },
    },
  };
}

export type ReuseResult =
  | { kind: "absent" }                       // first run: no files yet
  | { kind: "loaded"; connection: ReusedConnection }
  | { kind: "invalid"; error: Error };       // unreadable or inconsistent: start afresh (as ipcontroller does)

/** Read the two files; both absent is the normal first run. */
export async function readReusedConnection(paths: ConnectionFileNames): Promise<ReuseResult> {
  const read = async (p: string): Promise<string | undefined> => {
    try {
      return await readFile(p, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  };
  try {
    const [c, e] = await Promise.all([read(paths.client), read(paths.engine)]);
    if (c === undefined && e === undefined) return { kind: "absent" };
    if (c === undefined || e === undefined) {
      return { kind: "invalid", error: new ReuseError(`only one connection file exists (${c === undefined ? paths.engine : paths.client})`) };
    }
    let cj: unknown, ej: unknown;
    try {
      cj = JSON.parse(c);
      ej = JSON.parse(e);
    } catch (err) {
      return { kind: "invalid", error: new ReuseError(`connection file is not JSON: ${(err as Error).message}`) };
    }
    return { kind: "loaded", connection: parseReusedConnection(cj, ej) };
  } catch (err) {
    return { kind: "invalid", error: err instanceof Error ? err : new Error(String(err)) };
  }
}
