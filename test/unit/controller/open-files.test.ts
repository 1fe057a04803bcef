import { test } from "node:test";
import assert from "node:assert/strict";
import { descriptorsFor, enginesWithin, nearLimitAdvice, startupAdvice } from "../../../src/controller/core/open-files.ts";
import { readOpenFilesLimit } from "../../../src/util/open-files.ts";

test("open files: 8 descriptors per engine plus a margin; 20,000 holds 2,468 engines, 4,096 need 33,024", () => {
  assert.equal(enginesWithin(20_000), 2468);
  assert.equal(descriptorsFor(4096), 33_024);
  assert.equal(enginesWithin(100), 0);
  assert.equal(enginesWithin(Infinity), Infinity);
});

test("open files: a start-up warning only when the expected engines do not fit", () => {
  const limit = { soft: 20_000, hard: 20_000 };
  const ok = startupAdvice(limit, 2000);
  assert.equal(ok.level, "info");
  assert.equal(ok.fields.engines, 2468);
  const tooMany = startupAdvice(limit, 4096);
  assert.equal(tooMany.level, "warn");
  assert.match(tooMany.message, /holds about 2468 engines, 4096 are expected and need 33024/);
  assert.match(tooMany.message, /ulimit -n/);
  assert.equal(startupAdvice(limit).level, "info");
  assert.equal(startupAdvice({ soft: Infinity, hard: Infinity }, 100_000).level, "info");
});

test("open files: one warning as the registered engines cross 90 % of what the limit holds", () => {
  const limit = { soft: 1280, hard: 1280 }; // holds 128, warns at 115
  assert.equal(nearLimitAdvice(limit, 113, 114), null);
  assert.match(nearLimitAdvice(limit, 114, 115)!.message, /115 engines registered: the open-files limit \(1280\) holds about 128/);
  assert.equal(nearLimitAdvice(limit, 115, 116), null);
  assert.equal(nearLimitAdvice({ soft: Infinity, hard: Infinity }, 114, 115), null);
});

test("open files: this process's limit is read from /proc (Linux)", () => {
  const l = readOpenFilesLimit();
  assert.ok(l, "Linux has /proc/self/limits");
  assert.ok(l.soft > 0 && l.hard >= l.soft);
});
