/**
 * Compares two V8 heap snapshots (.heapsnapshot, e.g. written by soak.ts --snapshot-at): the live
 * objects of each, grouped by kind and constructor (or, for strings and arrays, by node type),
 * with count and self size, sorted by how much a group grew from the first to the second. A
 * snapshot holds only what survives a full collection, so this is the live set, not the heap's
 * size; what grows here is retained by something.
 *
 *   node --max-old-space-size=4000 --import tsx bench/controller/heap-compare.ts A.heapsnapshot B.heapsnapshot [top=25]
 */
import { readFileSync } from "node:fs";

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

interface Group { count: number; bytes: number }

function groups(path: string): { total: number; byKey: Map<string, Group> } {
  const snap = JSON.parse(readFileSync(path, "utf8")) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const [iType, iName, iSize] = ["type", "name", "self_size"].map((f) => fields.indexOf(f)) as [number, number, number];
  const byKey = new Map<string, Group>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]!]!;
    const name = snap.strings[snap.nodes[i + iName]!]!;
    const size = snap.nodes[i + iSize]!;
    // strings and numbers are grouped by type (their "name" is their value)
    const key = type === "object" || type === "closure" || type === "native" ? `${type}:${name.slice(0, 60)}` : type === "array" ? `array:${name.slice(0, 40)}` : type;
    const g = byKey.get(key) ?? { count: 0, bytes: 0 };
    g.count++;
    g.bytes += size;
    byKey.set(key, g);
    total += size;
  }
  return { total, byKey };
}

const [a, b, topArg] = process.argv.slice(2);
if (!a || !b) {
  console.error("usage: heap-compare.ts A.heapsnapshot B.heapsnapshot [top]");
  process.exit(2);
}
const top = Number(topArg ?? 25);
const A = groups(a);
const B = groups(b);
const keys = new Set([...A.byKey.keys(), ...B.byKey.keys()]);
const rows = [...keys].map((k) => {
  const x = A.byKey.get(k) ?? { count: 0, bytes: 0 };
  const y = B.byKey.get(k) ?? { count: 0, bytes: 0 };
  return { k, x, y, d: y.bytes - x.bytes };
});
const mb = (n: number) => (n / 1024 / 1024).toFixed(2);
console.log(`live heap: ${mb(A.total)} MB → ${mb(B.total)} MB (${mb(B.total - A.total)} MB)`);
console.log(`${"group".padEnd(64)} ${"count A".padStart(9)} ${"count B".padStart(9)} ${"MB A".padStart(8)} ${"MB B".padStart(8)} ${"Δ MB".padStart(8)}`);
const show = (list: typeof rows) => {
  for (const r of list) console.log(`${r.k.padEnd(64)} ${String(r.x.count).padStart(9)} ${String(r.y.count).padStart(9)} ${mb(r.x.bytes).padStart(8)} ${mb(r.y.bytes).padStart(8)} ${mb(r.d).padStart(8)}`);
};
console.log("-- largest in B");
show([...rows].sort((p, q) => q.y.bytes - p.y.bytes).slice(0, top));
console.log("-- grew most");
show([...rows].sort((p, q) => q.d - p.d).slice(0, top));
