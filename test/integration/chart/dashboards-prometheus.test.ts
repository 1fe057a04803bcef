/**
 * Every query of every Grafana dashboard, run by a real Prometheus over real metrics:
 *  - the controller: `ipp-operator local --engines 2` (our controller in-process, two real
 *    ipengines under mpiexec) with a real ipyparallel 9 client's workload (test/.../workload.py)
 *    and a malformed message on its registration socket;
 *  - the operator: the real operator, deployed as the chart deploys it (RBAC, arguments), against
 *    a real kube-apiserver, reconciling a real EngineCluster.
 *  - the operator's pbs side: two pbs EngineClusters, one whose login host doesn't answer (its SSH
 *    link stays in backoff) and one on the real PBS rig (Slurm) told the wrong dialect, so its
 *    qstat fails.
 * Prometheus (Debian's) scrapes both with the target labels the chart's ServiceMonitors give them,
 * plus a controller target nothing listens on (a controller that is down);
 * then each panel query (template variables substituted by a real value, and by `.*` as Grafana's
 * "All" does) must be valid and return series, and each variable query must list the real values.
 * Prometheus also loads the chart's PrometheusRule (thresholds and durations set to fire at once)
 * and every alert must fire on what really happened.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Dealer } from "zeromq";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { dashboardQueries, labelValuesQuery, loadDashboards, substitute, type Query } from "../../support/dashboards.ts";
import { python, REPO_ROOT, venvBin } from "../../support/paths.ts";
import { freeLoopbackPort, promtoolCheckConfig, startPrometheus, type Prometheus } from "../../support/prometheus.ts";
import { createRigSecret, startPbsRig, type PbsRig } from "../../support/pbs-rig.ts";
import { renderAlertGroups, writeRulesFile } from "./alert-rules.ts";
import { startOperatorUnderChart, type ChartOperator } from "./operator-under-chart.ts";
import { NAMESPACE } from "./render.ts";

const EC_NAMESPACE = "science";
const EC_NAME = "psum";
const ENGINES = 2;
const HEARTBEAT_MS = 500;

/**
 * Series no part of this run produces, with the reason. A query that names only these may come
 * back empty; every other query must return at least one series.
 */
const NOT_EXERCISED: Record<string, string> = {
  ipp_controller_unregistrations_total: "no engine leaves while Prometheus watches (stopping one would end the MPI world)",
  ipp_operator_pbs_jobs: "no job is submitted here (one pbs cluster's host is down, the other's qstat fails); test/integration/operator/pbs.test.ts runs jobs",
  ipp_operator_ssh_tunnels_active: "no sshTunnel cluster runs here; test/integration/pbs covers the forwards",
  ipp_operator_ssh_tunnel_connections: "no sshTunnel cluster runs here; test/integration/pbs covers the forwards",
};

