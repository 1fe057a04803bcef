/**
 * The chart's api-access ClusterRole reaches namespace admins and editors through Kubernetes' own
 * role aggregation, and viewers never get it: the real kube-apiserver's bootstrap admin/edit/view
 * roles, filled by the real clusterrole-aggregation controller of kube-controller-manager, asked
 * through SubjectAccessReview the same question the controller's `kubernetes` API auth asks
 * (create on engineclusters/api in the cluster's namespace).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { one, renderChart } from "./render.ts";

const NS = "lab";
let api: ApiServer;

const create = (path: string, body: unknown) => api.client.request("POST", path, { body });

/** Whether SubjectAccessReview lets `sa` in NS run code on EngineCluster "psum" through its API. */
async function mayUseApi(sa: string, namespace = NS): Promise<boolean> {
  const review = await api.client.request<{ status: { allowed: boolean } }>("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
    body: {
      apiVersion: "authorization.k8s.io/v1", kind: "SubjectAccessReview",
      spec: {
        user: `system:serviceaccount:${NS}:${sa}`, groups: ["system:serviceaccounts", `system:serviceaccounts:${NS}`],
        resourceAttributes: { group: "ipp.dev", resource: "engineclusters", subresource: "api", verb: "create", namespace, name: "psum" },
      },
    },
  });
  return review.status.allowed;
}

before(async () => {
  api = await startApiServer({ controllers: ["clusterrole-aggregation"] });
  await createNamespace(api.client, NS);
  for (const [sa, role] of [["ada", "admin"], ["eve", "edit"], ["vic", "view"]] as const) {
    await create(`/api/v1/namespaces/${NS}/serviceaccounts`, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: sa } });
    await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, {
      apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: `${sa}-${role}` },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
      subjects: [{ kind: "ServiceAccount", namespace: NS, name: sa }],
    });
  }
});

after(async () => { await api?.stop(); });

test("namespace admins and editors may use a cluster's API once the chart's role is installed; viewers may not", async () => {
  // before the chart's role exists nobody may: the bootstrap roles know nothing of engineclusters/api
  for (const sa of ["ada", "eve", "vic"]) assert.equal(await mayUseApi(sa), false, `${sa} before the role exists`);

  await create("/apis/rbac.authorization.k8s.io/v1/clusterroles", one(renderChart(), "ClusterRole", "ipp-ipp-operator-api-access"));
  const deadline = Date.now() + 60_000;
  while (!(await mayUseApi("ada") && await mayUseApi("eve"))) {
    assert.ok(Date.now() < deadline, "the aggregation controller never gave admin and edit the API verb");
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(await mayUseApi("vic"), false, "view must not run code");
  assert.equal(await mayUseApi("ada", "elsewhere"), false, "a RoleBinding grants nothing in another namespace");

  const admin = await api.client.request<{ rules: Array<{ apiGroups?: string[]; resources?: string[]; verbs: string[] }> }>(
    "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin");
  assert.ok(admin.rules.some((r) => r.apiGroups?.includes("ipp.dev") && r.resources?.includes("engineclusters/api") && r.verbs.includes("create")),
    "the rule was aggregated into admin");
});

test("with rbac.apiAccess.aggregate=false the role is granted only by explicit bindings", async () => {
  const unaggregated = one(renderChart({ rbac: { apiAccess: { aggregate: false } } }), "ClusterRole", "ipp-ipp-operator-api-access");
  const role = { ...unaggregated, metadata: { ...unaggregated.metadata, name: "ipp-api-access-unaggregated" } };
  await create("/apis/rbac.authorization.k8s.io/v1/clusterroles", role);
  // give the aggregation controller time to act on it, had it been labelled
  await new Promise((r) => setTimeout(r, 3000));
  const admin = await api.client.request<{ rules: Array<{ resources?: string[] }> }>("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin");
  const edit = await api.client.request<{ rules: Array<{ resources?: string[] }> }>("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit");
  const count = (rules: Array<{ resources?: string[] }>) => rules.filter((r) => r.resources?.includes("engineclusters/api")).length;
  assert.equal(count(admin.rules), 1, "admin holds only the aggregated role's rule");
  assert.equal(count(edit.rules), 1, "edit holds only the aggregated role's rule");
});
