import { test } from "node:test";
import assert from "node:assert/strict";
import { parseLabelSelector, parseOperatorArgs } from "../../../src/commands/operator.ts";

test("parseLabelSelector: key=value pairs (kubectl's equality form), empty selects everything", () => {
  assert.deepEqual(parseLabelSelector(""), {});
  assert.deepEqual(parseLabelSelector("kubernetes.io/metadata.name=monitoring"), { "kubernetes.io/metadata.name": "monitoring" });
  assert.deepEqual(parseLabelSelector("team==obs, app.kubernetes.io/name=prometheus,empty="), { team: "obs", "app.kubernetes.io/name": "prometheus", empty: "" });
  for (const [bad, message] of [
    ["team!=obs", /not key=value/], ["team in (a,b)", /not key=value/], ["team", /not key=value/],
    ["-team=obs", /not a valid label key/], ["Example.com/x=y", /not a valid label key/], [`${"k".repeat(64)}=v`, /not a valid label key/],
    ["team=has space", /not key=value/], ["team=-x", /not a valid label value/], [`team=${"v".repeat(64)}`, /not a valid label value/],
    ["team=a,team=b", /given twice/],
  ] as Array<[string, RegExp]>) {
    assert.throws(() => parseLabelSelector(bad), message, bad);
  }
});

test("operator flags: metrics-scraper selectors (default: any namespace, any pod)", () => {
  const defaults = parseOperatorArgs([]);
  assert.ok(typeof defaults !== "string");
  assert.deepEqual([defaults.scraperNamespaceSelector, defaults.scraperPodSelector], [{}, {}]);
  const set = parseOperatorArgs(["--metrics-scraper-namespace-selector=kubernetes.io/metadata.name=monitoring", "--metrics-scraper-pod-selector", "app.kubernetes.io/name=prometheus"]);
  assert.ok(typeof set !== "string");
  assert.deepEqual(set.scraperNamespaceSelector, { "kubernetes.io/metadata.name": "monitoring" });
  assert.deepEqual(set.scraperPodSelector, { "app.kubernetes.io/name": "prometheus" });
  assert.throws(() => parseOperatorArgs(["--metrics-scraper-pod-selector=app in (x)"]), /--metrics-scraper-pod-selector: 'app in \(x\)' is not key=value/);
  assert.throws(() => parseOperatorArgs(["--metrics-scraper-pod-selector"]), /needs a value/);
});
