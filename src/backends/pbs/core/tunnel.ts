/**
 * network.mode sshTunnel, the pure part: which controller ports the engines use, where each is
 * forwarded on the login host, and the connection info the job gets.
 *
 * The operator opens one remote forward per controller port on the login host's loopback
 * (127.0.0.1:<forwarded port> → the controller). Engines get `interface: tcp://127.0.0.1`, the
 * forwarded ports and `ssh: <user>@<login host>[:port]`: ipengine then tunnels every ZeroMQ
 * connection with `ssh -L 127.0.0.1:<local>:127.0.0.1:<forwarded port> <ssh>` (pyzmq's
 * zmq.ssh.tunnel with openssh and pexpect), so the compute node needs only to reach the login host.
 *
 * Forwarded ports are deterministic per cluster (a block of PORT_BLOCK ports chosen by hashing the
 * cluster's tag), so a reconnect or an operator restart binds the same ports and the job's
 * connection info (hence its name) never changes. When a port of the block is taken on the login
 * host (another cluster's block collided, or another user holds it) the forwarder tries the next
 * blocks, up to MAX_BLOCK_TRIES; the block it got is recorded in status (status.pbs.tunnel) and
 * asked for first from then on, and the job is submitted only once its block is bound.
 */
import { createHash } from "node:crypto";

export const TUNNEL_BIND = "127.0.0.1";
export const PORT_BASE = 22_000;
export const PORT_BLOCK = 16;
/** 22000..31599: above the rig's own ports, below Linux's ephemeral range (32768-) */
export const PORT_BLOCKS = 600;

/** The engine connection info fields the tunnel rewrites (ipcontroller-engine.json). */
export interface EnginePorts {
  interface: string;
  ssh: string;
  registration: number;
  control: number;
  mux: number;
  task: number;
  iopub: number;
  hb_ping: number;
  hb_pong: number;
  broadcast: number[];
}

export interface TunnelChannel {
  /** registration, control, mux, task, iopub, hb_ping, hb_pong, broadcast.<i> */
  name: string;
  /** where the operator reaches the controller */
  target: { host: string; port: number };
  /** the port bound on the login host's loopback */
  remotePort: number;
}

export class TunnelError extends Error {
  readonly code = "tunnel_invalid";
}

const SINGLE = ["registration", "control", "mux", "task", "iopub", "hb_ping", "hb_pong"] as const;

/** How many blocks a forwarder tries, starting with the preferred one, before it reports TunnelDown. */
export const MAX_BLOCK_TRIES = 8;

/** The first port of the block `by` blocks after `base`'s, wrapping inside the range. */
export function shiftedBase(base: number, by: number): number {
  const block = Math.floor((base - PORT_BASE) / PORT_BLOCK);
  return PORT_BASE + ((((block + by) % PORT_BLOCKS) + PORT_BLOCKS) % PORT_BLOCKS) * PORT_BLOCK;
}

/** The same channels on the block starting at `base` (channel i on base + i). */
export function rebase(channels: readonly TunnelChannel[], base: number): TunnelChannel[] {
  return channels.map((c, i) => ({ ...c, remotePort: base + i }));
}

/** The first port of the cluster's block on the login host. */
export function tunnelPortBase(tag: string): number {
  const h = createHash("sha256").update(`tunnel:${tag}`).digest();
  return PORT_BASE + (h.readUInt32BE(0) % PORT_BLOCKS) * PORT_BLOCK;
}

/**
 * One channel per controller port the engines use. `controllerHost` is how the operator reaches
 * the controller (the Service's DNS name, or 127.0.0.1 in tests); `base` is the first forwarded
 * port (tunnelPortBase), or 0 to let the login host choose each one.
 */
export function tunnelChannels(engine: EnginePorts, controllerHost: string, base: number): TunnelChannel[] {
  const names: Array<[string, number]> = [...SINGLE.map((k) => [k, engine[k]] as [string, number]), ...engine.broadcast.map((p, i) => [`broadcast.${i}`, p] as [string, number])];
  if (base !== 0 && names.length > PORT_BLOCK) throw new TunnelError(`${names.length} controller ports do not fit a block of ${PORT_BLOCK} forwarded ports`);
  return names.map(([name, port], i) => {
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new TunnelError(`controller port ${name} is ${String(port)}`);
    return { name, target: { host: controllerHost, port }, remotePort: base === 0 ? 0 : base + i };
  });
}

/** `user@host` or `user@host:port` (port 22 is left out), as ipengine's `ssh` field takes it. */
export function sshServer(user: string, host: string, port: number): string {
  return port === 22 ? `${user}@${host}` : `${user}@${host}:${port}`;
}

/**
 * The engines' connection info for sshTunnel: the controller's, with the interface on the login
 * host's loopback, each port replaced by its forwarded port, and the `ssh` server set.
 * `bound` maps channel names to the ports actually bound.
 */
export function tunnelledConnection<T extends EnginePorts>(engine: T, bound: ReadonlyMap<string, number>, ssh: string): T {
  const port = (name: string): number => {
    const p = bound.get(name);
    if (p === undefined || p === 0) throw new TunnelError(`no forwarded port for ${name}`);
    return p;
  };
  return {
    ...engine, ssh, interface: `tcp://${TUNNEL_BIND}`,
    registration: port("registration"), control: port("control"), mux: port("mux"), task: port("task"), iopub: port("iopub"),
    hb_ping: port("hb_ping"), hb_pong: port("hb_pong"), broadcast: engine.broadcast.map((_, i) => port(`broadcast.${i}`)),
  };
}
