/**
 * Writes the generated CRD: crds/ipp.dev_engineclusters.yaml, and the Helm chart's CRD template
 * when charts/ipp-operator exists. Run `npx tsx scripts/gen-crd.ts` after changing src/api; a unit
 * test fails when the committed files are stale.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { crdYamlToHelmTemplate } from "../src/chart/crd-template.ts";
import { generatedFiles } from "../src/crd/generate.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const chart = existsSync(join(root, "charts/ipp-operator"));
for (const f of generatedFiles(chart ? { toChartTemplate: crdYamlToHelmTemplate } : {})) {
  const p = join(root, f.path);
  const old = existsSync(p) ? readFileSync(p, "utf8") : undefined;
  if (old === f.content) {
    process.stdout.write(`unchanged ${f.path}\n`);
    continue;
  }
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, f.content);
  process.stdout.write(`wrote ${f.path}\n`);
}
