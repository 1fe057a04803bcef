/**
 * A bounded, insertion-ordered map from string keys: the most recent `capacity` keys are kept, the
 * oldest one is forgotten when a new key would exceed the capacity. The controller's per-task
 * history (which tasks completed, which failed and where they ran, the signatures already seen)
 * lives in these, so that it stays the same size however many tasks have run. Upstream keeps the
 * same sets unbounded.
 *
 * The memory is laid out once, at full capacity, in typed arrays rather than as one JavaScript
 * string and one Map entry per key: keys are stored as their UTF-8 bytes in fixed 64-byte slots
 * of one buffer (a msg_id or an HMAC-SHA256 hex signature fits; a longer key keeps its string), an
 * open-addressing index (linear probing, at most half full) points at the slots, and the slots
 * form a ring in age order, so forgetting the oldest key is O(1) and reuses its slot. A history
 * that fills therefore adds nothing to the JavaScript heap: with one string and one Map entry per
 * key, three histories of 65,536 ids made up about 25 MB of the controller's live heap, which V8
 * sizes its old generation from, and the heap (and RSS) kept growing until the slowest of them had
 * filled (bench/controller/soak.ts). The slot buffer's pages become resident as they are first
 * written, at most 64 bytes a key.
 *
 * Setting a key that is already present updates its value and keeps its age.
 */

/** Bytes of a key slot; longer keys (in UTF-8) are kept as strings beside the slots. */
export const KEY_SLOT_BYTES = 64;
const LONG = 0xff;
const EMPTY = 0;
const SURROGATE = /[\uD800-\uDFFF]/;

/** FNV-1a over UTF-16 code units, then mixed so that the low bits (the bucket) depend on every unit. */
function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

export class RecentMap<K extends string, V> {
  private readonly keyBytes: Buffer;
  /** Key bytes in each slot; LONG: the key is in `longKeys`. */
  private readonly keyLens: Uint8Array;
  private readonly longKeys = new Map<number, K>();
  private readonly hashes: Uint32Array;
  private readonly values: (V | undefined)[];
  /** Bucket → slot + 1 (EMPTY: free). */
  private readonly index: Int32Array;
  private readonly mask: number;
  /** The encoded key of the current operation. */
  private readonly scratch = Buffer.alloc(KEY_SLOT_BYTES * 3);
  private head = 0; // the oldest key's slot
  private count = 0;
  /** Keys forgotten so far to make room. */
  evicted = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 2 ** 29) throw new RangeError(`capacity must be a positive integer up to 2**29, got ${capacity}`);
    // Buffer.alloc of a large size is calloc'd: untouched pages cost nothing until a key is written
    this.keyBytes = Buffer.alloc(capacity * KEY_SLOT_BYTES);
    this.keyLens = new Uint8Array(capacity);
    this.hashes = new Uint32Array(capacity);
    this.values = new Array<V | undefined>(capacity).fill(undefined);
    let buckets = 2;
    while (buckets < capacity * 2) buckets *= 2;
    this.index = new Int32Array(buckets);
    this.mask = buckets - 1;
  }

  get size(): number {
    return this.count;
  }

  has(key: K): boolean {
    return this.find(key, hashKey(key), this.encode(key)) >= 0;
  }

  get(key: K): V | undefined {
    const b = this.find(key, hashKey(key), this.encode(key));
    return b < 0 ? undefined : this.values[this.index[b]! - 1];
  }

  /** Remember `key` with `value` (the oldest key is forgotten if the map is full). */
  set(key: K, value: V): void {
    const h = hashKey(key);
    const n = this.encode(key);
    const found = this.find(key, h, n);
    if (found >= 0) {
      this.values[this.index[found]! - 1] = value;
      return;
    }
    if (this.count === this.capacity) this.forgetOldest();
    const slot = (this.head + this.count) % this.capacity;
    if (n < 0) {
      this.keyLens[slot] = LONG;
      this.longKeys.set(slot, key);
    } else {
      this.keyLens[slot] = n;
      this.scratch.copy(this.keyBytes, slot * KEY_SLOT_BYTES, 0, n);
    }
    this.hashes[slot] = h;
    this.values[slot] = value;
    let b = h & this.mask;
    while (this.index[b] !== EMPTY) b = (b + 1) & this.mask;
    this.index[b] = slot + 1;
    this.count++;
  }

  /** Keys, oldest first. */
  *keys(): IterableIterator<K> {
    for (let i = 0; i < this.count; i++) yield this.keyAt((this.head + i) % this.capacity);
  }

  /** [key, value] pairs, oldest first. */
  *entries(): IterableIterator<[K, V]> {
    for (let i = 0; i < this.count; i++) {
      const slot = (this.head + i) % this.capacity;
      yield [this.keyAt(slot), this.values[slot] as V];
    }
  }

  /** The key's UTF-8 bytes into the scratch buffer: their count, or -1 if they do not fit a slot. */
  private encode(key: string): number {
    const len = key.length;
    if (len > KEY_SLOT_BYTES) return -1;
    const s = this.scratch;
    for (let i = 0; i < len; i++) {
      const c = key.charCodeAt(i);
      if (c > 0x7f) {
        // a lone surrogate would be written as U+FFFD (two keys, one byte string): keys with
        // surrogates keep their string
        if (SURROGATE.test(key)) return -1;
        const n = s.write(key, 0, "utf8");
        return n > KEY_SLOT_BYTES ? -1 : n;
      }
      s[i] = c;
    }
    return len;
  }

  /** The bucket holding `key` (hash `h`, encoded length `n` or -1), or -1. */
  private find(key: K, h: number, n: number): number {
    for (let b = h & this.mask; ; b = (b + 1) & this.mask) {
      const s = this.index[b]!;
      if (s === EMPTY) return -1;
      const slot = s - 1;
      if (this.hashes[slot] === h && this.slotHolds(slot, key, n)) return b;
    }
  }

  private slotHolds(slot: number, key: K, n: number): boolean {
    const len = this.keyLens[slot]!;
    if (len === LONG) return n < 0 && this.longKeys.get(slot) === key;
    if (len !== n) return false;
    const kb = this.keyBytes;
    const s = this.scratch;
    const off = slot * KEY_SLOT_BYTES;
    for (let i = 0; i < n; i++) if (kb[off + i] !== s[i]) return false;
    return true;
  }

  private keyAt(slot: number): K {
    const len = this.keyLens[slot]!;
    if (len === LONG) return this.longKeys.get(slot)!;
    const off = slot * KEY_SLOT_BYTES;
    return this.keyBytes.toString("utf8", off, off + len) as K;
  }

  /** Drop the oldest key: clear its bucket, then move later entries of its probe run back (no tombstones). */
  private forgetOldest(): void {
    const slot = this.head;
    let b = this.hashes[slot]! & this.mask;
    while (this.index[b] !== slot + 1) b = (b + 1) & this.mask;
    this.index[b] = EMPTY;
    for (let j = (b + 1) & this.mask; this.index[j] !== EMPTY; j = (j + 1) & this.mask) {
      const home = this.hashes[this.index[j]! - 1]! & this.mask;
      // the entry at j may move into the hole at b unless its home lies cyclically in (b, j]
      const stays = b <= j ? home > b && home <= j : home > b || home <= j;
      if (!stays) {
        this.index[b] = this.index[j]!;
        this.index[j] = EMPTY;
        b = j;
      }
    }
    if (this.keyLens[slot] === LONG) this.longKeys.delete(slot);
    this.values[slot] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    this.evicted++;
  }
}

/** A RecentMap without values: a bounded set of the most recent keys. */
export class RecentSet<K extends string> {
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
