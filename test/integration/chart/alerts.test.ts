/**
 * The chart's PrometheusRule: rendered by the real helm, every rule checked by `promtool check
 * rules` and exercised by `promtool test rules` (test/fixtures/alerts/promtool-tests.yaml: each
 * alert stays quiet before its threshold or `for:` and fires after, with its labels and text).
 * The same rules fire for real against live metrics in dashboards-prometheus.test.ts.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { REPO_ROOT } from "../../support/paths.ts";
import { promtoolPath } from "../../support/tools.ts";
import { renderChart } from "./render.ts";
import { renderAlertGroups, writeRulesFile } from "./alert-rules.ts";

const dir = mkdtempSync(join(tmpdir(), "ipp-alerts-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const FIXTURE = join(REPO_ROOT, "test/fixtures/alerts/promtool-tests.yaml");
const ALERTS = ["IppControllerDown", "IppEnginesBelowDesired", "IppEngineClusterStuck", "IppSshLinkDown", "IppQstatErrors", "IppHeartbeatMissesRising", "IppBadMessages"];

const promtool = (args: string[]) => {
  const r = spawnSync(promtoolPath(), args, { encoding: "utf8", timeout: 60_000, cwd: dir });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};

test("no PrometheusRule unless enabled", () => {
  assert.equal(renderChart().filter((d) => d.kind === "PrometheusRule").length, 0);
});

test("every alert is rendered, valid for promtool check rules, and covered by a promtool test case", () => {
  const groups = renderAlertGroups();
  assert.deepEqual(groups.flatMap((g) => g.rules.map((r) => r.alert)), ALERTS);
  writeRulesFile(join(dir, "rules.yaml"), groups);
  const check = promtool(["check", "rules", "rules.yaml"]);
  assert.equal(check.status, 0, check.out);
  assert.match(check.out, /SUCCESS: 7 rules found/);
  const cases = parse(readFileSync(FIXTURE, "utf8")) as { tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
  for (const alert of ALERTS) {
    const evals = cases.tests.flatMap((t) => t.alert_rule_test).filter((a) => a.alertname === alert);
    assert.ok(evals.some((e) => e.exp_alerts.length === 0) && evals.some((e) => e.exp_alerts.length > 0), `${alert}: a quiet and a firing case`);
  }
});

test("promtool test rules: each alert is quiet before its threshold and fires after, with its labels and text", () => {
  writeRulesFile(join(dir, "rules.yaml"), renderAlertGroups());
  copyFileSync(FIXTURE, join(dir, "tests.yaml"));
  const r = promtool(["test", "rules", "tests.yaml"]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /SUCCESS/);
});

test("thresholds and durations come from values; a rule can be turned off", () => {
  const groups = renderAlertGroups({
    qstatErrors: { threshold: 7, window: "30m", for: "1m" },
    clusterStuck: { phases: "Queued", for: "2h" },
    badMessages: { enabled: false },
  });
  const rules = new Map(groups.flatMap((g) => g.rules).map((r) => [r.alert, r]));
  assert.equal(rules.get("IppQstatErrors")!.expr, 'increase(ipp_operator_pbs_command_errors_total{command="qstat"}[30m]) > 7');
  assert.equal(rules.get("IppQstatErrors")!.for, "1m");
  assert.equal(rules.get("IppEngineClusterStuck")!.expr, 'ipp_operator_enginecluster_phase{phase=~"Queued"} == 1');
  assert.equal(rules.get("IppEngineClusterStuck")!.for, "2h");
  assert.equal(rules.has("IppBadMessages"), false);
  assert.equal(rules.get("IppEnginesBelowDesired")!.for, "15m", "defaults kept for what is not set");
});
