/**
 * The load-balanced scheduler's engines: their order (least recently used first, as ipyparallel's
 * TaskScheduler keeps its `targets` list) and their loads, with every operation the scheduler makes
 * per task in O(log N) instead of a pass over all N engines:
 *
 * - an engine that joins goes to the front of the line, an engine that gets a task to the back;
 * - the engines that may take a task are those below the high-water mark (all of them with hwm 0);
 * - `leastLoaded()`: the available engine with the lowest load, ties to the front of the line (a
 *   binary heap keyed by (load, place in line));
 * - `nthAvailable(k)`: the k-th available engine in line (a Fenwick tree over places in line), which
 *   is what the lru, plainrandom and twobin choosers pick by index.
 *
 * Places in line are integers: joining takes the next free place before the front, moving to the back
 * the next one after it. When either end runs out of room the engines are renumbered in order
 * (O(N), once every N or more moves).
 */
export interface EngineEntry {
  readonly uuid: string;
  load: number;
  /** Place in line: smaller = used less recently. */
  place: number;
  /** Index in the heap (maintained by the heap). */
  heapIndex: number;
}

/** Min-heap of engines by (load, place in line). */
class LoadHeap {
  readonly items: EngineEntry[] = [];

  private less(a: EngineEntry, b: EngineEntry): boolean {
    return a.load < b.load || (a.load === b.load && a.place < b.place);
  }

  private set(i: number, e: EngineEntry): void {
    this.items[i] = e;
    e.heapIndex = i;
  }

  push(e: EngineEntry): void {
    this.set(this.items.length, e);
    this.up(e.heapIndex);
  }

  remove(e: EngineEntry): void {
    const i = e.heapIndex;
    const last = this.items.pop()!;
    if (last !== e) {
      this.set(i, last);
      this.update(last);
    }
    e.heapIndex = -1;
  }

  /** The entry's key changed. */
  update(e: EngineEntry): void {
    this.up(e.heapIndex);
    this.down(e.heapIndex);
  }

  top(): EngineEntry | undefined {
    return this.items[0];
  }

  private up(i: number): void {
    const e = this.items[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = this.items[p]!;
      if (!this.less(e, parent)) break;
      this.set(i, parent);
      i = p;
    }
    this.set(i, e);
  }

  private down(i: number): void {
    const n = this.items.length;
    const e = this.items[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(this.items[r]!, this.items[l]!) ? r : l;
      if (!this.less(this.items[c]!, e)) break;
      this.set(i, this.items[c]!);
      i = c;
    }
    this.set(i, e);
  }
}

/** Counts over places in line, with prefix sums and "find the k-th" in O(log size). */
class Fenwick {
  private tree: Int32Array;
  constructor(readonly size: number) {
    this.tree = new Int32Array(size + 1);
  }

  add(i: number, delta: number): void {
    for (let x = i + 1; x <= this.size; x += x & -x) this.tree[x]! += delta;
  }

  /** The smallest place whose prefix count exceeds k (the k-th marked place, 0-based). */
  find(k: number): number {
    let pos = 0;
    let step = 1;
    while (step * 2 <= this.size) step *= 2;
    for (; step > 0; step >>= 1) {
      const next = pos + step;
      if (next <= this.size && this.tree[next]! <= k) {
        pos = next;
        k -= this.tree[next]!;
      }
    }
    return pos; // 0-based place
  }
}

const MIN_CAPACITY = 1024;

export class EngineOrder {
  private readonly entries = new Map<string, EngineEntry>();
  private readonly heap = new LoadHeap();
  /** Engines by place in line (holes where an engine left or moved). */
  private slots: Array<EngineEntry | undefined>;
  private available: Fenwick;
  private front: number;
  private back: number;
  private availableN = 0;
  /** How many engines have each load (for "is any engine at hwm - 1"). */
  private readonly loadCounts = new Map<number, number>();

