/**
 * The chart through the real helm: lint, render with the default values and with every feature on
 * or off, and values that values.schema.json must reject. Asserts the rendered objects, not text.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { REPO_ROOT } from "../../support/paths.ts";
import { byKind, CHART_DIR, helm, KUBE_VERSION, NAMESPACE, one, RELEASE, renderChart, type KubeDoc } from "./render.ts";
import { restrictedViolations } from "./pss.ts";
import { admits, type NetworkPolicyLike } from "../../support/network-policy.ts";
import { LEASE_RULES, OPERATOR_RULES } from "./operator-rbac.ts";
import { buildMpiObjects, DEFAULT_BUILD_CONFIG } from "../../../src/backends/mpi/core/builders.ts";
import { HTTP_PORT } from "../../../src/backends/mpi/core/names.ts";
import { parseOperatorArgs } from "../../../src/commands/operator.ts";
import { cluster, MATERIAL, mpiSpec } from "../../unit/backends/mpi/fixtures.ts";

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };
type Container = { name: string; args: string[]; ports: Array<{ name: string; containerPort: number }>; livenessProbe: { httpGet: { path: string; port: string } }; readinessProbe: { httpGet: { path: string; port: string } } };
type PodSpec = { serviceAccountName: string; containers: Container[]; [k: string]: unknown };


/** group/resource → sorted verbs granted by a list of rules. */
function grants(rules: Rule[]): Record<string, string[]> {
  const out: Record<string, Set<string>> = {};
  for (const r of rules) for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) {
    (out[`${g}/${res}`] ??= new Set()).add(v);
  }
  return Object.fromEntries(Object.entries(out).map(([k, s]) => [k, [...s].sort()]));
}
const sorted = (m: Record<string, string[]>) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, [...v].sort()]));

function podSpec(d: KubeDoc): PodSpec {
  return (d.spec as { template: { spec: PodSpec } }).template.spec;
}

