import { test } from "node:test";
import assert from "node:assert/strict";
import { Registrations } from "../../../src/controller/core/registrations.ts";

const free = () => false;

test("registrations: a heart in time completes its registration; the earliest deadline is first in line", () => {
  const r = new Registrations();
  r.accept("a", 0, 1_000);
  r.accept("b", 1, 1_010);
  assert.equal(r.size, 2);
  assert.equal(r.nextDeadline(), 1_000);
  assert.ok(r.has("a") && r.hasId(0));
  assert.equal(r.complete("a"), 0);
  assert.equal(r.complete("a"), undefined);
  assert.ok(!r.has("a") && !r.hasId(0));
  assert.equal(r.nextDeadline(), 1_010);
  assert.equal(r.complete("b"), 1);
  assert.equal(r.nextDeadline(), undefined);
  assert.deepEqual(r.expire(10_000), []);
});

test("registrations: expire purges what is due, in order, and no more; a deadline never goes back", () => {
  const r = new Registrations();
  r.accept("a", 0, 100);
  r.accept("b", 1, 200);
  r.accept("c", 2, 150); // raised to 200: the first in line is always the earliest
  r.accept("d", 3, 300);
  assert.deepEqual(r.expire(99), []);
  assert.deepEqual(r.expire(200).map((x) => [x.uuid, x.id, x.deadline]), [["a", 0, 100], ["b", 1, 200], ["c", 2, 200]]);
  assert.equal(r.size, 1);
  assert.equal(r.purgedSize, 3);
  assert.ok(!r.hasId(0) && !r.hasId(2) && r.hasId(3));
  assert.equal(r.nextDeadline(), 300);
});

test("registrations: a purged registration's late heart completes it under its id, once", () => {
  const r = new Registrations();
  r.accept("a", 7, 100);
  r.expire(100);
  assert.equal(r.has("a"), false);
  assert.deepEqual(r.lateHeart("a", free), { kind: "complete", id: 7 });
  assert.deepEqual(r.lateHeart("a", free), { kind: "unknown" });
  assert.deepEqual(r.lateHeart("never-seen", free), { kind: "unknown" });
  assert.equal(r.purgedSize, 0);
});

test("registrations: a late heart whose id a registered or registering engine took meanwhile stays out", () => {
  const r = new Registrations();
  r.accept("a", 3, 100);
  r.accept("b", 4, 100);
  r.expire(100);
  assert.deepEqual(r.lateHeart("a", (id) => id === 3), { kind: "id-taken", id: 3 });
  r.accept("c", 4, 500); // a new engine asked for 4 and is registering
  assert.deepEqual(r.lateHeart("b", free), { kind: "id-taken", id: 4 });
  assert.equal(r.purgedSize, 0, "decided once: the record is gone either way");
});

test("registrations: the memory of purged registrations is bounded, oldest forgotten first", () => {
  const r = new Registrations(2);
  for (let i = 0; i < 5; i++) r.accept(`u${i}`, i, i);
  r.expire(2); // u0..u2 purged, only the last two kept
  assert.equal(r.purgedSize, 2);
  assert.deepEqual(r.lateHeart("u0", free), { kind: "unknown" });
  r.expire(10);
  assert.equal(r.purgedSize, 2);
  assert.deepEqual(r.lateHeart("u2", free), { kind: "unknown" });
  assert.deepEqual(r.lateHeart("u3", free), { kind: "complete", id: 3 });
  assert.deepEqual(r.lateHeart("u4", free), { kind: "complete", id: 4 });
});

test("registrations: a new registration of a purged uuid replaces the purged one; cancelling an id forgets both kinds", () => {
  const r = new Registrations();
  r.accept("a", 1, 100);
  r.expire(100);
  r.accept("a", 2, 500);
  assert.equal(r.purgedSize, 0);
  assert.equal(r.complete("a"), 2);

  r.accept("b", 5, 600);
  r.accept("c", 6, 700);
  r.expire(600); // b purged
  r.accept("d", 5, 800); // 5 asked for again by another engine
  assert.deepEqual(r.cancelId(5), ["d"]); // the engine holding 5 said it is leaving
  assert.equal(r.hasId(5), false);
  assert.deepEqual(r.lateHeart("b", free), { kind: "unknown" }, "a cancelled id is not completed later");
  assert.deepEqual(r.cancelId(42), []);
  assert.equal(r.size, 1);
});
