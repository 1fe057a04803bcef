/**
 * One long-lived SSH connection to a login host, multiplexing every command as an exec channel.
 * Keepalives detect a dead link; a lost or failed link is reconnected with exponential backoff
 * (injectable sleep). The host key is always checked against the known_hosts text from the
 * credentials Secret: an unknown or mismatching key fails the connection with a message naming
 * both fingerprints, and no command runs. Commands fail fast while the link is down, with the
 * reason of the last failure.
 */
import ssh2 from "ssh2";
import type { PbsMetrics, SshConnectionState } from "../../metrics/operator.ts";
import type { Logger } from "../../util/log.ts";
import { parseKnownHosts, verifyHostKey } from "./core/known-hosts.ts";

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  privateKey: string | Buffer;
  knownHosts: string;
}

export interface SshLinkOptions {
  logger: Logger;
  metrics?: PbsMetrics;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  readyTimeoutMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** concurrent exec channels (sshd's MaxSessions defaults to 10) */
  maxChannels?: number;
  sleep?: (ms: number) => Promise<void>;
}

export interface ExecResult { stdout: string; stderr: string; code: number; signal?: string }

export class SshUnavailableError extends Error {
  readonly code = "ssh_unavailable";
}
export class SshTimeoutError extends Error {
  readonly code = "ssh_timeout";
}

/** `user@host:port`: the metric label and the link's key. */
export const linkKey = (t: Pick<SshTarget, "user" | "host" | "port">): string => `${t.user}@${t.host}:${t.port}`;

/** An incoming forwarded connection's stream and where it arrived on the login host. */
export type ForwardedHandler = (stream: ssh2.ClientChannel, info: { destIP: string; destPort: number; srcIP: string; srcPort: number }) => void;

export class SshLink {
  private client: ssh2.Client | undefined;
  private connectListeners = new Set<() => void>();
  private disconnectListeners = new Set<() => void>();
  /** remote forwards of the current connection: `<bind address>:<bound port>` → handler */
  private forwards = new Map<string, ForwardedHandler>();
  private _state: SshConnectionState = "connecting";
  private _lastError: string | undefined;
  private hostKeyProblem: string | undefined;
  private closed = false;
  private attempt = 0;
  private waiters: Array<() => void> = [];
  private active = 0;
  private queue: Array<() => void> = [];
  private readonly o: Required<Omit<SshLinkOptions, "metrics">> & { metrics?: PbsMetrics };
  readonly key: string;
  connects = 0;

