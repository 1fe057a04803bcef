/**
 * A bounded, insertion-ordered map: the most recent `capacity` keys are kept, the oldest one is
 * forgotten when a new key would exceed the capacity. The controller's per-task history (which
 * tasks completed, which failed and where they ran) lives in these, so that it stays the same
 * size however many tasks have run. Upstream keeps the same sets unbounded.
 *
 * The eviction order is kept in a ring of keys beside the Map, so forgetting the oldest key is
 * O(1) without iterating the Map (whose deleted slots would make a fresh iterator skip holes).
 * Setting a key that is already present updates its value and keeps its age.
 */
export class RecentMap<K, V> {
  private readonly map = new Map<K, V>();
  private readonly ring: (K | undefined)[];
  private head = 0; // the oldest key's slot
  private count = 0;
  /** Keys forgotten so far to make room. */
  evicted = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.ring = new Array<K | undefined>(Math.min(capacity, 1024));
  }

  get size(): number {
    return this.map.size;
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  /** Remember `key`; returns the key forgotten to make room, if any. */
  set(key: K, value: V): K | undefined {
    if (this.map.has(key)) {
      this.map.set(key, value);
      return undefined;
    }
    let forgotten: K | undefined;
    if (this.count === this.capacity) {
      forgotten = this.ring[this.head];
      this.ring[this.head] = undefined;
      this.map.delete(forgotten as K);
      this.head = (this.head + 1) % this.ring.length;
      this.count--;
      this.evicted++;
    } else if (this.count === this.ring.length) {
      this.grow();
    }
    this.ring[(this.head + this.count) % this.ring.length] = key;
    this.count++;
    this.map.set(key, value);
    return forgotten;
  }

  keys(): IterableIterator<K> {
    return this.map.keys();
  }

  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }

  /** The ring starts small and doubles up to the capacity, so a large capacity costs nothing until used. */
  private grow(): void {
    const size = Math.min(this.capacity, this.ring.length * 2);
    const old = this.ring.splice(0, this.ring.length);
    for (let i = 0; i < this.count; i++) this.ring[i] = old[(this.head + i) % old.length];
    this.ring.length = size;
    this.head = 0;
  }
}

/** A RecentMap without values: a bounded set of the most recent keys. */
export class RecentSet<K> {
  private readonly m: RecentMap<K, true>;

  constructor(capacity: number) {
    this.m = new RecentMap(capacity);
  }

  get size(): number {
    return this.m.size;
  }

  get capacity(): number {
    return this.m.capacity;
  }

  get evicted(): number {
    return this.m.evicted;
  }

  has(key: K): boolean {
    return this.m.has(key);
  }

  /** Remember `key`; returns false if it was already remembered. */
  add(key: K): boolean {
    if (this.m.has(key)) return false;
    this.m.set(key, true);
    return true;
  }

  [Symbol.iterator](): IterableIterator<K> {
    return this.m.keys();
  }
}