test("helm lint --strict passes with the default values and with every feature on", () => {
  for (const sets of [[], ["--set", "serviceMonitor.enabled=true,grafana.dashboards.enabled=true,replicaCount=3,watchNamespace=science,crds.keep=false"]]) {
    const r = helm(["lint", CHART_DIR, "--strict", ...sets]);
    assert.equal(r.status, 0, `helm lint ${sets.join(" ")}:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  }
});

test("kubeVersion >=1.25: helm renders without --kube-version, for the rig's Kubernetes, and refuses an older one", () => {
  const chart = parse(readFileSync(join(CHART_DIR, "Chart.yaml"), "utf8")) as { kubeVersion: string };
  assert.equal(chart.kubeVersion, ">=1.25.0-0");
  const base = ["template", RELEASE, CHART_DIR, "--namespace", NAMESPACE];
  const plain = helm(base);
  assert.equal(plain.status, 0, `helm template without --kube-version (helm's built-in default must satisfy kubeVersion):\n${plain.stderr}`);
  const rig = helm([...base, "--kube-version", KUBE_VERSION]);
  assert.equal(rig.status, 0, `helm template --kube-version ${KUBE_VERSION}:\n${rig.stderr}`);
  assert.equal(rig.stdout, plain.stdout, "nothing in the chart depends on the Kubernetes version");
  const old = helm([...base, "--kube-version", "1.24.0"]);
  assert.notEqual(old.status, 0, "helm template refuses Kubernetes 1.24");
  assert.match(old.stderr, /chart requires kubeVersion: >=1\.25\.0-0 which is incompatible with Kubernetes v1\.24\.0/);
});

test("default values: operator, CRD kept on uninstall, cluster-wide RBAC, metrics Service, nothing optional", () => {
  const docs = renderChart();
  assert.deepEqual(docs.map((d) => d.kind).sort(), [
    "ClusterRole", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Pod", "Service", "ServiceAccount",
  ]);
  for (const d of docs) {
    if (d.kind !== "CustomResourceDefinition" && d.kind !== "ClusterRole" && d.kind !== "ClusterRoleBinding") assert.equal(d.metadata.namespace, NAMESPACE, `${d.kind} namespace`);
    assert.equal(d.metadata.labels?.["app.kubernetes.io/managed-by"], "Helm", `${d.kind} labels`);
  }

  const crd = one(docs, "CustomResourceDefinition");
  assert.equal(crd.metadata.name, "engineclusters.ipp.dev");
  assert.equal(crd.metadata.annotations?.["helm.sh/resource-policy"], "keep");
  const generated = parse(readFileSync(join(REPO_ROOT, "crds/ipp.dev_engineclusters.yaml"), "utf8")) as KubeDoc;
  assert.deepEqual(crd.spec, generated.spec, "the chart's CRD is the one generated into crds/");

  const dep = one(docs, "Deployment");
  const spec = podSpec(dep);
  assert.equal((dep.spec as { replicas: number }).replicas, 1);
  assert.deepEqual(restrictedViolations(spec), [], "the operator pod meets the restricted Pod Security Standard");
  const c = spec.containers[0]!;
  assert.deepEqual(c.args, [
    "operator", "--metrics-port=8080", "--log-level=info", "--workers=8", "--cluster-domain=cluster.local",
    "--controller-image=ipp-operator:0.1.0", `--operator-namespace=${NAMESPACE}`,
    "--operator-pod-selector=app.kubernetes.io/component=operator,app.kubernetes.io/instance=ipp,app.kubernetes.io/name=ipp-operator",
  ], "one replica: no leader election; EngineCluster controllers run the operator's image");
  const own = podSpec(one(renderChart({ image: { repository: "registry.example.org/ipp", tag: "1.2.3" } }), "Deployment")).containers[0]!;
  assert.ok(own.args.includes("--controller-image=registry.example.org/ipp:1.2.3"));
  const other = podSpec(one(renderChart({ controller: { image: "registry.example.org/ctl:9" } }), "Deployment")).containers[0]!;
  assert.ok(other.args.includes("--controller-image=registry.example.org/ctl:9"));
  assert.deepEqual(c.ports.map((p) => [p.name, p.containerPort]), [["metrics", 8080]]);
  assert.deepEqual([c.livenessProbe.httpGet.path, c.livenessProbe.httpGet.port], ["/healthz", "metrics"]);
  assert.deepEqual([c.readinessProbe.httpGet.path, c.readinessProbe.httpGet.port], ["/readyz", "metrics"]);
  assert.equal(spec.serviceAccountName, one(docs, "ServiceAccount").metadata.name);

  const role = one(docs, "ClusterRole", "ipp-ipp-operator");
  assert.deepEqual(grants(role.rules as Rule[]), sorted(OPERATOR_RULES), "exactly the calls the operator makes");
  // the JSON API verb, for users: aggregated into admin and edit, bound to nobody by the chart
  const apiAccess = one(docs, "ClusterRole", "ipp-ipp-operator-api-access");
  assert.deepEqual(apiAccess.rules, [{ apiGroups: ["ipp.dev"], resources: ["engineclusters/api"], verbs: ["create"] }]);
  assert.equal(apiAccess.metadata.labels?.["rbac.authorization.k8s.io/aggregate-to-admin"], "true");
  assert.equal(apiAccess.metadata.labels?.["rbac.authorization.k8s.io/aggregate-to-edit"], "true");
  assert.equal(apiAccess.metadata.labels?.["rbac.authorization.k8s.io/aggregate-to-view"], undefined, "viewers may not run code");
  assert.equal(byKind(renderChart({ rbac: { apiAccess: { aggregate: false } } }), "ClusterRole").find((r) => r.metadata.name.endsWith("-api-access"))?.metadata.labels?.["rbac.authorization.k8s.io/aggregate-to-admin"], undefined);
  assert.equal(byKind(renderChart({ rbac: { apiAccess: { create: false } } }), "ClusterRole").length, 1);
  const binding = one(docs, "ClusterRoleBinding") as KubeDoc & { roleRef: { kind: string; name: string }; subjects: Array<{ kind: string; name: string; namespace: string }> };
  assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name });
  assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: spec.serviceAccountName, namespace: NAMESPACE }]);

  const svc = one(docs, "Service") as KubeDoc & { spec: { selector: Record<string, string>; ports: Array<{ name: string; port: number; targetPort: string }> } };
  assert.deepEqual(svc.spec.ports.map((p) => [p.name, p.port, p.targetPort]), [["metrics", 8080, "metrics"]]);
  const podLabels = (dep.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(podLabels[k], v, `Service selects the operator pod by ${k}`);
  assert.ok(!c.args.some((a) => a.startsWith("--metrics-scraper")), "default: scrapers from any namespace (the operator's default)");

  const testPod = one(docs, "Pod");
  assert.equal(testPod.metadata.annotations?.["helm.sh/hook"], "test");
  assert.deepEqual(restrictedViolations(testPod.spec as PodSpec), [], "the helm test pod meets the restricted standard too");
  assert.equal(byKind(docs, "ServiceMonitor").length, 0);
  assert.equal(byKind(docs, "ConfigMap").length, 0);
});

