/**
 * The pure halves of the SQLite store: the pickled buffer lists upstream stores and the SQL it
 * renders for a query (operators, NULL rules, errors, dates).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PickleError, pickleBufferList, unpickleBufferList } from "../../../src/controller/core/py-pickle.ts";
import { bindValue, pyIsoformat, pyJson, pyStr, renderQuery, selectKeys } from "../../../src/controller/core/sql-query.ts";

test("pickled buffer lists round-trip, and CPython's own pickles (frames, memo) are read", () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 5 }), (arrs) => {
    const bufs = arrs.map((a) => Buffer.from(a));
    assert.deepEqual(unpickleBufferList(pickleBufferList(bufs)).map((b) => [...b]), bufs.map((b) => [...b]));
  }));
  // pickle.dumps([b'a', b'bb'], -1) and pickle.dumps([b'abc'] * 3, -1) from CPython 3.11
  const two = Buffer.from("80059508000000000000005d9428430161944302626294652e".replace("9508000000000000005d", "950e000000000000005d"), "hex");
  assert.deepEqual(unpickleBufferList(two).map(String), ["a", "bb"]);
  const memo = Buffer.from("8005950f000000000000005d942843036162639468016801652e", "hex");
  assert.deepEqual(unpickleBufferList(memo).map(String), ["abc", "abc", "abc"]);
  // anything but a list of bytes is refused, never interpreted
  assert.throws(() => unpickleBufferList(Buffer.from("80048c026f73948c0673797374656d9493942e", "hex")), PickleError);
  assert.throws(() => unpickleBufferList(Buffer.from("8005", "hex")), PickleError);
});

test("dates: Python isoformat with an offset, microseconds only when non-zero", () => {
  assert.equal(pyIsoformat("2026-12-07T04:05:06.123456Z"), "2026-12-07T04:05:06.123456+00:00");
  assert.equal(pyIsoformat("2026-12-07T04:05:06.5Z"), "2026-12-07T04:05:06.500000+00:00");
  assert.equal(pyIsoformat("2026-12-07T04:05:06.000Z"), "2026-12-07T04:05:06+00:00");
  assert.equal(pyIsoformat("2026-12-07T04:05:06+0100"), "2026-12-07T04:05:06+01:00");
  assert.equal(pyIsoformat("2026-12-07T04:05"), null);
  assert.equal(pyIsoformat("task"), null);
});

test("Python's json.dumps and repr spellings", () => {
  assert.equal(pyJson({ a: [1, 2.5, "é"], b: null, c: true }), '{"a": [1, 2.5, "\\u00e9"], "b": null, "c": true}');
  assert.equal(pyStr("x"), "'x'");
  assert.equal(pyStr("it's"), `"it's"`);
  assert.equal(bindValue(true), 1);
  assert.equal(bindValue("2026-12-07T04:05:06Z"), "2026-12-07T04:05:06+00:00");
});

test("queries render as upstream's SQLiteDB renders them", () => {
  assert.deepEqual(renderQuery({ label: { $glob: "lb-*" }, completed: { $ne: null } }), { where: "label GLOB ? AND completed IS NOT NULL", args: ["lb-*"] });
  assert.deepEqual(renderQuery({ msg_id: { $in: ["a", "b"] } }), { where: "( msg_id = ? OR msg_id = ? )", args: ["a", "b"] });
  assert.deepEqual(renderQuery({ msg_id: { $nin: ["a", "b"] } }), { where: "( msg_id != ? AND msg_id != ? )", args: ["a", "b"] });
  assert.deepEqual(renderQuery({ resubmitted: null, queue: "task" }), { where: "resubmitted IS NULL AND queue = ?", args: ["task"] });
  assert.deepEqual(renderQuery({ submitted: { $lt: "2026-12-07T04:05:06Z", $gte: "2026-12-07T04:00:00.25Z" } }),
    { where: "submitted < ? AND submitted >= ?", args: ["2026-12-07T04:05:06+00:00", "2026-12-07T04:00:00.250000+00:00"] });
  assert.deepEqual(renderQuery({ msg_id: { $in: [] } }).where, "(  )"); // SQLite's syntax error, as upstream
  const err = (f: () => unknown) => { try { f(); } catch (e) { return [(e as { ename: string }).ename, (e as Error).message]; } return null; };
  assert.deepEqual(err(() => renderQuery({ label: { $all: ["x"] } })), ["KeyError", `"Unsupported operator: '$all'"`]);
  assert.deepEqual(err(() => renderQuery({ label: { $exists: true } })), ["KeyError", `"Unsupported operator: '$exists'"`]);
  assert.deepEqual(err(() => renderQuery({ bogus: 1 })), ["KeyError", `"Illegal testing key(s): {'bogus'}"`]);
  assert.deepEqual(err(() => renderQuery({ label: { $in: [null] } })), ["ValueError", "Cannot use '$in' test with NULL values on SQLite backend"]);
  assert.deepEqual(err(() => renderQuery({ label: "x" }, ["msg_id", "queue"])), ["KeyError", `"Illegal testing key(s): {'label'}"`]);
  assert.deepEqual(selectKeys(["label", "msg_id"]), ["msg_id", "label"]);
  assert.deepEqual(err(() => selectKeys(["nope"])), ["KeyError", `"Bad record key(s): ['nope']"`]);
});