/** The chart's alerts with thresholds and durations that fire on this short run. */
const FAST_ALERTS = {
  controllerDown: { for: "0s" },
  enginesBelowDesired: { for: "0s" },
  clusterStuck: { for: "0s" },
  sshLinkDown: { for: "0s" },
  qstatErrors: { for: "0s", window: "5m", threshold: 0 },
  heartbeatMisses: { for: "0s", window: "5m", perSecond: 0 },
  badMessages: { for: "0s", window: "5m", perSecond: 0 },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let api: ApiServer | undefined;
let operator: ChartOperator | undefined;
let local: ChildProcess | undefined;
let localOut = "";
let prom: Prometheus | undefined;
let rig: PbsRig | undefined;
let registrationUrl = "";
let workload: { ids: number[]; gathered: number; squares: number; failed: string | null; after_pause: number } | undefined;
const dir = mkdtempSync(join(tmpdir(), "ipp-dashboards-"));

async function stopLocal(): Promise<void> {
  if (!local || local.exitCode !== null || local.signalCode !== null) return;
  const exited = new Promise((r) => local!.once("exit", r));
  local.kill("SIGTERM");
  const t = setTimeout(() => local?.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(t);
}

before(async () => {
  // The operator, as the chart deploys it, with one EngineCluster to reconcile.
  api = await startApiServer();
  operator = await startOperatorUnderChart(api, {});
  await createNamespace(api.client, EC_NAMESPACE);
  await api.client.request("POST", `/apis/ipp.dev/v1alpha1/namespaces/${EC_NAMESPACE}/engineclusters`, {
    body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: EC_NAME }, spec: { engines: ENGINES, backend: { mpi: { image: "registry.example.org/ipp-engine:1" } } } },
  });

  // Two pbs clusters: a login host nobody answers on, and the real rig with the wrong dialect.
  rig = await startPbsRig();
  await createRigSecret(api.client, EC_NAMESPACE, rig);
  const pbsCluster = (name: string, pbs: Record<string, unknown>) => api!.client.request("POST", `/apis/ipp.dev/v1alpha1/namespaces/${EC_NAMESPACE}/engineclusters`, {
    body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name }, spec: { engines: 1, backend: { pbs: {
      user: rig!.user, credentialsSecret: "hpc-ssh", network: { mode: "direct", address: "127.0.0.1" }, ...pbs,
    } } } },
  });
  await pbsCluster("hpc-down", { host: "127.0.0.1", port: await freeLoopbackPort(), dialect: "slurm" });
  await pbsCluster("hpc-wrong", { host: rig.host, port: rig.port, dialect: "pbspro" });

  // Our controller with two real engines.
  const httpPort = await freeLoopbackPort();
  local = spawn(join(REPO_ROOT, "bin/ipp-operator"), [
    "local", "--engines", String(ENGINES), "--out", dir, "--metrics-port", String(httpPort),
    "--python", venvBin(9, "ipengine"), "--heartbeat-ms", String(HEARTBEAT_MS), "--log-level", "warn", "--timeout", "180",
  ], { stdio: ["ignore", "pipe", "pipe"] });
  local.stdout?.on("data", (b: Buffer) => { localOut += b.toString(); });
  local.stderr?.on("data", (b: Buffer) => { localOut = (localOut + b.toString()).slice(-20_000); });
  const deadline = Date.now() + 200_000;
  while (!localOut.includes("ipp.Client(")) {
    if (local.exitCode !== null) throw new Error(`ipp-operator local exited (${local.exitCode}):\n${localOut}`);
    if (Date.now() > deadline) throw new Error(`ipp-operator local: engines not registered:\n${localOut}`);
    await sleep(200);
  }

  writeRulesFile(join(dir, "alerts.yaml"), renderAlertGroups(FAST_ALERTS));
  prom = await startPrometheus([
    {
      // a second controller's ServiceMonitor target, nothing listening: a controller that is down
      job: "ipp-controller-gone", address: `127.0.0.1:${await freeLoopbackPort()}`, down: true,
      labels: { namespace: EC_NAMESPACE, ipp_cluster: "gone", service: "gone-controller", pod: "gone-controller-5c7d-q8w2", endpoint: "metrics" },
    },
    {
      job: "ipp-controller", address: `127.0.0.1:${httpPort}`,
      labels: { namespace: EC_NAMESPACE, ipp_cluster: EC_NAME, service: `${EC_NAME}-controller`, pod: `${EC_NAME}-controller-5c7d-x2k9`, endpoint: "metrics" },
    },
    {
      job: "ipp-operator", address: operator.metricsUrl.replace("http://", ""),
      labels: { namespace: NAMESPACE, service: "ipp-ipp-operator-metrics", pod: "ipp-ipp-operator-7d9f-0", endpoint: "metrics" },
    },
  ], { ruleFiles: [join(dir, "alerts.yaml")] });
  await prom.waitForScrapes(2);

  // A malformed message on the registration socket: counted as a bad message, nothing else.
  const client = JSON.parse(readFileSync(join(dir, "ipcontroller-client.json"), "utf8")) as { interface: string; registration: number };
  registrationUrl = `${client.interface}:${client.registration}`;
  const dealer = new Dealer({ linger: 2000 });
  dealer.connect(registrationUrl);
  await dealer.send(["<IDS|MSG>", "not-a-signature", "{not json", "{}", "{}", "{}"]);
  const counted = Date.now() + 15_000;
  while (!/^ipp_controller_bad_messages_total\{[^}]*\} [1-9]/m.test(await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text())) {
    if (Date.now() > counted) throw new Error("the controller did not count the malformed message within 15 s");
    await sleep(200);
  }
  dealer.close();

  const r = spawnSync(python(9), [join(REPO_ROOT, "test/integration/chart/workload.py"), join(dir, "ipcontroller-client.json"), String(ENGINES), String(HEARTBEAT_MS)], {
    encoding: "utf8", timeout: 180_000,
  });
  if (r.status !== 0) throw new Error(`workload failed (${r.status}): ${r.stderr.slice(-4000)}`);
  workload = JSON.parse(r.stdout.trim().split("\n").pop()!);
  // Enough scrapes after the workload for rate() over the substituted 1m window.
  await prom.waitForScrapes(3);
});

