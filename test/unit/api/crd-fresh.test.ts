import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { crdYamlToHelmTemplate } from "../../../src/chart/crd-template.ts";
import { generatedFiles } from "../../../src/crd/generate.ts";
import { REPO_ROOT } from "../../support/paths.ts";

const chart = existsSync(join(REPO_ROOT, "charts/ipp-operator"));

for (const f of generatedFiles(chart ? { toChartTemplate: crdYamlToHelmTemplate } : {})) {
  test(`${f.path} is up to date with src/api`, () => {
    const p = join(REPO_ROOT, f.path);
    assert.ok(existsSync(p), `${f.path} is missing: run \`npx tsx scripts/gen-crd.ts\``);
    const committed = readFileSync(p, "utf8");
    assert.ok(committed === f.content, `${f.path} is stale (it differs from what src/api generates): run \`npx tsx scripts/gen-crd.ts\` and commit the result`);
  });
}
