import { test } from "node:test";
import assert from "node:assert/strict";
import { deepEqual, keepTransitionTimes } from "../../../src/operator/status.ts";
import { isSubset, ownedBy } from "../../../src/operator/reconciler.ts";

test("deepEqual ignores key order and undefined fields, not values or array order", () => {
  assert.ok(deepEqual({ a: 1, b: { c: [1, 2], d: "x" } }, { b: { d: "x", c: [1, 2] }, a: 1 }));
  assert.ok(deepEqual({ a: 1, b: undefined }, { a: 1 }));
  assert.ok(!deepEqual({ a: [1, 2] }, { a: [2, 1] }));
  assert.ok(!deepEqual({ a: 1 }, { a: 1, b: 2 }));
  assert.ok(!deepEqual({ a: "1" }, { a: 1 }));
  assert.ok(!deepEqual(undefined, {}));
});

test("a condition keeps its lastTransitionTime while its status is unchanged", () => {
  const prev = { conditions: [
    { type: "Ready", status: "False", reason: "Waiting", message: "a", lastTransitionTime: "2026-01-01T00:00:00Z" },
    { type: "Degraded", status: "False", reason: "OK", message: "", lastTransitionTime: "2026-01-01T00:00:00Z" },
  ] };
  const next = { phase: "Ready", conditions: [
    { type: "Ready", status: "True", reason: "Ready", message: "b", lastTransitionTime: "2026-01-02T00:00:00Z" },
    { type: "Degraded", status: "False", reason: "OK", message: "still fine", lastTransitionTime: "2026-01-02T00:00:00Z" },
    { type: "EnginesReady", status: "True", reason: "X", message: "", lastTransitionTime: "2026-01-02T00:00:00Z" },
  ] };
  const out = keepTransitionTimes(prev, next);
  assert.deepEqual(out.conditions.map((c) => c.lastTransitionTime), ["2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]);
  assert.equal(out.conditions[1]!.message, "still fine");
  assert.equal(keepTransitionTimes(undefined, next), next);
});

test("isSubset: desired fields must match the live object; extra live fields are fine", () => {
  const live = { spec: { replicas: 2, template: { spec: { containers: [{ name: "a", image: "x", ports: [] }] } } }, status: { ready: 1 } };
  assert.ok(isSubset({ spec: { replicas: 2 } }, live));
  assert.ok(isSubset({ spec: { template: { spec: { containers: [{ name: "a", image: "x" }] } } } }, live));
  assert.ok(!isSubset({ spec: { replicas: 3 } }, live));
  assert.ok(!isSubset({ spec: { template: { spec: { containers: [{ name: "a" }, { name: "b" }] } } } }, live));
  assert.ok(!isSubset({ data: { k: "v" } }, live));
  // the API server omits empty values (env value "", false, 0, [] ...)
  assert.ok(isSubset({ env: [{ name: "A", value: "" }], hostNetwork: false, args: [] }, { env: [{ name: "A" }] }));
  assert.ok(!isSubset({ env: [{ name: "A", value: "x" }] }, { env: [{ name: "A" }] }));
});

test("ownedBy selects objects by owner uid", () => {
  const mk = (name: string, uid?: string) => ({ metadata: { name, ownerReferences: uid ? [{ apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", name: "c", uid }] : [] } });
  assert.deepEqual(ownedBy("u1", [mk("a", "u1"), mk("b", "u2"), mk("c")]).map((o) => o.metadata!.name), ["a"]);
});
