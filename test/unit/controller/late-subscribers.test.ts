import { test } from "node:test";
import assert from "node:assert/strict";
import { LateSubscribers } from "../../../src/controller/core/late-subscribers.ts";

test("late subscribers: engines that changed since the oldest connection reply are notified again at a subscription", () => {
  const l = new LateSubscribers(30_000);
  l.engineChanged(0, "u0", 1_000); // before any client asked: its connection reply lists it
  assert.equal(l.size, 0);
  l.connectionReplied(2_000);
  l.engineChanged(1, "u1", 2_100);
  l.engineChanged(2, "u2", 2_200);
  l.engineChanged(1, "u1", 2_300); // registered then gone: once, in its latest place
  assert.deepEqual(l.subscribed(2_400), [{ id: 2, uuid: "u2" }, { id: 1, uuid: "u1" }]);
  // a second client connecting later still gets everything since the first reply in the window
  l.connectionReplied(5_000);
  l.engineChanged(3, "u3", 5_100);
  assert.deepEqual(l.subscribed(5_200).map((e) => e.id), [2, 1, 3]);
});

test("late subscribers: replies older than the window are forgotten, and the changes only they needed", () => {
  const l = new LateSubscribers(1_000);
  l.connectionReplied(0);
  l.engineChanged(1, "u1", 100);
  l.connectionReplied(900);
  l.engineChanged(2, "u2", 950);
  assert.deepEqual(l.subscribed(1_050).map((e) => e.id), [2]); // the reply at 0 is out of the window
  assert.equal(l.size, 1);
  assert.deepEqual(l.subscribed(2_000), []); // no reply in the window: nothing to repeat
  l.engineChanged(3, "u3", 2_100);
  assert.equal(l.size, 0);
});
