import { test } from "node:test";
import assert from "node:assert/strict";
import { deepEqual, keepTransitionTimes } from "../../../src/operator/status.ts";
import { applyStage, isSubset, ownedBy } from "../../../src/operator/reconciler.ts";
import { planner } from "../../../src/operator/core/index.ts";
import { lazyGenerated } from "../../../src/operator/keys.ts";

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

test("a new mpi cluster's objects go out in two stages, whatever their number: what the workloads need, then the workloads", () => {
  const cluster = {
    apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster",
    metadata: { name: "psum", namespace: "science", uid: "u1", generation: 1, finalizers: [planner.finalizer] },
    spec: { engines: 4, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0", slotsPerWorker: 2 } } },
  };
  const p = planner.plan({ cluster, owned: [], generated: lazyGenerated(), now: new Date() } as Parameters<typeof planner.plan>[0]);
  const writes = p.actions.flatMap((a) => (a.type === "apply" || a.type === "create" ? [a.object] : []));
  const ranks = writes.map((o) => applyStage(o.kind));
  // the reconciler groups consecutive writes of one rank: the planner's order must give one group per stage
  const groups = ranks.filter((r, i) => i === 0 || r !== ranks[i - 1]);
  assert.deepEqual(groups, [0, 1]);
  assert.deepEqual(writes.filter((o) => applyStage(o.kind) === 1).map((o) => o.kind).sort(), ["Deployment", "Job", "StatefulSet"]);
  assert.ok(writes.some((o) => o.kind === "NetworkPolicy" && applyStage(o.kind) === 0), "the NetworkPolicy is written before any workload");
});
