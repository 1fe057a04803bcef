import { test } from "node:test";
import assert from "node:assert/strict";
import { descendants, isLive, parseStat, type ProcInfo } from "../../../src/local/proctree.ts";

const stat = (pid: number, comm: string, state: string, ppid: number, start: number) =>
  `${pid} (${comm}) ${state} ${ppid} 1 1 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 ${start} 1000 10 18446744073709551615`;

test("parseStat reads pid, comm (with spaces and parentheses), state, ppid and start time", () => {
  assert.deepEqual(parseStat(stat(42, "python3", "S", 7, 12345)), { pid: 42, ppid: 7, state: "S", start: 12345, comm: "python3" });
  assert.deepEqual(parseStat(stat(43, "a (b) c", "Z", 1, 99)), { pid: 43, ppid: 1, state: "Z", start: 99, comm: "a (b) c" });
  assert.equal(parseStat("garbage"), undefined);
});

function table(rows: [number, number, string?][]): Map<number, ProcInfo> {
  return new Map(rows.map(([pid, ppid, state]) => [pid, { pid, ppid, state: state ?? "S", start: pid * 10, comm: `p${pid}` }]));
}

test("descendants walks the whole subtree breadth-first and nothing else", () => {
  const t = table([[1, 0], [10, 1], [11, 10], [12, 10], [13, 11], [14, 13], [20, 1], [21, 20]]);
  assert.deepEqual(descendants(t, 10).map((p) => p.pid), [11, 12, 13, 14]);
  assert.deepEqual(descendants(t, 14), []);
  assert.deepEqual(descendants(t, 99), []);
});

test("descendants terminates on a parent cycle", () => {
  const t = table([[5, 6], [6, 5]]);
  assert.deepEqual(descendants(t, 5).map((p) => p.pid), [6]);
});

test("isLive: a zombie, a reused PID or a missing PID is not alive", () => {
  const t = table([[10, 1], [11, 1, "Z"]]);
  assert.equal(isLive(t, 10, 100), true);
  assert.equal(isLive(t, 10, 101), false); // same pid, other start time: PID reused
  assert.equal(isLive(t, 11, 110), false);
  assert.equal(isLive(t, 12, 120), false);
});
