/**
 * The Grafana dashboards shipped in the chart: structure Grafana needs (unique ids, a Prometheus
 * data-source variable used by every panel, no overlapping panels) and every metric and label a
 * query names exists in the metric definitions (src/metrics/*.ts), so a renamed metric breaks
 * this test instead of a dashboard. The integration test runs every query on a real Prometheus.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import { createControllerMetrics } from "../../../src/metrics/controller.ts";
import { createOperatorMetrics, createPbsMetrics, createTunnelMetrics } from "../../../src/metrics/operator.ts";
import { REPO_ROOT } from "../../support/paths.ts";
import { dashboardQueries, loadDashboards, type Dashboard, type Panel } from "../../support/dashboards.ts";

/** Labels Prometheus adds to every scraped series: the job, instance and the chart's ServiceMonitor target labels. */
const TARGET_LABELS = ["job", "instance", "namespace", "service", "pod", "container", "endpoint", "ipp_cluster"];

interface MetricInfo { type: string; labels: Set<string> }

function definedMetrics(): Map<string, MetricInfo> {
  const registry = new Registry();
  createOperatorMetrics(registry);
  createPbsMetrics(registry);
  createTunnelMetrics(registry);
  createControllerMetrics(registry);
  const out = new Map<string, MetricInfo>();
  for (const m of registry.getMetricsAsArray()) {
    const { name, type, labelNames } = m as unknown as { name: string; type: string; labelNames?: string[] };
    out.set(name, { type: String(type), labels: new Set(labelNames ?? []) });
  }
  return out;
}

/** The metric a series name belongs to (histogram series carry _bucket, _sum and _count). */
function metricOf(series: string, metrics: Map<string, MetricInfo>): [string, MetricInfo] | undefined {
  const direct = metrics.get(series);
  if (direct) return [series, direct];
  const m = /^(.*)_(bucket|sum|count)$/.exec(series);
  const base = m ? metrics.get(m[1]!) : undefined;
  return m && base && (base.type === "histogram" || base.type === "summary") ? [m[1]!, base] : undefined;
}

test("no metric defines a label the scrape target sets (Prometheus would rename it exported_<label>)", () => {
  const clashes = [...definedMetrics()].flatMap(([name, m]) => [...m.labels].filter((l) => TARGET_LABELS.includes(l)).map((l) => `${name}{${l}}`));
  assert.deepEqual(clashes, []);
});

const dashboards = loadDashboards();

test("the chart ships the two dashboards, each with a stable uid matching its file", () => {
  assert.deepEqual(readdirSync(join(REPO_ROOT, "charts/ipp-operator/dashboards")).sort(), ["ipp-controller.json", "ipp-operator.json"]);
  assert.deepEqual(dashboards.map((d) => [d.file, d.json.uid, d.json.title]), [
    ["ipp-controller.json", "ipp-controller", "ipp controller"],
    ["ipp-operator.json", "ipp-operator", "ipp-operator"],
  ]);
});

function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

for (const { file, json } of dashboards) {
  test(`${file}: template variables, data source on every panel, unique ids and refIds, no overlaps`, () => {
    const vars = json.templating.list;
    const ds = vars.find((v) => v.name === "datasource");
    assert.ok(ds, "a datasource variable");
    assert.equal(ds.type, "datasource");
    assert.equal(ds.query, "prometheus");
    const expectedVars = file === "ipp-controller.json" ? ["datasource", "namespace", "cluster"] : ["datasource", "namespace"];
    assert.deepEqual(vars.map((v) => v.name), expectedVars);
    for (const v of vars.filter((x) => x.type === "query")) {
      assert.deepEqual(v.datasource, { type: "prometheus", uid: "${datasource}" }, `variable ${v.name} data source`);
      assert.equal(v.includeAll, true);
      assert.equal(v.allValue, ".*", `variable ${v.name}: All matches every value with =~`);
    }

    const panels = allPanels(json);
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, `panel ids unique: ${ids.join(",")}`);
    assert.ok(ids.every((id) => Number.isInteger(id) && id > 0));
    const cells = new Set<string>();
    for (const p of panels) {
      const g = p.gridPos;
      assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0 && g.y >= 0, `panel ${p.id} inside the 24-column grid`);
      for (let x = g.x; x < g.x + g.w; x++) for (let y = g.y; y < g.y + g.h; y++) {
        assert.ok(!cells.has(`${x},${y}`), `panel ${p.id} "${p.title}" overlaps another at ${x},${y}`);
        cells.add(`${x},${y}`);
      }
      if (p.type === "row") continue;
      assert.ok(p.title, `panel ${p.id} has a title`);
      assert.deepEqual(p.datasource, { type: "prometheus", uid: "${datasource}" }, `panel ${p.id} "${p.title}" uses the datasource variable`);
      assert.ok(p.targets && p.targets.length > 0, `panel ${p.id} "${p.title}" has queries`);
      const refIds = p.targets.map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `panel ${p.id} refIds unique`);
      for (const t of p.targets) {
        assert.ok(t.expr.trim().length > 0, `panel ${p.id} ${t.refId} has an expression`);
        assert.deepEqual(t.datasource, p.datasource, `panel ${p.id} ${t.refId} data source`);
      }
    }
  });
}

