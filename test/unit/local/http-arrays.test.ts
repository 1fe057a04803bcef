import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeArray, encodeArray, gatherApplyBuffers, isPythonName, parseGatherResult, partition, scatterApplyBuffers,
} from "../../../src/controller/http/arrays.ts";

test("partition matches ipyparallel's scatter: contiguous, first n % q parts take one extra", () => {
  assert.deepEqual([0, 1, 2].map((p) => partition(7, p, 3)), [[0, 3], [3, 5], [5, 7]]);
  assert.deepEqual([0, 1, 2, 3].map((p) => partition(32, p, 4)), [[0, 8], [8, 16], [16, 24], [24, 32]]);
  assert.deepEqual([0, 1, 2].map((p) => partition(2, p, 3)), [[0, 1], [1, 2], [2, 2]]);
  assert.throws(() => partition(4, 2, 2), RangeError);
  assert.throws(() => partition(4, 0, 0), RangeError);
});

test("partition covers 0..n exactly once, in order, sizes differ by at most one", () => {
  fc.assert(fc.property(fc.nat(10_000), fc.integer({ min: 1, max: 300 }), (n, q) => {
    let next = 0;
    const sizes: number[] = [];
    for (let p = 0; p < q; p++) {
      const [lo, hi] = partition(n, p, q);
      assert.equal(lo, next);
      sizes.push(hi - lo);
      next = hi;
    }
    assert.equal(next, n);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1);
    assert.deepEqual([...sizes].sort((a, b) => b - a), sizes); // bigger parts first
  }));
});

test("float64 and int64 round-trip through little-endian bytes", () => {
  const f = [0, -1.5, 1e308, Number.MIN_VALUE, -0];
  assert.deepEqual(decodeArray(encodeArray(f, "float64"), "float64"), f);
  const i = [0, -1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER];
  assert.deepEqual(decodeArray(encodeArray(i, "int64"), "int64"), i);
  assert.deepEqual([...encodeArray([1], "int64")], [1, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...encodeArray([1], "float64")], [0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
});

test("int64 refuses unsafe integers instead of rounding; large stored values come back as strings", () => {
  assert.throws(() => encodeArray([1.5], "int64"), RangeError);
  assert.throws(() => encodeArray([2 ** 60], "int64"), RangeError);
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(2n ** 62n);
  assert.deepEqual(decodeArray(b, "int64"), ["4611686018427387904"]);
});

test("only non-keyword identifiers are array names", () => {
  for (const ok of ["a", "_x1", "totalsum", "A_b"]) assert.equal(isPythonName(ok), true, ok);
  for (const bad of ["", "1a", "a-b", "a b", "import", "None", "x;import os", "é", "a".repeat(200)]) assert.equal(isPythonName(bad), false, bad);
  assert.throws(() => scatterApplyBuffers("import", Buffer.alloc(0), "float64"), RangeError);
  assert.throws(() => gatherApplyBuffers("a.b"), RangeError);
});

test("scatter buffers: [f, info, code, None, {b: bytes}] pickles with the raw data embedded", () => {
  const data = encodeArray([1, 2, 3], "float64");
  const bufs = scatterApplyBuffers("a", data, "float64");
  assert.equal(bufs.length, 5);
  assert.deepEqual([...bufs[0]!.subarray(0, 2)], [0x80, 0x04]);
  assert.ok(bufs[0]!.includes("cbuiltins\nexec\n"));
  assert.ok(bufs[2]!.includes('globals()["a"]'));
  assert.ok(bufs[2]!.includes('dtype="<f8"'));
  assert.ok(bufs[4]!.includes(data));
  assert.equal(bufs[4]![bufs[4]!.length - 1], ".".charCodeAt(0));
});

test("parseGatherResult reads header and data from the raw result buffer", () => {
  const header = Buffer.from(JSON.stringify({ dtype: "<i8", shape: [2] }).padEnd(1100));
  const data = encodeArray([7, 8], "int64");
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  const raw = Buffer.concat([Buffer.from("IPPG"), len, header, data]);
  const part = parseGatherResult([Buffer.from("pickle"), raw]);
  assert.equal(part.dtype, "int64");
  assert.deepEqual(part.shape, [2]);
  assert.deepEqual(decodeArray(part.data, "int64"), [7, 8]);
  assert.equal(parseGatherResult([raw.subarray(0, 8 + header.length)]).data.length, 0);
  const u = Buffer.from('{"dtype":"<U3","shape":[]}');
  assert.equal(parseGatherResult([Buffer.concat([Buffer.from("IPPG"), Buffer.from([u.length, 0, 0, 0]), u])]).dtype, undefined);
  assert.throws(() => parseGatherResult([Buffer.from("nope")]), /no array payload/);
  assert.throws(() => parseGatherResult([Buffer.concat([Buffer.from("IPPG"), Buffer.from([99, 0, 0, 0]), u])]), /truncated/);
});
