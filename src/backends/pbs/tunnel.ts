/**
 * network.mode sshTunnel, the adapter: a TunnelForwarder keeps one remote forward per controller
 * port open on the login host's loopback over the host's existing SshLink, and pipes every
 * incoming channel to the controller. After the link reconnects (sshd restarted, network blip)
 * every forward is asked again for the same port; `close()` cancels them. When a port of the
 * cluster's block is taken on the login host, the forwarder gives back what it bound and tries the
 * next block (MAX_BLOCK_TRIES in all); `portBase` says which block it got. States: `pending`
 * (not all forwards bound yet), `forwarding`, `down` (link lost or no block could be bound;
 * retried on the next connect or after `retryMs`), `closed`.
 */
import { connect, type Socket } from "node:net";
import type { TunnelMetrics } from "../../metrics/operator.ts";
import type { Logger } from "../../util/log.ts";
import { MAX_BLOCK_TRIES, TUNNEL_BIND, rebase, shiftedBase, type TunnelChannel } from "./core/tunnel.ts";
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
  /** the block asked for first: the preferred one, then the one bound last */
  private preferredBase: number;
  private boundBase: number | undefined;
  /** blocks skipped because a port was taken, in the last establishment */
  private _skipped: number[] = [];

  constructor(private readonly link: SshLink, private readonly channels: TunnelChannel[], private readonly o: TunnelForwarderOptions) {
    this.preferredBase = channels[0]?.remotePort ?? 0;
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

  /** The first port of the block bound (undefined until forwarding; the login host's choice when asked for 0). */
  get portBase(): number | undefined { return this.boundBase; }

  /** The blocks tried and found taken before `portBase` (empty when the preferred block was free). */
  get skippedBlocks(): readonly number[] { return this._skipped; }

  /** The channels as bound (for comparing with what a planner asks for). */
  boundChannels(): TunnelChannel[] | undefined {
    return this.boundBase === undefined ? undefined : this.channels.map((c) => ({ ...c, remotePort: this.bound.get(c.name) ?? c.remotePort }));
  }

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
    // ports chosen by the login host (0) have no blocks to fall back on
    const tries = this.preferredBase === 0 ? 1 : MAX_BLOCK_TRIES;
    const skipped: number[] = [];
    let lastError = "";
    for (let i = 0; i < tries; i++) {
      const base = this.preferredBase === 0 ? 0 : shiftedBase(this.preferredBase, i);
      const want = base === 0 ? this.channels.map((c) => ({ ...c, remotePort: this.bound.get(c.name) ?? 0 })) : rebase(this.channels, base);
      const r = await this.bindBlock(want);
      if (this._state === "closed") return;
      if (r === true) {
        this.boundBase = base === 0 ? this.bound.get(this.channels[0]?.name ?? "") : base;
        // a reconnect asks for this block first: the job's connection info names it
        if (base !== 0) this.preferredBase = base;
        this._skipped = skipped;
        this.establishments++;
        this._lastError = undefined;
        this.o.logger.info("ssh tunnel forwarding", { host: this.link.key, cluster: this.o.cluster, forwards: this.channels.length, portBase: this.boundBase, skippedBlocks: skipped.join(","), establishments: this.establishments });
        this.setState("forwarding");
        return;
      }
      lastError = r;
      if (this.link.state !== "connected") break; // the link went: the reconnect establishes again
      skipped.push(base);
      if (tries > 1) this.o.logger.info("ssh tunnel port block taken, trying the next", { host: this.link.key, cluster: this.o.cluster, portBase: base, error: r });
    }
    this._lastError = skipped.length > 1
      ? `no free block of ${this.channels.length} ports on ${this.link.key}'s loopback: tried ${skipped.map((b) => `${b}-${b + this.channels.length - 1}`).join(", ")} (${lastError})`
      : lastError;
    this.o.logger.warn("ssh tunnel down", { host: this.link.key, cluster: this.o.cluster, error: this._lastError });
    this.setState("down");
    // the link reconnecting calls establish again; a refusal on a live link is retried here
    if (this.link.state === "connected") this.retry = setTimeout(() => { void this.establish(); }, this.o.retryMs ?? 5_000).unref();
  }

  /** Bind every channel as given: true, or the error (what this attempt bound is given back). */
  private async bindBlock(want: TunnelChannel[]): Promise<true | string> {
    const now: number[] = [];
    try {
      for (const ch of want) {
        const p = await this.link.forwardIn(TUNNEL_BIND, ch.remotePort, this.handler(ch));
        this.bound.set(ch.name, p);
        now.push(p);
        this.counted++;
        this.o.metrics?.forwards(this.link.key, 1);
        if (this._state === "closed") return true;
      }
      return true;
    } catch (e) {
      for (const p of now) await this.link.unforwardIn(TUNNEL_BIND, p).catch(() => undefined);
      this.o.metrics?.forwards(this.link.key, -this.counted);
      this.counted = 0;
      return (e as Error).message;
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
