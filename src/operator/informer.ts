/**
 * List + watch with a local cache, the shape of client-go's reflector/informer:
 * - list once, then watch from the list's resourceVersion, tracking the newest resourceVersion
 *   seen (bookmarks included) so a reconnect resumes where the last stream stopped;
 * - a 410 Gone (on the request or as an ERROR event) means that resourceVersion is too old: relist
 *   and emit the difference (adds, updates, and deletes for objects that vanished meanwhile);
 * - any other failure reconnects after an exponential backoff on an injectable clock;
 * - a stream the server closes normally (its timeout) is resumed at once.
 * The source is an interface, so the relist logic is tested with a fake watch source.
 */
import { Backoff, type BackoffOptions } from "./backoff.ts";
import { realClock, sleep, type Clock } from "./clock.ts";
import { KubeApiError, isGone, type KubeClient, type WatchEvent } from "./kube/client.ts";
import { collectionPath, objectKey, type KubeObject, type ResourceType } from "./kube/resources.ts";
import { silentLogger, type Logger } from "../util/log.ts";

export interface ListResult { items: KubeObject[]; resourceVersion: string }

export interface ListWatchSource {
  list(signal: AbortSignal): Promise<ListResult>;
  watch(resourceVersion: string, signal: AbortSignal): AsyncIterable<WatchEvent>;
}

export interface InformerHandlers {
  onAdd?(obj: KubeObject): void;
  onUpdate?(oldObj: KubeObject, newObj: KubeObject): void;
  onDelete?(obj: KubeObject): void;
}

export interface InformerOptions {
  name?: string;
  /**
   * Applied to every object before it is cached; the default drops metadata.managedFields, which
   * the operator never reads and which is often the largest part of an applied object.
   */
  transform?: (obj: KubeObject) => KubeObject;
  clock?: Clock;
  backoff?: BackoffOptions;
  logger?: Logger;
  /** Index the cached objects by the value of this label (see withLabel). */
  indexLabel?: string;
}

export class Informer {
  private readonly store = new Map<string, KubeObject>();
  /** Cached objects by the uid of each owner they name: a reconcile finds its owned objects without scanning them all. */
  private readonly owned = new Map<string, Map<string, KubeObject>>();
  /** Cached objects by their value of opts.indexLabel (Pods by cluster: a reconcile reads its own without scanning all). */
  private readonly labelled = new Map<string, Map<string, KubeObject>>();
  readonly indexLabel: string | undefined;
  private readonly handlers: InformerHandlers[] = [];
  private readonly abort = new AbortController();
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private readonly transform: (obj: KubeObject) => KubeObject;
  private resourceVersion = "";
  private synced = false;
  private syncWaiters: Array<() => void> = [];
  private loop: Promise<void> | undefined;
  /** How many times the informer listed (1 at start, +1 per relist); for tests and logs. */
  lists = 0;

  constructor(private readonly source: ListWatchSource, opts: InformerOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.backoff = new Backoff(opts.backoff);
    this.log = (opts.logger ?? silentLogger).with({ informer: opts.name ?? "informer" });
    this.transform = opts.transform ?? stripManagedFields;
    this.indexLabel = opts.indexLabel;
  }

  addHandlers(h: InformerHandlers): void { this.handlers.push(h); }

  get(key: string): KubeObject | undefined { return this.store.get(key); }
  list(): KubeObject[] { return [...this.store.values()]; }
  /** Cached objects whose ownerReferences name `uid`. */
  ownedBy(uid: string): KubeObject[] { return [...(this.owned.get(uid)?.values() ?? [])]; }
  /** Cached objects whose label opts.indexLabel has `value` (none when the informer has no such index). */
  withLabel(value: string): KubeObject[] { return [...(this.labelled.get(value)?.values() ?? [])]; }

  private put(key: string, obj: KubeObject, old: KubeObject | undefined): void {
    if (old !== undefined) this.unindex(key, old);
    this.store.set(key, obj);
    for (const r of obj.metadata?.ownerReferences ?? []) {
      let m = this.owned.get(r.uid);
      if (m === undefined) this.owned.set(r.uid, (m = new Map()));
      m.set(key, obj);
    }
    const value = this.indexLabel === undefined ? undefined : obj.metadata?.labels?.[this.indexLabel];
    if (value !== undefined) {
      let m = this.labelled.get(value);
      if (m === undefined) this.labelled.set(value, (m = new Map()));
      m.set(key, obj);
    }
  }

  private drop(key: string, old: KubeObject | undefined): void {
    if (old !== undefined) this.unindex(key, old);
    this.store.delete(key);
  }

  private unindex(key: string, old: KubeObject): void {
    for (const r of old.metadata?.ownerReferences ?? []) {
      const m = this.owned.get(r.uid);
      m?.delete(key);
      if (m?.size === 0) this.owned.delete(r.uid);
    }
    const value = this.indexLabel === undefined ? undefined : old.metadata?.labels?.[this.indexLabel];
    if (value !== undefined) {
      const m = this.labelled.get(value);
      m?.delete(key);
      if (m?.size === 0) this.labelled.delete(value);
    }
  }
  get lastResourceVersion(): string { return this.resourceVersion; }
  get hasSynced(): boolean { return this.synced; }