test("more than one replica turns on leader election with a Lease the operator may use", () => {
  const docs = renderChart({ replicaCount: 2 });
  const c = podSpec(one(docs, "Deployment")).containers[0]!;
  const leaderArgs = (args: string[]) => args.slice(args.indexOf("--leader-elect"));
  assert.deepEqual(leaderArgs(c.args), ["--leader-elect", "--lease-name=ipp-ipp-operator", `--lease-namespace=${NAMESPACE}`, "--identity=$(POD_NAME)"]);
  assert.ok(!podSpec(one(renderChart(), "Deployment")).containers[0]!.args.includes("--leader-elect"));
  const leaseRole = one(docs, "Role");
  assert.equal(leaseRole.metadata.namespace, NAMESPACE);
  assert.deepEqual(grants(leaseRole.rules as Rule[]), sorted(LEASE_RULES));
  assert.equal(one(docs, "RoleBinding").metadata.namespace, NAMESPACE);

  const custom = renderChart({ leaderElection: { enabled: true, leaseName: "ipp-leader", leaseNamespace: "kube-system" } });
  assert.deepEqual(leaderArgs(podSpec(one(custom, "Deployment")).containers[0]!.args).slice(0, 3), ["--leader-elect", "--lease-name=ipp-leader", "--lease-namespace=kube-system"]);
  assert.equal(one(custom, "Role").metadata.namespace, "kube-system");
});

test("watchNamespace: a Role in that namespace instead of a ClusterRole, and --namespace", () => {
  const docs = renderChart({ watchNamespace: "science", serviceMonitor: { enabled: true } });
  // only the users' API-access ClusterRole is cluster-wide; nothing grants the operator beyond the namespace
  assert.deepEqual(byKind(docs, "ClusterRole").map((r) => r.metadata.name), ["ipp-ipp-operator-api-access"]);
  assert.equal(byKind(docs, "ClusterRoleBinding").length, 0);
  const role = one(docs, "Role");
  assert.equal(role.metadata.namespace, "science");
  assert.deepEqual(grants(role.rules as Rule[]), sorted(OPERATOR_RULES));
  const rb = one(docs, "RoleBinding") as KubeDoc & { subjects: Array<{ namespace: string }> };
  assert.equal(rb.metadata.namespace, "science");
  assert.equal(rb.subjects[0]!.namespace, NAMESPACE, "the ServiceAccount stays in the release namespace");
  assert.ok(podSpec(one(docs, "Deployment")).containers[0]!.args.includes("--namespace=science"));
  const ctl = one(docs, "ServiceMonitor", "ipp-ipp-operator-controllers") as KubeDoc & { spec: { namespaceSelector: unknown } };
  assert.deepEqual(ctl.spec.namespaceSelector, { matchNames: ["science"] });
});

