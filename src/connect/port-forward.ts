/**
 * `connect --port-forward`: one local listener on 127.0.0.1 per controller client port; every TCP
 * connection a client opens is carried to the controller pod through the API server's
 * pods/portforward subresource (@kubernetes/client-node's PortForward, one WebSocket per
 * connection, as it supports one port per stream). ZeroMQ keeps its connections open for the
 * client's life, so a stream that closes or fails while the local side is still open means the
 * forward dropped; so does the pod going away. Either resolves `dropped` with a message naming the
 * pod and port; the command reports it and exits non-zero instead of hanging.
 */
import { createServer, type Server, type Socket } from "node:net";
import { Writable } from "node:stream";
import { PortForward } from "@kubernetes/client-node";
import { podState, type KubeAccess } from "./cluster.ts";

export interface ForwardOptions {
  namespace: string;
  pod: string;
  remotePorts: number[];
  /** How often the pod is looked up while idle (a deleted pod drops every forward). */
  podCheckMs?: number;
}

export interface ForwardHandle {
  /** remote port → local port on 127.0.0.1 */
  localPorts: Map<number, number>;
  /** Resolves with a message once any forward drops (never rejects). */
  dropped: Promise<string>;
  /** Open connections being carried right now. */
  active(): number;
  close(): Promise<void>;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port));
  });
}

export async function startPortForward(access: KubeAccess, opts: ForwardOptions): Promise<ForwardHandle> {
  const { namespace, pod } = opts;
  const forward = new PortForward(access.kubeConfig, true);
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const localPorts = new Map<number, number>();
  let closing = false;
  let reportDrop: (m: string) => void = () => undefined;
  const dropped = new Promise<string>((r) => { reportDrop = r; });
  let droppedOnce = false;
  const drop = (why: string) => {
    if (closing || droppedOnce) return;
    droppedOnce = true;
    // say what became of the pod: deleted, rescheduled, or still there (then the stream broke)
    void podState(access, namespace, pod).then((state) => reportDrop(`${why} (controller pod ${namespace}/${pod}: ${state})`));
  };

  const carry = (remote: number) => async (socket: Socket) => {
    sockets.add(socket);
    let localEnded = false;
    socket.on("close", () => { localEnded = true; sockets.delete(socket); });
    socket.on("error", () => { localEnded = true; });
    const errors: string[] = [];
    const errSink = new Writable({ write(chunk: Buffer, _enc, cb) { errors.push(chunk.toString("utf8")); cb(); } });
    try {
      const ws = await forward.portForward(namespace, pod, [remote], socket, errSink, socket);
      if (typeof ws === "function") throw new Error("unexpected restartable forward");
      ws.on("close", () => {
        if (!localEnded) drop(`port-forward to ${pod}:${remote} dropped${errors.length ? `: ${errors.join(" ").trim()}` : ": the API server closed the stream"}`);
        socket.destroy();
      });
      ws.on("error", (err: Error) => {
        drop(`port-forward to ${pod}:${remote} failed: ${err.message}`);
        socket.destroy();
      });
      socket.on("close", () => ws.close());
    } catch (err) {
      const e = err as Error & { message?: string };
      drop(`port-forward to ${pod}:${remote} could not be opened: ${e.message ?? String(err)}`);
      socket.destroy();
    }
  };

  try {
    for (const remote of opts.remotePorts) {
      const server = createServer(carry(remote));
      servers.push(server);
      localPorts.set(remote, await listen(server));
    }
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }

  const podCheck = setInterval(() => {
    void podState(access, namespace, pod).then((state) => {
      if (state !== "Running") drop(`the controller pod ${namespace}/${pod} is no longer running`);
    });
  }, opts.podCheckMs ?? 10_000);
  podCheck.unref();

  return {
    localPorts,
    dropped,
    active: () => sockets.size,
    async close() {
      closing = true;
      clearInterval(podCheck);
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