test("every metric and label a dashboard query names is defined in src/metrics", () => {
  const metrics = definedMetrics();
  const problems: string[] = [];
  const used = new Set<string>();
  for (const q of dashboardQueries(dashboards)) {
    const names = [...new Set(q.expr.match(/\bipp_(?:operator|controller)_[a-z0-9_]+\b/g) ?? [])];
    if (names.length === 0) problems.push(`${q.where}: names no ipp_ metric: ${q.expr}`);
    const allowed = new Set(TARGET_LABELS);
    for (const n of names) {
      const found = metricOf(n, metrics);
      if (!found) { problems.push(`${q.where}: ${n} is not defined in src/metrics`); continue; }
      used.add(found[0]);
      for (const l of found[1].labels) allowed.add(l);
      if (found[1].type === "histogram") allowed.add("le");
    }
    const labelsUsed = new Set<string>();
    for (const m of q.expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) for (const l of m[1]!.split(",")) if (l.trim()) labelsUsed.add(l.trim());
    for (const m of q.expr.matchAll(/\{([^}]*)\}/g)) for (const l of m[1]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) labelsUsed.add(l[1]!);
    const lv = /^label_values\((?:[^,]*,)?\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q.expr);
    if (lv) labelsUsed.add(lv[1]!);
    for (const l of labelsUsed) if (!allowed.has(l)) problems.push(`${q.where}: label ${l} is on none of ${names.join(", ")}`);
  }
  assert.deepEqual(problems, []);
  // The dashboards cover what the issue asks for.
  for (const name of [
    "ipp_operator_reconcile_total", "ipp_operator_reconcile_errors_total", "ipp_operator_reconcile_duration_seconds",
    "ipp_operator_workqueue_depth", "ipp_operator_engineclusters", "ipp_operator_time_to_ready_seconds", "ipp_operator_leader",
    "ipp_controller_engines_registered", "ipp_controller_engines_alive", "ipp_controller_heartbeat_misses_total",
    "ipp_controller_messages_total", "ipp_controller_bytes_total", "ipp_controller_tasks_submitted_total",
    "ipp_controller_tasks_completed_total", "ipp_controller_tasks_failed_total", "ipp_controller_task_latency_seconds",
    "ipp_controller_queue_depth", "ipp_controller_bad_messages_total", "ipp_controller_time_to_first_engine_seconds",
  ]) assert.ok(used.has(name), `a panel shows ${name}`);
});

test("dashboard queries are found in panels, rows and template variables", () => {
  const qs = dashboardQueries(dashboards);
  assert.ok(qs.some((q) => q.where.includes("variable cluster")));
  const panelTargets = dashboards.flatMap((d) => allPanels(d.json)).flatMap((p) => p.targets ?? []).length;
  assert.equal(qs.filter((q) => !q.where.includes("variable")).length, panelTargets);
  assert.ok(readFileSync(join(REPO_ROOT, "charts/ipp-operator/dashboards/ipp-operator.json"), "utf8").endsWith("}\n"));
});