test("serviceMonitor and grafana on: two ServiceMonitors and one dashboard ConfigMap per dashboard", () => {
  const docs = renderChart({
    serviceMonitor: { enabled: true, labels: { release: "kube-prometheus-stack" } },
    grafana: { dashboards: { enabled: true, annotations: { grafana_folder: "ipp" } } },
  });
  type Sm = KubeDoc & { spec: { selector: { matchLabels: Record<string, string> }; namespaceSelector: unknown; endpoints: Array<{ port: string; path: string; relabelings?: Array<{ sourceLabels: string[]; targetLabel: string }> }> } };
  const op = one(docs, "ServiceMonitor", "ipp-ipp-operator") as Sm;
  const svc = one(docs, "Service") as KubeDoc & { spec: { ports: Array<{ name: string }> } };
  for (const [k, v] of Object.entries(op.spec.selector.matchLabels)) assert.equal(svc.metadata.labels?.[k], v, `operator ServiceMonitor selects the metrics Service by ${k}`);
  assert.deepEqual(op.spec.endpoints.map((e) => [e.port, e.path]), [[svc.spec.ports[0]!.name, "/metrics"]]);
  assert.equal(op.metadata.labels?.release, "kube-prometheus-stack");

  const ctl = one(docs, "ServiceMonitor", "ipp-ipp-operator-controllers") as Sm;
  assert.deepEqual(ctl.spec.namespaceSelector, { any: true });
  assert.equal(ctl.spec.endpoints[0]!.path, "/metrics");
  // it scrapes what the operator builds: the controller Service, on the port its NetworkPolicy opens to scrapers
  const built = buildMpiObjects(cluster(mpiSpec()), MATERIAL);
  const ctlSvc = built.controllerService as KubeDoc & { spec: { ports: Array<{ name: string; port: number }> } };
  for (const [k, v] of Object.entries(ctl.spec.selector.matchLabels)) assert.equal(ctlSvc.metadata.labels?.[k], v, `controller ServiceMonitor selects the controller Service by ${k}`);
  const scraped = ctlSvc.spec.ports.find((p) => p.name === ctl.spec.endpoints[0]!.port);
  assert.deepEqual(scraped, { name: "metrics", port: 8081, targetPort: "metrics", protocol: "TCP" });
  const ingress = (built.networkPolicy as KubeDoc & { spec: { ingress: Array<{ from: unknown[]; ports: Array<{ port: number }> }> } }).spec.ingress;
  assert.deepEqual(ingress.filter((r) => r.ports.some((p) => p.port === scraped.port)).map((r) => [r.from, r.ports.map((p) => p.port)]),
    [[[{ namespaceSelector: {} }], [scraped.port]]], "the NetworkPolicy opens the scraped port, alone, to any namespace by default");
  assert.deepEqual(ctl.spec.endpoints[0]!.relabelings?.map((r) => r.targetLabel), ["ipp_cluster"]);

  const files = readdirSync(join(CHART_DIR, "dashboards")).filter((f) => f.endsWith(".json")).sort();
  assert.deepEqual(files, ["ipp-controller.json", "ipp-operator.json"]);
  const cms = byKind(docs, "ConfigMap") as Array<KubeDoc & { data: Record<string, string> }>;
  assert.equal(cms.length, files.length);
  for (const cm of cms) {
    assert.equal(cm.metadata.labels?.grafana_dashboard, "1");
    assert.equal(cm.metadata.annotations?.grafana_folder, "ipp");
    const [key, ...rest] = Object.keys(cm.data);
    assert.equal(rest.length, 0);
    assert.deepEqual(JSON.parse(cm.data[key!]!), JSON.parse(readFileSync(join(CHART_DIR, "dashboards", key!), "utf8")), `${key} shipped whole`);
  }
  const custom = renderChart({ grafana: { dashboards: { enabled: true, label: "dashboards.example/grafana", labelValue: "ipp", namespace: "monitoring" } } });
  for (const cm of byKind(custom, "ConfigMap")) {
    assert.equal(cm.metadata.labels?.["dashboards.example/grafana"], "ipp");
    assert.equal(cm.metadata.namespace, "monitoring");
  }
});

