import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../../../src/operator/clock.ts";
import { KubeApiError, type KubeClient, type RequestOptions } from "../../../src/operator/kube/client.ts";
import { LeaderElector } from "../../../src/operator/leader.ts";

/** One Lease in memory with the API server's optimistic concurrency (resourceVersion → 409). */
function leaseStore() {
  let lease: { metadata: Record<string, unknown>; spec: Record<string, unknown> } | undefined;
  let rv = 0;
  let down = false;
  const client: KubeClient = {
    server: "memory",
    async request<T>(method: string, _path: string, opts: RequestOptions = {}): Promise<T> {
      if (down) throw new Error("connection refused");
      const body = opts.body as typeof lease;
      if (method === "GET") {
        if (!lease) throw new KubeApiError(404, "NotFound", "not found");
        return structuredClone(lease) as T;
      }
      if (method === "POST") {
        if (lease) throw new KubeApiError(409, "AlreadyExists", "exists");
        lease = { ...body!, metadata: { ...body!.metadata, resourceVersion: String(++rv) } };
        return structuredClone(lease) as T;
      }
      if (method === "PUT") {
        if (body!.metadata.resourceVersion !== lease?.metadata.resourceVersion) throw new KubeApiError(409, "Conflict", "conflict");
        lease = { ...body!, metadata: { ...body!.metadata, resourceVersion: String(++rv) } };
        return structuredClone(lease) as T;
      }
      throw new Error(`unexpected ${method}`);
    },
    watch() { throw new Error("no watch"); },
    close() {},
  };
  return { client, holder: () => lease?.spec.holderIdentity, setDown: (d: boolean) => { down = d; } };
}

const elector = (client: KubeClient, identity: string, clock: FakeClock) =>
  new LeaderElector({ client, namespace: "ns", name: "lease", identity, clock });

test("the first candidate takes a free Lease; another waits until it expires on its own clock", async () => {
  const clock = new FakeClock(1_000_000);
  const store = leaseStore();
  const a = elector(store.client, "a", clock);
  const b = elector(store.client, "b", clock);
  assert.equal(await a.tryAcquireOrRenew(), true);
  assert.equal(store.holder(), "a");
  assert.equal(await b.tryAcquireOrRenew(), false);
  clock.advance(10_000);
  assert.equal(await b.tryAcquireOrRenew(), false, "a's record has not changed for 10 s < 15 s: still held");
  clock.advance(5_001);
  assert.equal(await b.tryAcquireOrRenew(), true, "unchanged for more than the lease duration: expired");
  assert.equal(store.holder(), "b");
  assert.equal(await a.tryAcquireOrRenew(), false, "a sees a fresh record from b");
});

test("a renewing holder keeps the Lease; a released Lease is taken at once", async () => {
  const clock = new FakeClock(0);
  const store = leaseStore();
  const a = elector(store.client, "a", clock);
  const b = elector(store.client, "b", clock);
  await a.acquire(new AbortController().signal);
  assert.equal(a.isLeader, true);
  assert.equal(await b.tryAcquireOrRenew(), false);
  for (let i = 0; i < 10; i++) {
    clock.advance(2_000);
    assert.equal(await a.tryAcquireOrRenew(), true);
    assert.equal(await b.tryAcquireOrRenew(), false, "the record keeps changing, so it never looks expired");
  }
  await a.release();
  assert.equal(a.isLeader, false);
  assert.equal(await b.tryAcquireOrRenew(), true, "released: no need to wait for expiry");
});

test("a leader that cannot renew within the renew deadline steps down", async () => {
  const clock = new FakeClock(0);
  const store = leaseStore();
  const changes: boolean[] = [];
  const a = new LeaderElector({ client: store.client, namespace: "ns", name: "lease", identity: "a", clock, onChange: (v) => changes.push(v) });
  await a.acquire(new AbortController().signal);
  const ac = new AbortController();
  const held = a.holdLeadership(ac.signal);
  store.setDown(true);
  for (let i = 0; i < 8; i++) { clock.advance(2_000); await new Promise((r) => setImmediate(r)); await new Promise((r) => setImmediate(r)); }
  assert.equal(await held, "lost");
  assert.deepEqual(changes, [true, false]);
});
