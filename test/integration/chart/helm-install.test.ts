/**
 * What a user does first, against a real kube-apiserver: `helm install` the chart (CRD included),
 * `kubectl apply` an example EngineCluster, `helm uninstall` — the CRD stays (resource-policy keep),
 * so the users' EngineClusters survive an uninstall; everything else the release made is gone.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { isNotFound } from "../../../src/operator/kube/client.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { REPO_ROOT } from "../../support/paths.ts";
import { helmPath } from "../../support/tools.ts";

// The API server starts with an unrelated CRD only, so the chart is what installs ours.
const crdDir = mkdtempSync(join(tmpdir(), "ipp-helm-crds-"));
writeFileSync(join(crdDir, "widgets.yaml"), JSON.stringify({
  apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition",
  metadata: { name: "widgets.example.org" },
  spec: {
    group: "example.org", scope: "Namespaced", names: { plural: "widgets", singular: "widget", kind: "Widget" },
    versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
  },
}));

let api: ApiServer;
before(async () => { api = await startApiServer({ crdDir }); });
after(async () => {
  await api?.stop();
  rmSync(crdDir, { recursive: true, force: true });
});

const NS = "ipp-system";
const CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/engineclusters.ipp.dev";

function helm(...args: string[]): string {
  const r = spawnSync(helmPath(), [...args, "--kubeconfig", api.kubeconfigPath], { encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, `helm ${args.join(" ")}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function exists(path: string): Promise<boolean> {
  try { await api.client.request("GET", path); return true; } catch (err) { if (isNotFound(err)) return false; throw err; }
}

test("helm install → CRD established and operator objects created; an example EngineCluster is admitted; helm uninstall keeps the CRD", async () => {
  helm("install", "ipp", join(REPO_ROOT, "charts/ipp-operator"), "--namespace", NS, "--create-namespace");

  const crd = await api.client.request<{ metadata: { annotations?: Record<string, string> }; status?: { conditions?: Array<{ type: string; status: string }> } }>("GET", CRD_PATH);
  assert.equal(crd.metadata.annotations?.["helm.sh/resource-policy"], "keep");
  for (let i = 0; !(crd.status?.conditions ?? []).some((c) => c.type === "Established" && c.status === "True"); i++) {
    assert.ok(i < 100, "the CRD becomes Established");
    await new Promise((r) => setTimeout(r, 100));
    Object.assign(crd, await api.client.request("GET", CRD_PATH));
  }
  const deploy = await api.client.request<{ spec: { template: { spec: { serviceAccountName: string; containers: Array<{ image: string; args: string[] }> } } } }>(
    "GET", `/apis/apps/v1/namespaces/${NS}/deployments/ipp-ipp-operator`);
  const pod = deploy.spec.template.spec;
  assert.equal(pod.containers[0]!.image, "ipp-operator:0.1.0");
  assert.ok(pod.containers[0]!.args.includes("operator"), `operator command: ${pod.containers[0]!.args.join(" ")}`);
  assert.ok(await exists(`/api/v1/namespaces/${NS}/serviceaccounts/${pod.serviceAccountName}`), "ServiceAccount");
  assert.ok(await exists(`/apis/rbac.authorization.k8s.io/v1/clusterroles/ipp-ipp-operator`), "ClusterRole");
  assert.ok(await exists(`/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ipp-ipp-operator`), "ClusterRoleBinding");
  assert.match(helm("status", "ipp", "--namespace", NS), /STATUS: deployed/);

  await createNamespace(api.client, "science");
  const example = parse(readFileSync(join(REPO_ROOT, "examples/01-mpi-psum.yaml"), "utf8")) as { metadata: Record<string, unknown> };
  await api.client.request("POST", "/apis/ipp.dev/v1alpha1/namespaces/science/engineclusters?fieldValidation=Strict", {
    body: { ...example, metadata: { ...example.metadata, namespace: "science" } },
  });

  helm("uninstall", "ipp", "--namespace", NS);
  assert.equal(await exists(`/apis/apps/v1/namespaces/${NS}/deployments/ipp-ipp-operator`), false, "operator Deployment removed");
  assert.equal(await exists(`/apis/rbac.authorization.k8s.io/v1/clusterroles/ipp-ipp-operator`), false, "ClusterRole removed");
  assert.equal(await exists(CRD_PATH), true, "the CRD is kept");
  assert.equal(await exists("/apis/ipp.dev/v1alpha1/namespaces/science/engineclusters/psum"), true, "the user's EngineCluster survives");
});
