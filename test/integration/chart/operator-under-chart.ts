/**
 * Runs the real operator (`bin/ipp-operator operator`) against a real kube-apiserver the way the
 * chart deploys it: the chart's ServiceAccount, (Cluster)Role(s) and bindings are applied from
 * `helm template`, the operator authenticates with a token of that ServiceAccount (TokenRequest
 * API), and its arguments and environment are the rendered Deployment's. So any API call the
 * chart's RBAC does not allow fails the way it would in a cluster.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { createNamespace, type ApiServer } from "../../support/apiserver.ts";
import { REPO_ROOT } from "../../support/paths.ts";
import { freeLoopbackPort } from "../../support/prometheus.ts";
import { NAMESPACE, one, renderChart, type KubeDoc } from "./render.ts";

const RBAC_KINDS = new Set(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]);

function path(d: KubeDoc): string {
  const ns = d.metadata.namespace;
  switch (d.kind) {
    case "ServiceAccount": return `/api/v1/namespaces/${ns}/serviceaccounts/${d.metadata.name}`;
    case "ClusterRole": return `/apis/rbac.authorization.k8s.io/v1/clusterroles/${d.metadata.name}`;
    case "ClusterRoleBinding": return `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${d.metadata.name}`;
    case "Role": return `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles/${d.metadata.name}`;
    case "RoleBinding": return `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings/${d.metadata.name}`;
    default: throw new Error(`no path for ${d.kind}`);
  }
}

export interface ChartOperator {
  metricsUrl: string;
  serviceAccount: string;
  /** The objects of the chart applied to the API server. */
  applied: KubeDoc[];
  logs(): string;
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

export async function applyChartRbac(api: ApiServer, docs: KubeDoc[]): Promise<KubeDoc[]> {
  const rbac = docs.filter((d) => RBAC_KINDS.has(d.kind));
  const namespaces = new Set(rbac.map((d) => d.metadata.namespace).filter((n): n is string => !!n));
  for (const ns of namespaces) await createNamespace(api.client, ns);
  for (const d of rbac) {
    await api.client.request("PATCH", path(d), {
      query: { fieldManager: "helm", force: true }, body: d, contentType: "application/apply-patch+yaml",
    });
  }
  return rbac;
}

export async function serviceAccountKubeconfig(api: ApiServer, namespace: string, name: string, file: string): Promise<void> {
  const tr = await api.client.request<{ status: { token: string } }>("POST", `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
  });
  const admin = parse(readFileSync(api.kubeconfigPath, "utf8")) as { clusters: Array<{ cluster: { "certificate-authority-data": string } }> };
  writeFileSync(file, [
    "apiVersion: v1", "kind: Config", "current-context: sa",
    "clusters:", "- name: test", "  cluster:", `    server: ${api.server}`,
    `    certificate-authority-data: ${admin.clusters[0]!.cluster["certificate-authority-data"]}`,
    "users:", "- name: sa", "  user:", `    token: ${tr.status.token}`,
    "contexts:", "- name: sa", "  context:", "    cluster: test", "    user: sa", "",
  ].join("\n"));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startOperatorUnderChart(api: ApiServer, values: Record<string, unknown>): Promise<ChartOperator> {
  const docs = renderChart(values);
  const applied = await applyChartRbac(api, docs);
  const dep = one(docs, "Deployment");
  const pod = (dep.spec as { template: { spec: { serviceAccountName: string; containers: Array<{ args: string[] }> } } }).template.spec;
  const podName = `${dep.metadata.name}-7d9f-0`;
  const dir = mkdtempSync(join(tmpdir(), "ipp-chart-operator-"));
  const kubeconfig = join(dir, "kubeconfig");
  await serviceAccountKubeconfig(api, NAMESPACE, pod.serviceAccountName, kubeconfig);

  const port = await freeLoopbackPort();
  // The container's args with $(POD_NAME) expanded as the kubelet does; the test's own
  // kubeconfig (in a pod: the mounted ServiceAccount token) and a free metrics port.
  const args = pod.containers[0]!.args.map((a) => a.replaceAll("$(POD_NAME)", podName))
    .filter((a) => !a.startsWith("--metrics-port"));
  let output = "";
  const proc: ChildProcess = spawn(join(REPO_ROOT, "bin/ipp-operator"), [...args, `--metrics-port=${port}`, `--kubeconfig=${kubeconfig}`], {
    env: { ...process.env, POD_NAME: podName, POD_NAMESPACE: NAMESPACE },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const keep = (b: Buffer) => { output = (output + b.toString()).slice(-200_000); };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const metricsUrl = `http://127.0.0.1:${port}`;

  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) { await stop(); throw new Error(`operator exited (${proc.exitCode}):\n${output.slice(-4000)}`); }
    try { if ((await fetch(`${metricsUrl}/readyz`)).ok) break; } catch { /* not listening yet */ }
    if (Date.now() > deadline) { await stop(); throw new Error(`operator not ready after 60 s:\n${output.slice(-4000)}`); }
    await sleep(200);
  }
  return {
    metricsUrl, serviceAccount: `system:serviceaccount:${NAMESPACE}:${pod.serviceAccountName}`, applied,
    logs: () => output,
    metrics: async () => (await fetch(`${metricsUrl}/metrics`)).text(),
    stop,
  };
}

/** Asks the API server whether `user` may do `verb` on a resource (SubjectAccessReview, as the admin). */
export async function allowed(api: ApiServer, user: string, attrs: { verb: string; group: string; resource: string; subresource?: string; namespace?: string }): Promise<boolean> {
  const r = await api.client.request<{ status: { allowed: boolean } }>("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
    body: {
      apiVersion: "authorization.k8s.io/v1", kind: "SubjectAccessReview",
      spec: { user, groups: ["system:serviceaccounts", `system:serviceaccounts:${user.split(":")[2]}`, "system:authenticated"], resourceAttributes: attrs },
    },
  });
  return r.status.allowed;
}
