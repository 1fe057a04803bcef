/**
 * Reads the chart's Grafana dashboards and lists every PromQL query in them (panel targets,
 * including panels nested in collapsed rows, and query template variables), and substitutes
 * Grafana's variables so a query can be sent to Prometheus as Grafana would send it.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./paths.ts";

export interface Target { refId: string; expr: string; datasource?: unknown; instant?: boolean }
export interface Panel {
  id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number };
  datasource?: unknown; targets?: Target[]; panels?: Panel[];
}
export interface Variable {
  name: string; type: string; query: unknown; datasource?: unknown; includeAll?: boolean; allValue?: string;
}
export interface Dashboard { uid: string; title: string; panels: Panel[]; templating: { list: Variable[] } }
export interface Query { dashboard: string; where: string; expr: string; kind: "panel" | "variable" }

export const DASHBOARD_DIR = join(REPO_ROOT, "charts/ipp-operator/dashboards");

export function loadDashboards(): Array<{ file: string; json: Dashboard }> {
  return readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith(".json")).sort()
    .map((file) => ({ file, json: JSON.parse(readFileSync(join(DASHBOARD_DIR, file), "utf8")) as Dashboard }));
}

export function dashboardQueries(dashboards: Array<{ file: string; json: Dashboard }>): Query[] {
  const out: Query[] = [];
  for (const { file, json } of dashboards) {
    for (const v of json.templating.list) {
      if (v.type !== "query") continue;
      const q = typeof v.query === "string" ? v.query : (v.query as { query: string }).query;
      out.push({ dashboard: file, where: `${file} variable ${v.name}`, expr: q, kind: "variable" });
    }
    const panels = json.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    for (const p of panels) for (const t of p.targets ?? []) {
      out.push({ dashboard: file, where: `${file} panel ${p.id} "${p.title}" ${t.refId}`, expr: t.expr, kind: "panel" });
    }
  }
  return out;
}

/**
 * Grafana's substitutions: template variables by value (a multi-value "All" becomes the
 * variable's allValue, `.*`), and the interval/range macros by durations.
 */
export function substitute(expr: string, vars: Record<string, string>, macros = { rateInterval: "1m", interval: "15s", range: "5m" }): string {
  let out = expr
    .replaceAll("$__rate_interval", macros.rateInterval)
    .replaceAll("$__interval", macros.interval)
    .replaceAll("$__range", macros.range);
  for (const [k, v] of Object.entries(vars)) out = out.replaceAll(`\${${k}}`, v).replaceAll(`$${k}`, v);
  if (/\$\w/.test(out)) throw new Error(`unsubstituted variable in ${out}`);
  return out;
}

/** A `label_values(metric{sel}, label)` variable query as a PromQL series selector plus label. */
export function labelValuesQuery(expr: string): { match: string; label: string } {
  const m = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(expr.trim());
  if (!m) throw new Error(`not a label_values() query: ${expr}`);
  return { match: m[1]!.trim(), label: m[2]! };
}
