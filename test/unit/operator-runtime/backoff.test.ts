import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff } from "../../../src/operator/backoff.ts";
import { FakeClock, sleep } from "../../../src/operator/clock.ts";

test("backoff doubles to the cap, adds bounded jitter and resets after success", () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0, random: () => 0.5 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => b.next()), [100, 200, 400, 800, 1000, 1000]);
  b.reset();
  assert.equal(b.next(), 100);
  const j = new Backoff({ initialMs: 100, jitter: 0.5, random: () => 1 });
  assert.equal(j.next(), 150);
});

test("sleep on a fake clock resolves when time is advanced, or at once on abort", async () => {
  const clock = new FakeClock();
  let done = false;
  const p = sleep(clock, 500).then(() => { done = true; });
  clock.advance(499);
  await Promise.resolve();
  assert.equal(done, false);
  clock.advance(1);
  await p;
  assert.equal(done, true);
  const ac = new AbortController();
  const q = sleep(clock, 10_000, ac.signal);
  ac.abort();
  await q;
  assert.equal(clock.pending, 0, "the aborted timer was cancelled");
});
