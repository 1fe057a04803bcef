/**
 * Paths of the command-line tools the chart and dashboard tests run, each provisioned by a
 * set-up script. A missing tool is an error naming the script that provides it, never a skip.
 *   helm:               scripts/setup/kube.sh helm  → ~/.cache/ipp-operator/kube/helm-<version>/helm
 *   prometheus/promtool: scripts/setup/prometheus.sh → Debian's prometheus package
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CACHE_DIR, REPO_ROOT } from "./paths.ts";

/** The helm version scripts/setup/kube.sh builds (its HELM_VERSION default, or $HELM_VERSION). */
export function helmVersion(): string {
  if (process.env.HELM_VERSION) return process.env.HELM_VERSION;
  const script = readFileSync(join(REPO_ROOT, "scripts/setup/kube.sh"), "utf8");
  const m = /^HELM_VERSION="\$\{HELM_VERSION:-(v[0-9][^}"]*)\}"/m.exec(script);
  if (!m?.[1]) throw new Error("scripts/setup/kube.sh has no HELM_VERSION default line");
  return m[1];
}

function required(path: string, how: string): string {
  if (!existsSync(path)) throw new Error(`${path} missing: run ${how}`);
  return path;
}

export function helmPath(): string {
  return required(join(CACHE_DIR, "kube", `helm-${helmVersion()}`, "helm"), "bash scripts/setup/kube.sh helm");
}

export function prometheusPath(): string {
  return required("/usr/bin/prometheus", "bash scripts/setup/prometheus.sh");
}

export function promtoolPath(): string {
  return required("/usr/bin/promtool", "bash scripts/setup/prometheus.sh");
}
