/**
 * The real API server rejects invalid EngineClusters with the CRD generated into crds/: OpenAPI
 * schema rules and CEL rules, each with a message that names the field.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { KubeApiError } from "../../../src/operator/kube/client.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";

const NS = "validation";
let api: ApiServer;
before(async () => {
  api = await startApiServer();
  await createNamespace(api.client, NS);
});
after(async () => { await api?.stop(); });

const mpi = { image: "ghcr.io/example/ipp-engine:1.0" };
const pbs = { host: "login.example.org", user: "alice", credentialsSecret: "hpc-ssh" };

function ec(name: string, spec: unknown) {
  return { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name, namespace: NS }, spec };
}

async function rejected(obj: unknown, ...fragments: RegExp[]): Promise<void> {
  return rejectedWith(422, obj, ...fragments);
}

async function rejectedWith(status: number, obj: unknown, ...fragments: RegExp[]): Promise<void> {
  try {
    await api.client.request("POST", `/apis/ipp.dev/v1alpha1/namespaces/${NS}/engineclusters`, {
      body: obj, query: { fieldValidation: "Strict" },
    });
  } catch (err) {
    assert.ok(err instanceof KubeApiError, String(err));
    assert.equal(err.status, status, err.message);
    for (const f of fragments) assert.match(err.message, f);
    return;
  }
  assert.fail("the API server accepted an invalid EngineCluster");
}

test("a valid EngineCluster is accepted and defaults are applied by the API server", async () => {
  const created = await api.client.request<{ spec: { backend: { mpi: { slotsPerWorker: number; implementation: string } } } }>(
    "POST", `/apis/ipp.dev/v1alpha1/namespaces/${NS}/engineclusters`, { body: ec("ok", { engines: 4, backend: { mpi } }) });
  assert.equal(created.spec.backend.mpi.slotsPerWorker, 1);
  assert.equal(created.spec.backend.mpi.implementation, "openmpi");
});

test("schema: engines must be at least 1", async () => {
  await rejected(ec("zero", { engines: 0, backend: { mpi } }), /spec\.engines/, /greater than or equal to 1/);
});

test("schema: required fields and enums", async () => {
  await rejected(ec("noimage", { engines: 2, backend: { mpi: {} } }), /spec\.backend\.mpi\.image/, /Required/);
  await rejected(ec("badimpl", { engines: 2, backend: { mpi: { ...mpi, implementation: "lam" } } }), /spec\.backend\.mpi\.implementation/, /supported values/i);
});

test("schema: shell metacharacters in fields that reach a remote shell are rejected", async () => {
  await rejected(ec("shell", { engines: 2, backend: { pbs: { ...pbs, queue: "batch;rm -rf ~" } } }), /spec\.backend\.pbs\.queue/);
  await rejected(ec("shellline", { engines: 2, backend: { pbs: { ...pbs, setup: ["module load gcc && curl x | sh"] } } }), /spec\.backend\.pbs\.setup\[0\]/);
});

test("schema: unknown fields are rejected under strict field validation", async () => {
  // Strict decoding fails before validation: 400 Bad Request rather than 422.
  await rejectedWith(400, ec("unknown", { engines: 2, enignes: 3, backend: { mpi } }), /unknown field "spec\.enignes"/);
});

test("CEL: exactly one backend", async () => {
  await rejected(ec("two", { engines: 2, backend: { mpi, pbs } }), /exactly one of mpi or pbs must be set/);
  await rejected(ec("none", { engines: 2, backend: {} }), /exactly one of mpi or pbs must be set/);
});

test("CEL: workers × slotsPerWorker must cover engines", async () => {
  await rejected(ec("small", { engines: 8, backend: { mpi: { ...mpi, workers: 2, slotsPerWorker: 2 } } }),
    /spec\.backend\.mpi\.workers/, /must be at least spec\.engines/);
});

test("CEL: select and nodes/ppn are exclusive; direct networking needs an address", async () => {
  await rejected(ec("both", { engines: 2, backend: { pbs: { ...pbs, select: "1:ncpus=2", nodes: 1 } } }), /either select .* or nodes\/ppn/);
  await rejected(ec("direct", { engines: 2, backend: { pbs: { ...pbs, network: { mode: "direct" } } } }), /network\.address is required/);
});

test("the scale subresource changes spec.engines and is validated too", async () => {
  const path = `/apis/ipp.dev/v1alpha1/namespaces/${NS}/engineclusters/ok/scale`;
  const scale = await api.client.request<{ spec: { replicas: number } }>("GET", path);
  assert.equal(scale.spec.replicas, 4);
  await api.client.request("PATCH", path, { body: { spec: { replicas: 6 } }, contentType: "application/merge-patch+json" });
  const after = await api.client.request<{ spec: { engines: number } }>("GET", `/apis/ipp.dev/v1alpha1/namespaces/${NS}/engineclusters/ok`);
  assert.equal(after.spec.engines, 6);
  await assert.rejects(
    api.client.request("PATCH", path, { body: { spec: { replicas: 0 } }, contentType: "application/merge-patch+json" }),
    (e: unknown) => e instanceof KubeApiError && e.status === 422 && /greater than or equal to 1/.test(e.message),
  );
});