after(async () => {
  await prom?.stop();
  await stopLocal();
  await operator?.stop();
  await api?.stop();
  await rig?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("the workload ran through the controller", () => {
  assert.deepEqual(workload?.ids, [0, 1]);
  assert.equal(workload?.gathered, 32);
  assert.equal(workload?.squares, 4324);
  assert.ok(workload?.failed, "the failing task raised in the client");
  assert.equal(workload?.after_pause, 42, "the paused engine carried on");
});

test("promtool accepts the generated Prometheus config and both targets are up", async () => {
  assert.match(promtoolCheckConfig(prom!.configPath), /SUCCESS/);
  const targets = await prom!.targets();
  assert.deepEqual(targets.map((t) => [t.labels.job, t.labels.ipp_cluster ?? "", t.health]).sort(), [["ipp-controller", EC_NAME, "up"], ["ipp-controller-gone", "gone", "down"], ["ipp-operator", "", "up"]]);
});

const dashboards = loadDashboards();
const queries = dashboardQueries(dashboards);

/** Real values of the template variables, per dashboard, as a user would pick them. */
const REAL: Record<string, Record<string, string>> = {
  "ipp-operator.json": { namespace: NAMESPACE },
  "ipp-controller.json": { namespace: EC_NAMESPACE, cluster: EC_NAME },
};
const ALL: Record<string, Record<string, string>> = {
  "ipp-operator.json": { namespace: ".*" },
  "ipp-controller.json": { namespace: ".*", cluster: ".*" },
};

test("every template variable query lists the real values", async () => {
  const expected: Record<string, string[]> = {
    "ipp-operator.json variable namespace": [NAMESPACE],
    "ipp-controller.json variable namespace": [EC_NAMESPACE],
    "ipp-controller.json variable cluster": [EC_NAME],
  };
  const vars = queries.filter((q) => q.kind === "variable");
  assert.deepEqual(vars.map((q) => q.where).sort(), Object.keys(expected).sort());
  for (const q of vars) {
    const { match, label } = labelValuesQuery(q.expr);
    const r = await prom!.labelValues(label, substitute(match, ALL[q.dashboard]!));
    assert.equal(r.status, "success", `${q.where}: ${r.error}`);
    assert.deepEqual(r.data, expected[q.where], q.where);
  }
});

function exercised(q: Query): boolean {
  const names = q.expr.match(/\bipp_(?:operator|controller)_[a-z0-9_]+\b/g) ?? [];
  return !names.every((n) => n in NOT_EXERCISED);
}

for (const [label, values] of [["a real value", REAL], ["All (.*)", ALL]] as const) {
  test(`every panel query is valid PromQL and returns series, variables set to ${label}`, async () => {
    const problems: string[] = [];
    let checked = 0;
    for (const q of queries.filter((x) => x.kind === "panel")) {
      const expr = substitute(q.expr, values[q.dashboard]!);
      const r = await prom!.query(expr);
      checked++;
      if (r.status !== "success") { problems.push(`${q.where}: ${r.errorType}: ${r.error}\n    ${expr}`); continue; }
      if (exercised(q) && (r.data?.result.length ?? 0) === 0) problems.push(`${q.where}: no series\n    ${expr}`);
    }
    assert.deepEqual(problems, []);
    assert.equal(checked, queries.filter((x) => x.kind === "panel").length);
  });
}

test("the panels show what happened", async () => {
  const value = async (expr: string): Promise<number[]> => {
    const r = await prom!.query(expr);
    assert.equal(r.status, "success", r.error);
    return (r.data?.result ?? []).map((s) => Number(s.value[1]));
  };
  const ctl = `namespace="${EC_NAMESPACE}", ipp_cluster="${EC_NAME}"`;
  assert.deepEqual(await value(`sum(ipp_controller_engines_registered{${ctl}})`), [ENGINES]);
  assert.deepEqual(await value(`sum(ipp_controller_engines_alive{${ctl}})`), [ENGINES]);
  assert.ok((await value(`sum(ipp_controller_heartbeat_misses_total{${ctl}, engine="${ENGINES - 1}"})`))[0]! >= 1, "the paused engine missed heartbeats");
  assert.ok((await value(`sum(ipp_controller_bad_messages_total{${ctl}})`))[0]! >= 1, "the malformed message was counted");
  assert.ok((await value(`sum(ipp_controller_tasks_failed_total{${ctl}, queue="task"})`))[0]! >= 1, "the failing task was counted");
  for (const queue of ["mux", "task", "broadcast"]) {
    assert.ok((await value(`sum(ipp_controller_tasks_submitted_total{${ctl}, queue="${queue}"})`))[0]! >= 1, `${queue} requests counted`);
  }
  assert.ok((await value(`sum(ipp_controller_task_latency_seconds_count{${ctl}})`))[0]! >= 24);
  const op = `namespace="${NAMESPACE}"`;
  assert.ok((await value(`sum(ipp_operator_reconcile_total{${op}})`))[0]! >= 1, "the operator reconciled");
  assert.deepEqual(await value(`sum(ipp_operator_engineclusters{${op}})`), [3], "the mpi and the two pbs EngineClusters, each in some phase");
  assert.deepEqual(await value(`ipp_operator_enginecluster_engines{${op}, cluster_namespace="${EC_NAMESPACE}", cluster="${EC_NAME}", state="desired"}`), [ENGINES]);
});

test("every alert of the chart's PrometheusRule fires on what really happened", async () => {
  const want: Record<string, Record<string, string>> = {
    IppControllerDown: { namespace: EC_NAMESPACE, ipp_cluster: "gone" },
    IppEnginesBelowDesired: { cluster_namespace: EC_NAMESPACE, cluster: EC_NAME },
    IppEngineClusterStuck: { cluster_namespace: EC_NAMESPACE, cluster: EC_NAME },
    IppSshLinkDown: { state: "backoff" },
    IppQstatErrors: { command: "qstat" },
    IppHeartbeatMissesRising: { namespace: EC_NAMESPACE, ipp_cluster: EC_NAME },
    IppBadMessages: { namespace: EC_NAMESPACE, ipp_cluster: EC_NAME },
  };
  // the bad-message counter's series starts at 1 (the first malformed message created it): one more
  // malformed message, now that Prometheus has the series, is a rate above 0
  const dealer = new Dealer({ linger: 2000 });
  dealer.connect(registrationUrl);
  await dealer.send(["<IDS|MSG>", "not-a-signature", "{not json", "{}", "{}", "{}"]);
  dealer.close();
  const matches = (a: { labels: Record<string, string> }, labels: Record<string, string>) => Object.entries(labels).every(([k, v]) => a.labels[k] === v);
  const deadline = Date.now() + 120_000;
  let missing: string[] = [];
  for (;;) {
    const firing = (await prom!.alerts()).filter((a) => a.state === "firing");
    missing = Object.entries(want).filter(([name, labels]) => !firing.some((a) => a.labels.alertname === name && matches(a, labels))).map(([n]) => n);
    if (missing.length === 0) break;
    if (Date.now() > deadline) break;
    await sleep(1000);
  }
  assert.deepEqual(missing, [], `alerts not firing: ${JSON.stringify(await prom!.alerts())}`);
  const down = (await prom!.alerts()).find((a) => a.labels.alertname === "IppSshLinkDown");
  assert.match(down!.labels.host!, /^[^@]+@127\.0\.0\.1:\d+$/, "the link of the host nobody answers on");
});
