/**
 * zeromq.js allows one pending send and one pending receive per socket (else EBUSY). Each socket
 * therefore gets exactly one writer (an Outbox draining a FIFO) and one reader loop.
 */
import { Context, type Socket } from "zeromq";

export type Frames = Buffer[];

export class Outbox {
  private queue: Frames[] = [];
  private head = 0;
  private draining = false;
  private closed = false;
  private readonly onError: (err: unknown) => void;

  constructor(protected readonly sock: Socket & { send(frames: Frames): Promise<void> }, onError: (err: unknown) => void) {
    this.onError = onError;
  }

  get depth(): number {
    return this.queue.length - this.head;
  }

  send(frames: Frames): void {
    this.enqueue(frames);
  }

  /** Queue `frames` behind everything already queued (subclasses also queue their own markers). */
  protected enqueue(frames: Frames): void {
    if (this.closed) return;
    this.queue.push(frames);
    if (!this.draining) void this.drain();
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.head < this.queue.length && !this.closed) {
        const frames = this.queue[this.head]!;
        this.queue[this.head++] = undefined as unknown as Frames;
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        try {
          await this.sendOne(frames);
        } catch (err) {
          if (this.closed || this.sock.closed) return;
          this.onError(err);
        }
      }
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      }
    } finally {
      this.draining = false;
    }
  }

  /** One send; subclasses decide what a refused send means (a full peer queue, a vanished peer). */
  protected async sendOne(frames: Frames): Promise<void> {
    await this.sock.send(frames);
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.head = 0;
  }
}

/** Run `handler` for every message until the socket closes. Handler errors never end the loop. */
export async function readLoop(
  sock: Socket & AsyncIterable<Frames>, handler: (frames: Frames) => void, onError: (err: unknown) => void,
): Promise<void> {
  try {
    for await (const frames of sock) {
      try {
        handler(frames);
      } catch (err) {
        onError(err);
      }
    }
  } catch (err) {
    if (!sock.closed) onError(err);
  }
}

/** ZMQ_ZERO_COPY_RECV (a libzmq draft context option; zeromq.js is built with draft support). */
const ZMQ_ZERO_COPY_RECV = 10;

/**
 * A ZeroMQ context whose decoder gives every received frame its own allocation. With libzmq's
 * default (zero-copy receive) small frames point into a shared 8 KiB+ read batch, and zeromq.js hands
 * frames over 128 bytes to JavaScript without copying: one retained (or not yet collected) header
 * frame then pins a whole batch, which is how the controller's RSS grew by hundreds of MB under a
 * tiny-task load. Copying small frames costs little; large frames are allocated on their own either way.
 */
export function copyingContext(): Context {
  const ctx = new Context({ blocky: false });
  (ctx as unknown as { setBoolOption(option: number, value: boolean): void }).setBoolOption(ZMQ_ZERO_COPY_RECV, false);
  return ctx;
}