  waitForSync(): Promise<void> {
    return this.synced ? Promise.resolve() : new Promise((r) => this.syncWaiters.push(r));
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          const res = await this.source.list(signal);
          this.lists++;
          this.replace(res.items.map(this.transform));
          this.resourceVersion = res.resourceVersion;
          needList = false;
          if (!this.synced) { this.synced = true; for (const w of this.syncWaiters.splice(0)) w(); }
        }
        const started = this.clock.now();
        let events = 0;
        for await (const ev of this.source.watch(this.resourceVersion, signal)) {
          if (signal.aborted) break;
          events++;
          this.handle(ev);
          this.backoff.reset();
        }
        // A normal end is the server's watch timeout: resume at once, unless it keeps ending
        // immediately (then back off, as for an error).
        if (!signal.aborted && events === 0 && this.clock.now() - started < 1000) {
          await sleep(this.clock, this.backoff.next(), signal);
        }
      } catch (err) {
        if (signal.aborted) break;
        if (isGone(err)) {
          this.log.info("watch expired, relisting", { resourceVersion: this.resourceVersion });
          needList = true;
          continue;
        }
        const delay = this.backoff.next();
        this.log.warn("watch failed, reconnecting", { error: err instanceof Error ? err.message : String(err), delayMs: delay, relist: needList });
        await sleep(this.clock, delay, signal);
      }
    }
  }

  private handle(ev: WatchEvent): void {
    if (ev.type === "ERROR") {
      const s = ev.object as { code?: number; reason?: string; message?: string };
      throw new KubeApiError(s.code ?? 500, s.reason ?? "", s.message ?? "watch error");
    }
    const rv = ev.object.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
    if (ev.type === "BOOKMARK") return;
    const obj = this.transform(ev.object);
    const key = objectKey(obj);
    const old = this.store.get(key);
    if (ev.type === "DELETED") {
      this.drop(key, old);
      this.emitDelete(old ?? obj);
      return;
    }
    this.put(key, obj, old);
    if (old) this.emitUpdate(old, obj);
    else this.emitAdd(obj);
  }

  private replace(items: KubeObject[]): void {
    const seen = new Set<string>();
    for (const obj of items) {
      const key = objectKey(obj);
      seen.add(key);
      const old = this.store.get(key);
      this.put(key, obj, old);
      if (!old) this.emitAdd(obj);
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emitUpdate(old, obj);
    }
    for (const [key, obj] of this.store) {
      if (seen.has(key)) continue;
      this.drop(key, obj);
      this.emitDelete(obj);
    }
  }

  private emitAdd(o: KubeObject) { for (const h of this.handlers) this.safe(() => h.onAdd?.(o)); }
  private emitUpdate(a: KubeObject, b: KubeObject) { for (const h of this.handlers) this.safe(() => h.onUpdate?.(a, b)); }
  private emitDelete(o: KubeObject) { for (const h of this.handlers) this.safe(() => h.onDelete?.(o)); }
  private safe(fn: () => void): void {
    try { fn(); } catch (err) { this.log.error("informer handler failed", err); }
  }
}

export function stripManagedFields(obj: KubeObject): KubeObject {
  if (!obj.metadata?.managedFields) return obj;
  const { managedFields: _drop, ...metadata } = obj.metadata;
  return { ...obj, metadata };
}

export interface ListWatchOptions {
  namespace?: string;
  labelSelector?: string;
  /** Server-side watch timeout; randomised per stream like client-go (5-10 minutes). */
  watchTimeoutSeconds?: () => number;
}

/** A list/watch source over the real API for one resource type. */
export function apiListWatch(client: KubeClient, type: ResourceType, opts: ListWatchOptions = {}): ListWatchSource {
  const path = collectionPath(type, opts.namespace);
  const timeout = opts.watchTimeoutSeconds ?? (() => 300 + Math.floor(Math.random() * 300));
  return {
    async list(signal) {
      const items: KubeObject[] = [];
      let cont: string | undefined;
      let rv = "";
      do {
        const page = await client.request<{ items?: KubeObject[]; metadata?: { resourceVersion?: string; continue?: string } }>(
          "GET", path, { query: { labelSelector: opts.labelSelector, limit: 500, continue: cont }, signal });
        const kind = type.kind;
        for (const item of page.items ?? []) items.push({ apiVersion: type.apiVersion, kind, ...item });
        rv = page.metadata?.resourceVersion ?? rv;
        cont = page.metadata?.continue || undefined;
      } while (cont);
      return { items, resourceVersion: rv };
    },
    watch(resourceVersion, signal) {
      const timeoutSeconds = timeout();
      return client.watch(path, {
        query: { labelSelector: opts.labelSelector, resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
        signal,
        // a stream silent well past the server's own timeout is a dead connection: drop it
        timeoutMs: (timeoutSeconds + 30) * 1000,
      });
    },
  };
}
