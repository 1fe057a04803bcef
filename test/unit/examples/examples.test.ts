// Every manifest in examples/ is a valid EngineCluster by the same schemas the CRD is generated from.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { describeErrors, parseEngineCluster } from "../../../src/api/index.ts";
import { REPO_ROOT } from "../../support/paths.ts";

const dir = join(REPO_ROOT, "examples");
const files = readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort();

test("examples/ holds numbered manifests", () => {
  assert.ok(files.length >= 3, "expected the example manifests");
  for (const f of files) assert.match(f, /^\d\d-[a-z0-9-]+\.yaml$/);
});

for (const f of files) {
  test(`examples/${f} is a valid EngineCluster`, () => {
    const r = parseEngineCluster(parse(readFileSync(join(dir, f), "utf8")));
    assert.ok(r.ok, r.ok ? "" : describeErrors(r.errors));
  });
}