test("controller.metricsScrapers becomes the operator's selector flags; the operator pod carries ipp.dev/operator whatever the release is called", () => {
  const docs = renderChart({
    nameOverride: "hpc-ops",
    controller: { metricsScrapers: { namespaceSelector: { "kubernetes.io/metadata.name": "monitoring", team: "obs" }, podSelector: { "app.kubernetes.io/name": "prometheus" } } },
  });
  const dep = one(docs, "Deployment");
  const args = podSpec(dep).containers[0]!.args;
  const flags = args.filter((a) => a.startsWith("--metrics-scraper"));
  assert.deepEqual(flags, [
    "--metrics-scraper-namespace-selector=kubernetes.io/metadata.name=monitoring,team=obs",
    "--metrics-scraper-pod-selector=app.kubernetes.io/name=prometheus",
  ]);
  // the operator reads them as the chart meant them
  const parsed = parseOperatorArgs(args.slice(1).map((a) => a.replace("$(POD_NAME)", "pod")));
  assert.ok(typeof parsed !== "string", String(parsed));
  assert.deepEqual(parsed.scraperNamespaceSelector, { "kubernetes.io/metadata.name": "monitoring", team: "obs" });
  assert.deepEqual(parsed.scraperPodSelector, { "app.kubernetes.io/name": "prometheus" });

  // every controller's NetworkPolicy lets this pod, in the release namespace, reach the API port, with nameOverride too
  const podLabels = (dep.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
  assert.equal(podLabels["app.kubernetes.io/name"], "hpc-ops");
  assert.equal(parsed.operatorNamespace, dep.metadata.namespace);
  const config = { ...DEFAULT_BUILD_CONFIG, operator: { namespace: parsed.operatorNamespace!, podLabels: parsed.operatorPodSelector } };
  const np = buildMpiObjects(cluster(mpiSpec()), MATERIAL, config).networkPolicy as unknown as NetworkPolicyLike;
  const apiPort = HTTP_PORT;
  const admitsApi = (labels: Record<string, string>, namespace: string) =>
    admits(np, { pod: { namespace, namespaceLabels: { "kubernetes.io/metadata.name": namespace }, labels } }, apiPort);
  assert.ok(admitsApi(podLabels, dep.metadata.namespace!), `the operator pod (labels ${JSON.stringify(podLabels)}) is admitted to the API port`);
  assert.ok(!admitsApi(podLabels, "tenant"), "the same labels in another namespace are not");
  assert.ok(!admitsApi({ "ipp.dev/operator": "true" }, "tenant"), "nor a tenant's pod with the chart's operator label");
  // a chosen selector wins over the chart's
  const chosen = parseOperatorArgs(podSpec(one(renderChart({ controller: { operatorPodSelector: { team: "ops" } } }), "Deployment")).containers[0]!.args.slice(1).map((a) => a.replace("$(POD_NAME)", "pod")));
  assert.ok(typeof chosen !== "string");
  assert.deepEqual(chosen.operatorPodSelector, { team: "ops" });
});

test("crds.enabled=false leaves the CRD out; crds.keep=false drops the keep annotation", () => {
  assert.equal(byKind(renderChart({ crds: { enabled: false } }), "CustomResourceDefinition").length, 0);
  const crd = one(renderChart({ crds: { keep: false } }), "CustomResourceDefinition");
  assert.equal(crd.metadata.annotations?.["helm.sh/resource-policy"], undefined);
});

test("values.schema.json rejects unknown keys at every level, wrong types and unrestricted security contexts", () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ replicas: 2 }, /additional properties 'replicas' not allowed/],
    [{ serviceMonitor: { enable: true } }, /\/serviceMonitor.*additional properties 'enable' not allowed/s],
    [{ grafana: { dashboards: { folder: "x" } } }, /\/grafana\/dashboards.*additional properties 'folder' not allowed/s],
    [{ image: { repository: "x", digest: "sha256:0" } }, /\/image.*additional properties 'digest' not allowed/s],
    [{ replicaCount: "two" }, /\/replicaCount.*got string, want integer/s],
    [{ replicaCount: 0 }, /\/replicaCount.*minimum/s],
    [{ logLevel: "verbose" }, /\/logLevel/],
    [{ watchNamespace: "Not_A_Namespace" }, /\/watchNamespace/],
    [{ securityContext: { allowPrivilegeEscalation: true } }, /\/securityContext\/allowPrivilegeEscalation/],
    [{ podSecurityContext: { runAsNonRoot: false } }, /\/podSecurityContext\/runAsNonRoot/],
    [{ resources: { limits: { gpu: 1 } } }, /\/resources\/limits.*additional properties 'gpu' not allowed/s],
    [{ serviceMonitor: { interval: "often" } }, /\/serviceMonitor\/interval/],
    [{ controller: { image: "x", tag: "y" } }, /\/controller.*additional properties 'tag' not allowed/s],
    [{ clusterDomain: "Cluster Local" }, /\/clusterDomain/],
    [{ controller: { metricsScrapers: { namespaceSelector: { "bad key": "x" } } } }, /\/controller\/metricsScrapers\/namespaceSelector.*additional properties 'bad key' not allowed/s],
    [{ controller: { metricsScrapers: { podSelector: { app: "a b" } } } }, /\/controller\/metricsScrapers\/podSelector\/app/],
    [{ controller: { metricsScrapers: { podSelector: { app: 1 } } } }, /\/controller\/metricsScrapers\/podSelector\/app.*want string/s],
    [{ controller: { metricsScrapers: { matchExpressions: [] } } }, /\/controller\/metricsScrapers.*additional properties 'matchExpressions' not allowed/s],
  ];
  for (const [values, message] of cases) {
    assert.throws(() => renderChart(values), (err: Error) => {
      assert.match(err.message, /values don't meet the specifications of the schema/, JSON.stringify(values));
      assert.match(err.message, message, JSON.stringify(values));
      return true;
    });
  }
  const lint = helm(["lint", CHART_DIR, "--set", "replicas=2"]);
  assert.notEqual(lint.status, 0, "helm lint fails on a value the schema rejects");
});
