/**
 * The controller's one-shot timers, so that stop() can cancel every one of them and no callback
 * runs against closed sockets.
 */
export class Timers {
  private readonly pending = new Set<NodeJS.Timeout>();
  private stoppedFlag = false;

  get stopped(): boolean {
    return this.stoppedFlag;
  }

  /** Run `f` after `ms` unless the controller has stopped by then. */
  later(ms: number, f: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.pending.delete(t);
      if (!this.stoppedFlag) f();
    }, ms);
    this.pending.add(t);
    return t;
  }

  cancel(t: NodeJS.Timeout): void {
    clearTimeout(t);
    this.pending.delete(t);
  }

  stop(): void {
    this.stoppedFlag = true;
    for (const t of this.pending) clearTimeout(t);
    this.pending.clear();
  }
}
