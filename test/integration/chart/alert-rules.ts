/** The chart's PrometheusRule, rendered by the real helm, as a Prometheus rules file. */
import { writeFileSync } from "node:fs";
import { stringify } from "yaml";
import { one, renderChart } from "./render.ts";

export interface RuleGroup { name: string; rules: Array<{ alert: string; expr: string; for: string; labels: Record<string, string>; annotations: Record<string, string> }> }

/** The groups of the chart's PrometheusRule rendered with `rules` (values under prometheusRule.rules). */
export function renderAlertGroups(rules: Record<string, unknown> = {}): RuleGroup[] {
  const docs = renderChart({ "prometheusRule.enabled": true, ...Object.fromEntries(Object.entries(rules).map(([k, v]) => [`prometheusRule.rules.${k}`, v])) });
  return (one(docs, "PrometheusRule").spec as { groups: RuleGroup[] }).groups;
}

/** Writes the groups as a rules file Prometheus and promtool load (`rule_files`). */
export function writeRulesFile(path: string, groups: RuleGroup[]): void {
  writeFileSync(path, stringify({ groups }));
}
