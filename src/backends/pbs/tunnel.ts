/**
 * network.mode sshTunnel, the adapter: a TunnelForwarder keeps one remote forward per controller
 * port open on the login host's loopback over the host's existing SshLink, and pipes every
 * incoming channel to the controller. After the link reconnects (sshd restarted, network blip)
 * every forward is asked again for the same port; `close()` cancels them. States: `pending`
 * (not all forwards bound yet), `forwarding`, `down` (link lost or a forward refused; retried on
 * the next connect or after `retryMs`), `closed`.
 */
import { connect, type Socket } from "node:net";
import type { TunnelMetrics } from "../../metrics/operator.ts";
import type { Logger } from "../../util/log.ts";
import { TUNNEL_BIND, type TunnelChannel } from "./core/tunnel.ts";
import type { ForwardedHandler, SshLink } from "./ssh.ts";

export type TunnelState = "pending" | "forwarding" | "down" | "closed";

export interface TunnelForwarderOptions {
  logger: Logger;
  metrics?: TunnelMetrics;
  /** a cluster label for logs */
  cluster: string;
  /** how soon to retry binding when a forward was refused while the link stayed up */
  retryMs?: number;
}

export class TunnelForwarder {
  private _state: TunnelState = "pending";
  private _lastError: string | undefined;
  private readonly bound = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private readonly offConnected: () => void;
  private readonly offDisconnected: () => void;
  private retry: NodeJS.Timeout | undefined;
  private establishing: Promise<void> | undefined;
  private waiters: Array<() => void> = [];
  /** how many times every forward got bound (1 + re-establishments) */
  establishments = 0;

  constructor(private readonly link: SshLink, private readonly channels: TunnelChannel[], private readonly o: TunnelForwarderOptions) {
    this.offConnected = link.onConnected(() => { void this.establish(); });
    this.offDisconnected = link.onDisconnected(() => {
      if (this._state === "closed") return;
      clearTimeout(this.retry);
      if (this.counted > 0) { this.o.metrics?.forwards(this.link.key, -this.counted); this.counted = 0; }
      this._lastError = `ssh link ${this.link.key} lost`;
      this.o.logger.warn("ssh tunnel down", { host: this.link.key, cluster: this.o.cluster, error: this._lastError });
      this.setState("down");
    });
    if (link.state === "connected") void this.establish();
  }

  get state(): TunnelState { return this._state; }
  get lastError(): string | undefined { return this._lastError; }

  /** Channel name → port bound on the login host (empty until first forwarding). */
  ports(): ReadonlyMap<string, number> { return new Map(this.bound); }

  /** Resolves true once every forward is bound, false after `timeoutMs`. */
  waitForwarding(timeoutMs: number): Promise<boolean> {
    if (this._state === "forwarding") return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.waiters = this.waiters.filter((w) => w !== done); resolve(false); }, timeoutMs);
      const done = () => { clearTimeout(t); resolve(this._state === "forwarding"); };
      this.waiters.push(done);
    });
  }

  private setState(s: TunnelState): void {
    this._state = s;
    if (s === "forwarding" || s === "closed") { const w = this.waiters; this.waiters = []; for (const f of w) f(); }
  }

  private establish(): Promise<void> {
    if (this._state === "closed") return Promise.resolve();
    this.establishing ??= this.bindAll().finally(() => { this.establishing = undefined; });
    return this.establishing;
  }

  private async bindAll(): Promise<void> {
    clearTimeout(this.retry);
    // forwards die with the connection they were asked on: whatever was counted is gone
    if (this.counted > 0) { this.o.metrics?.forwards(this.link.key, -this.counted); this.counted = 0; }
    this.setState("pending");
    const now: number[] = [];
    try {
      for (const ch of this.channels) {
        // after the first time, ask again for the very port that was bound (the job's connection info names it)
        const want = this.bound.get(ch.name) ?? ch.remotePort;
        const p = await this.link.forwardIn(TUNNEL_BIND, want, this.handler(ch));
        this.bound.set(ch.name, p);
        now.push(p);
        this.counted++;
        this.o.metrics?.forwards(this.link.key, 1);
        if (this._state === "closed") return;
      }
      this.establishments++;
      this._lastError = undefined;
      this.o.logger.info("ssh tunnel forwarding", { host: this.link.key, cluster: this.o.cluster, forwards: this.channels.length, establishments: this.establishments });
      this.setState("forwarding");
    } catch (e) {
      if (this._state === "closed") return;
      this._lastError = (e as Error).message;
      // give back what this attempt bound, so the retry can ask for the same ports again
      for (const p of now) await this.link.unforwardIn(TUNNEL_BIND, p).catch(() => undefined);
      this.o.metrics?.forwards(this.link.key, -this.counted);
      this.counted = 0;
      this.o.logger.warn("ssh tunnel down", { host: this.link.key, cluster: this.o.cluster, error: this._lastError });
      this.setState("down");
      // the link reconnecting calls establish again; a refusal on a live link is retried here
      if (this.link.state === "connected") this.retry = setTimeout(() => { void this.establish(); }, this.o.retryMs ?? 5_000).unref();
    }
  }

  private counted = 0;

  private handler(ch: TunnelChannel): ForwardedHandler {
    return (stream) => {
      const sock = connect({ host: ch.target.host, port: ch.target.port });
      this.sockets.add(sock);
      this.o.metrics?.connections(this.link.key, 1);
      let done = false;
      const end = () => {
        if (done) return;
        done = true;
        this.sockets.delete(sock);
        this.o.metrics?.connections(this.link.key, -1);
        sock.destroy();
        stream.close();
      };
      sock.setNoDelay(true);
      sock.on("error", (e) => { this.o.logger.debug("tunnel target error", { cluster: this.o.cluster, channel: ch.name, error: e.message }); end(); });
      sock.on("close", end);
      stream.on("error", end);
      stream.on("close", end);
      sock.pipe(stream).pipe(sock);
    };
  }

  async close(): Promise<void> {
    if (this._state === "closed") return;
    this.setState("closed");
    clearTimeout(this.retry);
    this.offConnected();
    this.offDisconnected();
    for (const s of [...this.sockets]) s.destroy();
    await Promise.all([...this.bound.values()].map((p) => this.link.unforwardIn(TUNNEL_BIND, p).catch(() => undefined)));
    if (this.counted > 0) this.o.metrics?.forwards(this.link.key, -this.counted);
    this.counted = 0;
  }
}