  constructor(private readonly target: SshTarget, opts: SshLinkOptions) {
    this.o = {
      keepaliveIntervalMs: 10_000, keepaliveCountMax: 3, readyTimeoutMs: 10_000, backoffInitialMs: 500, backoffMaxMs: 30_000, maxChannels: 8,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms).unref()), ...opts,
    };
    this.key = linkKey(target);
    this.setState("connecting");
    void this.loop();
  }

  get state(): SshConnectionState { return this._state; }
  get lastError(): string | undefined { return this._lastError; }

  private setState(s: SshConnectionState): void {
    this._state = s;
    this.o.metrics?.sshState(this.key, s);
    if (s === "connected" || s === "closed") { const w = this.waiters; this.waiters = []; for (const f of w) f(); }
  }

  private async loop(): Promise<void> {
    const entries = parseKnownHosts(this.target.knownHosts);
    while (!this.closed) {
      this.setState("connecting");
      const err = await this.connectOnce(entries);
      if (this.closed) break;
      this._lastError = err;
      const delay = Math.min(this.o.backoffMaxMs, this.o.backoffInitialMs * 2 ** Math.min(this.attempt, 20));
      this.attempt++;
      this.o.logger.warn("ssh link down", { host: this.key, error: err, retryInMs: delay, attempt: this.attempt });
      this.setState("backoff");
      await this.o.sleep(delay);
    }
    this.setState("closed");
  }

  /** Resolves with the reason the connection ended (or could not be made). */
  private connectOnce(entries: ReturnType<typeof parseKnownHosts>): Promise<string> {
    return new Promise((resolve) => {
      const c = new ssh2.Client();
      this.client = c;
      this.hostKeyProblem = undefined;
      let error: string | undefined;
      c.on("ready", () => {
        this.attempt = 0;
        this._lastError = undefined;
        this.connects++;
        this.o.logger.info("ssh link up", { host: this.key });
        this.setState("connected");
        for (const f of [...this.connectListeners]) f();
      });
      c.on("tcp connection", (info, accept, reject) => {
        const h = this.forwards.get(`${info.destIP}:${info.destPort}`);
        if (h === undefined) { reject(); return; }
        h(accept(), info);
      });
      c.on("error", (e: Error) => { error = this.hostKeyProblem ?? e.message; });
      c.on("close", () => {
        if (this.client === c) { this.client = undefined; this.forwards.clear(); }
        if (this.connects > 0) for (const f of [...this.disconnectListeners]) f();
        resolve(error ?? "connection closed");
      });
      try {
        c.connect({
          host: this.target.host, port: this.target.port, username: this.target.user, privateKey: this.target.privateKey,
          keepaliveInterval: this.o.keepaliveIntervalMs, keepaliveCountMax: this.o.keepaliveCountMax, readyTimeout: this.o.readyTimeoutMs,
          hostVerifier: (key: Buffer) => {
            const v = verifyHostKey(entries, this.target.host, this.target.port, key);
            if (!v.ok) this.hostKeyProblem = v.message;
            return v.ok;
          },
        });
      } catch (e) {
        error = (e as Error).message;
        resolve(error);
      }
    });
  }

  /** Wait until connected (true) or the timeout passes (false). */
  waitConnected(timeoutMs: number): Promise<boolean> {
    if (this._state === "connected") return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.waiters = this.waiters.filter((w) => w !== done); resolve(false); }, timeoutMs);
      const done = () => { clearTimeout(t); resolve(this._state === "connected"); };
      this.waiters.push(done);
    });
  }

  private async slot(): Promise<() => void> {
    if (this.active >= this.o.maxChannels) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    return () => { this.active--; this.queue.shift()?.(); };
  }

  /**
   * Run one command line (already quoted) on the login host. `stdin` is written to the channel and
   * closed. `label` names the command in metrics (qsub, qstat, qdel, ...).
   */
  async exec(command: string, opts: { stdin?: string; timeoutMs?: number; label?: string } = {}): Promise<ExecResult> {
    const label = opts.label ?? command.split(" ")[0] ?? "exec";
    const c = this.client;
    if (c === undefined || this._state !== "connected") {
      throw new SshUnavailableError(`ssh ${this.key} is not connected${this._lastError !== undefined ? `: ${this._lastError}` : ""}`);
    }
    const release = await this.slot();
    const started = process.hrtime.bigint();
    try {
      return await new Promise<ExecResult>((resolve, reject) => {
        c.exec(command, (err, stream) => {
          if (err) { reject(new SshUnavailableError(`ssh ${this.key}: ${err.message}`)); return; }
          let stdout = "";
          let stderr = "";
          const timer = setTimeout(() => {
            stream.close();
            reject(new SshTimeoutError(`ssh ${this.key}: ${label} timed out after ${opts.timeoutMs} ms`));
          }, opts.timeoutMs ?? 30_000);
          stream.on("data", (d: Buffer) => { stdout += d.toString("utf8"); });
          stream.stderr.on("data", (d: Buffer) => { stderr += d.toString("utf8"); });
          stream.on("close", (code: number | null, signal?: string) => {
            clearTimeout(timer);
            resolve({ stdout, stderr, code: code ?? -1, ...(signal !== undefined ? { signal } : {}) });
          });
          stream.end(opts.stdin ?? "");
        });
      });
    } finally {
      release();
      this.o.metrics?.sshCommand(this.key, label, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  /** Call `f` every time the link (re)connects; returns the unsubscribe. */
  onConnected(f: () => void): () => void {
    this.connectListeners.add(f);
    return () => { this.connectListeners.delete(f); };
  }

  /** Call `f` every time a connection ends (its remote forwards are gone with it). */
  onDisconnected(f: () => void): () => void {
    this.disconnectListeners.add(f);
    return () => { this.disconnectListeners.delete(f); };
  }

  /**
   * Ask the login host to listen on `bindAddr:port` (0: a port of its choosing) for the life of
   * the current connection and hand each incoming connection to `handler`. Resolves with the port
   * bound. A reconnect drops every forward: owners re-establish them from `onConnected`.
   */
  forwardIn(bindAddr: string, port: number, handler: ForwardedHandler): Promise<number> {
    const c = this.client;
    if (c === undefined || this._state !== "connected") {
      return Promise.reject(new SshUnavailableError(`ssh ${this.key} is not connected${this._lastError !== undefined ? `: ${this._lastError}` : ""}`));
    }
    return new Promise((resolve, reject) => {
      c.forwardIn(bindAddr, port, (err, bound) => {
        if (err) { reject(new SshUnavailableError(`ssh ${this.key}: remote forward ${bindAddr}:${port} refused: ${err.message}`)); return; }
        const p = port === 0 ? bound : port;
        this.forwards.set(`${bindAddr}:${p}`, handler);
        resolve(p);
      });
    });
  }

  /** Stop a remote forward (best effort: a dropped connection has no forwards left anyway). */
  unforwardIn(bindAddr: string, port: number): Promise<void> {
    this.forwards.delete(`${bindAddr}:${port}`);
    const c = this.client;
    if (c === undefined || this._state !== "connected") return Promise.resolve();
    return new Promise((resolve) => { c.unforwardIn(bindAddr, port, () => resolve()); });
  }

  close(): void {
    this.closed = true;
    this.client?.end();
    if (this._state !== "connecting") this.setState("closed");
  }
}
