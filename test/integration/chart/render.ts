/**
 * Runs the real helm (built by scripts/setup/kube.sh) on charts/ipp-operator and parses what it
 * renders. Shared by the chart tests.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { REPO_ROOT } from "../../support/paths.ts";
import { helmPath } from "../../support/tools.ts";

export const CHART_DIR = join(REPO_ROOT, "charts/ipp-operator");
/**
 * The Kubernetes version of the test rig's kube-apiserver. Without a cluster helm renders for its
 * built-in default (scripts/setup/kube.sh sets it as helm's Makefile does), so only the test of the
 * chart's kubeVersion constraint passes this explicitly.
 */
export const KUBE_VERSION = "1.34.4";
export const NAMESPACE = "ipp-system";
export const RELEASE = "ipp";

export interface KubeDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}

export interface HelmRun { status: number; stdout: string; stderr: string }

export function helm(args: string[]): HelmRun {
  const r = spawnSync(helmPath(), args, { encoding: "utf8", timeout: 60_000, env: { ...process.env, HELM_CACHE_HOME: "/tmp/ipp-helm-cache", HELM_CONFIG_HOME: "/tmp/ipp-helm-config", HELM_DATA_HOME: "/tmp/ipp-helm-data" } });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** `helm template` with --set-json pairs; throws with helm's message when it fails. */
export function renderChart(values: Record<string, unknown> = {}, extra: string[] = []): KubeDoc[] {
  const sets = Object.entries(values).flatMap(([k, v]) => ["--set-json", `${k}=${JSON.stringify(v)}`]);
  const r = helm(["template", RELEASE, CHART_DIR, "--namespace", NAMESPACE, ...sets, ...extra]);
  if (r.status !== 0) throw new Error(`helm template failed (${r.status}): ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`rendered YAML does not parse: ${d.errors[0]?.message}`);
      return d.toJS() as KubeDoc | null;
    })
    .filter((d): d is KubeDoc => d !== null);
}

export function byKind(docs: KubeDoc[], kind: string): KubeDoc[] {
  return docs.filter((d) => d.kind === kind);
}

export function one(docs: KubeDoc[], kind: string, name?: string): KubeDoc {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
  return found[0]!;
}
