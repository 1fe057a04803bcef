import { test } from "node:test";
import assert from "node:assert/strict";
import { parse } from "yaml";
import { crdYamlToHelmTemplate, CRD_TEMPLATE_HEADER } from "../../../src/chart/crd-template.ts";

const CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: engineclusters.ipp.dev
spec:
  group: ipp.dev
  names:
    kind: EngineCluster
    plural: engineclusters
  scope: Namespaced
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          description: "shown as {{ literally }}"
`;

/** Evaluates the only template constructs the wrapper emits, the way Helm would. */
function render(template: string, values: { enabled: boolean; keep: boolean }): string {
  let out = template.replace(/\{\{ "\{\{" \}\}/g, "\u0000");
  out = out.replace(/\n?\s*\{\{- include "ipp-operator\.labels" \. \| nindent 4 \}\}/g, "\n    app.kubernetes.io/name: ipp-operator");
  const cond = (name: "enabled" | "keep") =>
    new RegExp(String.raw`\s*\{\{- if \.Values\.crds\.${name} \}\}([\s\S]*?)\s*\{\{- end \}\}`, "g");
  out = out.replace(cond("keep"), (_m, body: string) => (values.keep ? body : ""));
  out = out.replace(cond("enabled"), (_m, body: string) => (values.enabled ? body : ""));
  assert.doesNotMatch(out, /\{\{/, "every template action was evaluated");
  return out.replace(/\u0000/g, "{{");
}

test("the template is the CRD, gated by crds.enabled, with the keep annotation under crds.keep", () => {
  const t = crdYamlToHelmTemplate(CRD);
  assert.ok(t.startsWith(CRD_TEMPLATE_HEADER + "\n{{- if .Values.crds.enabled }}\n"));
  assert.ok(t.trimEnd().endsWith("{{- end }}"));

  const kept = parse(render(t, { enabled: true, keep: true }));
  assert.equal(kept.metadata.name, "engineclusters.ipp.dev");
  assert.deepEqual(kept.metadata.annotations, { "helm.sh/resource-policy": "keep" });
  assert.equal(kept.metadata.labels["app.kubernetes.io/name"], "ipp-operator");
  assert.equal(kept.spec.versions[0].schema.openAPIV3Schema.description, "shown as {{ literally }}");
  assert.deepEqual({ ...kept, metadata: undefined }, { ...parse(CRD), metadata: undefined });

  const notKept = parse(render(t, { enabled: true, keep: false }));
  assert.equal(notKept.metadata.annotations, undefined);
  assert.equal(parse(render(t, { enabled: false, keep: true })), null, "nothing but a comment when disabled");
});

test("the CRD's own labels and annotations survive next to the chart's", () => {
  const withMeta = CRD.replace(
    "metadata:\n  name: engineclusters.ipp.dev\n",
    "metadata:\n  name: engineclusters.ipp.dev\n  labels:\n    ipp.dev/generated: \"true\"\n  annotations:\n    ipp.dev/source: src/api\n",
  );
  const doc = parse(render(crdYamlToHelmTemplate(withMeta), { enabled: true, keep: true }));
  assert.deepEqual(doc.metadata.annotations, { "ipp.dev/source": "src/api", "helm.sh/resource-policy": "keep" });
  assert.equal(doc.metadata.labels["ipp.dev/generated"], "true");
  assert.equal(doc.metadata.labels["app.kubernetes.io/name"], "ipp-operator");
});

test("anything that is not one CRD document is refused", () => {
  assert.throws(() => crdYamlToHelmTemplate("kind: ConfigMap\nmetadata: {name: x}\n"), /CustomResourceDefinition/);
  assert.throws(() => crdYamlToHelmTemplate("kind: CustomResourceDefinition\n"), /metadata/);
  assert.throws(() => crdYamlToHelmTemplate("kind: [\n"), /does not parse/);
});