  /** `hwm`: an engine at or above this load takes no task; 0 = no limit. */
  constructor(private readonly hwm: number) {
    this.slots = new Array<EngineEntry | undefined>(MIN_CAPACITY);
    this.available = new Fenwick(MIN_CAPACITY);
    this.front = MIN_CAPACITY / 2 - 1;
    this.back = MIN_CAPACITY / 2;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Engines that may take a task now. */
  get availableCount(): number {
    return this.availableN;
  }

  has(uuid: string): boolean {
    return this.entries.has(uuid);
  }

  get(uuid: string): EngineEntry | undefined {
    return this.entries.get(uuid);
  }

  /** Engines with exactly this load. */
  countWithLoad(load: number): number {
    return this.loadCounts.get(load) ?? 0;
  }

  isAvailable(e: EngineEntry): boolean {
    return this.hwm === 0 || e.load < this.hwm;
  }

  /** Join at the front of the line with load 0. */
  addFront(uuid: string): EngineEntry {
    if (this.front < 0) this.renumber();
    const e: EngineEntry = { uuid, load: 0, place: this.front--, heapIndex: -1 };
    this.entries.set(uuid, e);
    this.place(e);
    this.countLoad(0, 1);
    this.heap.push(e);
    return e;
  }

  remove(uuid: string): void {
    const e = this.entries.get(uuid);
    if (!e) return;
    this.entries.delete(uuid);
    this.unplace(e);
    this.countLoad(e.load, -1);
    this.heap.remove(e);
  }

  /** To the back of the line (it was just given a task). */
  moveToBack(e: EngineEntry): void {
    if (this.back >= this.slots.length) this.renumber();
    this.unplace(e);
    e.place = this.back++;
    this.place(e);
    this.heap.update(e);
  }

  setLoad(e: EngineEntry, load: number): void {
    const was = this.isAvailable(e);
    this.countLoad(e.load, -1);
    e.load = load;
    this.countLoad(load, 1);
    const now = this.isAvailable(e);
    if (was !== now) {
      this.available.add(e.place, now ? 1 : -1);
      this.availableN += now ? 1 : -1;
    }
    this.heap.update(e);
  }

  /** The available engine with the lowest load, the least recently used of equals. */
  leastLoaded(): EngineEntry | undefined {
    const top = this.heap.top();
    return top && this.isAvailable(top) ? top : undefined;
  }

  /** The k-th (0-based) available engine in line. */
  nthAvailable(k: number): EngineEntry | undefined {
    if (k < 0 || k >= this.availableN) return undefined;
    return this.slots[this.available.find(k)];
  }

  /** Every engine, least recently used first (O(N)). */
  *inOrder(): Generator<EngineEntry> {
    for (let p = this.front + 1; p < this.back; p++) {
      const e = this.slots[p];
      if (e) yield e;
    }
  }

  private place(e: EngineEntry): void {
    this.slots[e.place] = e;
    if (this.isAvailable(e)) {
      this.available.add(e.place, 1);
      this.availableN++;
    }
  }

  private unplace(e: EngineEntry): void {
    this.slots[e.place] = undefined;
    if (this.isAvailable(e)) {
      this.available.add(e.place, -1);
      this.availableN--;
    }
  }

  private countLoad(load: number, delta: number): void {
    const n = (this.loadCounts.get(load) ?? 0) + delta;
    if (n === 0) this.loadCounts.delete(load);
    else this.loadCounts.set(load, n);
  }

  /** Renumber the places in line, keeping the order, with room at both ends. */
  private renumber(): void {
    const inLine = [...this.inOrder()];
    const capacity = Math.max(MIN_CAPACITY, 4 * inLine.length);
    this.slots = new Array<EngineEntry | undefined>(capacity);
    this.available = new Fenwick(capacity);
    this.availableN = 0;
    this.front = Math.floor((capacity - inLine.length) / 2) - 1;
    this.back = this.front + 1;
    for (const e of inLine) {
      e.place = this.back++;
      this.place(e);
    }
    // the order is unchanged, so the heap (keyed by load, then place) still holds
  }
}
