/**
 * Summarise a V8 .cpuprofile (from `node --cpu-prof`): total sampled time and the top functions by
 * self time and by inclusive time.
 *
 *   npx tsx bench/controller/cpuprofile-top.ts <file.cpuprofile> [N]
 */
import { readFileSync } from "node:fs";

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[] }

const [file, nArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write("usage: cpuprofile-top.ts <file.cpuprofile> [N]\n");
  process.exitCode = 2;
} else {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const top = Number(nArg ?? 30);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const sampled = new Map<number, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    sampled.set(id, (sampled.get(id) ?? 0) + dt);
    total += dt;
  });
  const name = (n: Node) => `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.replace(/^.*\/(node_modules|src)\//, "$1/")}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  for (const [id, t] of sampled) {
    const k = name(byId.get(id)!);
    self.set(k, (self.get(k) ?? 0) + t);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const key = name(byId.get(cur)!);
      if (seen.has(key)) continue;
      seen.add(key);
      incl.set(key, (incl.get(key) ?? 0) + t);
    }
  }
  const show = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([k, t]) => `${(t / 1000).toFixed(0).padStart(8)} ms ${((100 * t) / total).toFixed(1).padStart(5)}%  ${k}`).join("\n");
  console.log(`sampled ${(total / 1000).toFixed(0)} ms\n-- self time\n${show(self)}\n-- inclusive time\n${show(incl)}`);
}
