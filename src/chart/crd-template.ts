/**
 * Turns the generated CRD (plain YAML, as written to crds/) into the Helm chart's CRD template:
 * the whole document is gated by `.Values.crds.enabled`, carries the chart's labels, and gets
 * `helm.sh/resource-policy: keep` when `.Values.crds.keep` is set, so `helm uninstall` does not
 * delete every EngineCluster with the CRD. Pure: a YAML string in, a template string out.
 *
 * The CRD's own metadata labels and annotations are kept. Any `{{` inside the CRD text (a
 * description or a CEL message) is escaped so Helm's template engine prints it literally.
 */
import { parseDocument, isMap, type Document } from "yaml";

export const CRD_TEMPLATE_HEADER =
  "# Generated from the EngineCluster zod schemas by scripts/gen-crd.ts (through src/chart/crd-template.ts); do not edit.";

/** Helm's template engine treats `{{` as the start of an action; print it literally instead. */
function escapeTemplateDelimiters(text: string): string {
  return text.replaceAll("{{", '{{ "{{" }}');
}

function stringMap(doc: Document, path: string[]): Record<string, string> {
  const node = doc.getIn(path, true);
  if (node === undefined || node === null) return {};
  if (!isMap(node)) throw new Error(`CRD ${path.join(".")} is not a mapping`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(node.toJSON() as Record<string, unknown>)) out[k] = String(v);
  return out;
}

const quote = (s: string): string => JSON.stringify(s);

/**
 * @param crdYaml one CustomResourceDefinition document (as in crds/ipp.dev_engineclusters.yaml)
 * @returns the contents of charts/ipp-operator/templates/crd.yaml
 */
export function crdYamlToHelmTemplate(crdYaml: string): string {
  const doc = parseDocument(crdYaml);
  if (doc.errors.length > 0) throw new Error(`CRD YAML does not parse: ${doc.errors[0]?.message ?? ""}`);
  if (doc.get("kind") !== "CustomResourceDefinition") throw new Error("expected a CustomResourceDefinition document");
  if (!isMap(doc.get("metadata", true))) throw new Error("CRD has no metadata mapping");
  const labels = stringMap(doc, ["metadata", "labels"]);
  const annotations = stringMap(doc, ["metadata", "annotations"]);
  doc.deleteIn(["metadata", "labels"]);
  doc.deleteIn(["metadata", "annotations"]);

  const body = escapeTemplateDelimiters(doc.toString({ lineWidth: 0 })).trimEnd().split("\n");
  const at = body.findIndex((line) => line === "metadata:");
  if (at < 0) throw new Error("CRD metadata is not a top-level block mapping");

  const meta: string[] = [
    "  labels:",
    '    {{- include "ipp-operator.labels" . | nindent 4 }}',
    ...Object.entries(labels).map(([k, v]) => `    ${quote(k)}: ${quote(escapeTemplateDelimiters(v))}`),
  ];
  if (Object.keys(annotations).length > 0) {
    meta.push("  annotations:");
    meta.push(...Object.entries(annotations).map(([k, v]) => `    ${quote(k)}: ${quote(escapeTemplateDelimiters(v))}`));
    meta.push("    {{- if .Values.crds.keep }}", "    helm.sh/resource-policy: keep", "    {{- end }}");
  } else {
    meta.push("  {{- if .Values.crds.keep }}", "  annotations:", "    helm.sh/resource-policy: keep", "  {{- end }}");
  }
  const lines = [...body.slice(0, at + 1), ...meta, ...body.slice(at + 1)];
  return [CRD_TEMPLATE_HEADER, "{{- if .Values.crds.enabled }}", ...lines, "{{- end }}", ""].join("\n");
}
