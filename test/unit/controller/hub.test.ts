import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { Registry } from "prom-client";
import { Session, splitFrames, decodeRaw, isoDate, type JsonObject } from "../../../src/protocol/index.ts";
import { createControllerMetrics } from "../../../src/metrics/controller.ts";
import { createLogger } from "../../../src/util/log.ts";
import { HeartMonitor } from "../../../src/controller/core/heartbeat.ts";
import { BadMessages } from "../../../src/controller/bad-messages.ts";
import { HubRecords } from "../../../src/controller/records.ts";
import { DaskSchedulerProcess } from "../../../src/controller/dask.ts";
import { emptyRecord } from "../../../src/controller/core/hub-db.ts";
import { Timers } from "../../../src/controller/timers.ts";
import { queueCounters, trafficCounters } from "../../../src/controller/traffic.ts";
import { EngineRegistry } from "../../../src/controller/engines.ts";
import { Hub } from "../../../src/controller/hub.ts";
import type { ControllerContext } from "../../../src/controller/context.ts";
import type { Frames } from "../../../src/controller/socket-io.ts";

const KEY = "hub-test-key";

/** A hub over recording outlets: what it sends on the registration socket is decoded into `sent`. */
function makeHub() {
  const metrics = createControllerMetrics(new Registry());
  const session = new Session({ key: KEY, username: "hub-test" });
  const log = createLogger({ level: "error", sink: () => {} });
  const sent: { ids: Buffer[]; msgType: string; content: JsonObject }[] = [];
  const sink = { send: (_f: Frames) => {}, connected: (_p: Buffer) => {}, forget: (_p: Buffer) => {} };
  const reg = { send: (f: Frames) => { const raw = splitFrames(f); const m = decodeRaw(raw); sent.push({ ids: raw.ids, msgType: m.header.msg_type, content: m.content }); } };
  const timers = new Timers();
  const ctx: ControllerContext = {
    config: { ip: "127.0.0.1", key: KEY, heartbeatPeriodMs: 1000, taskScheme: "leastload" },
    log, clock: () => new Date(), startedAt: Date.now(), session, metrics,
    traffic: trafficCounters(metrics), queues: queueCounters(metrics),
    out: { reg, notif: sink, muxIn: sink, muxOut: sink, ctlIn: sink, ctlOut: sink, taskIn: sink, taskOut: sink, bcastIn: sink, leaves: [sink], iopubOut: sink, hbPing: sink },
    bad: new BadMessages({ metrics, log, session, maxMessageBytes: 1 << 20, logIntervalMs: 60_000 }),
    records: new HubRecords(metrics, { sizeLimitBytes: 1 << 20 }),
    timers, now: () => isoDate(new Date()),
  };
  const engines = new EngineRegistry(ctx, new HeartMonitor(), new EventEmitter(), { engineAdded: () => {}, engineRemoved: () => () => {} });
  let pings = 0;
  const suspects: number[] = [];
  const hub = new Hub(ctx, { engines, events: new EventEmitter(), engineInfo: {}, pingSoon: () => { pings++; }, suspectEngine: (id) => { suspects.push(id); }, submitTask: () => {}, stop: () => {}, dask: new DaskSchedulerProcess(createLogger({ level: "error" }), "/nonexistent/python") });
  const askFrom = (sender: string, msgType: string, content: JsonObject) => hub.onRegistration(session.build(msgType, content, { ids: [Buffer.from(sender)] }));
  const ask = (msgType: string, content: JsonObject) => askFrom("client-1", msgType, content);
  return { hub, engines, sent, ask, askFrom, timers, pings: () => pings, suspects, ctx };
}

test("hub dispatch: connection, queue and load requests answered by msg_type, to the sender", (t) => {
  const h = makeHub();
  t.after(() => h.timers.stop());
  h.ask("registration_request", { uuid: "e-0" });
  assert.equal(h.sent[0]!.msgType, "registration_reply");
  assert.equal(h.sent[0]!.content.status, "ok");
  assert.equal(h.pings(), 1);
  h.engines.finishRegistration("e-0");
  h.ask("connection_request", {});
  assert.deepEqual(h.sent[1], { ids: [Buffer.from("client-1")], msgType: "connection_reply", content: { status: "ok", engines: { 0: "e-0" } } });
  h.ask("queue_request", { targets: null, verbose: false });
  assert.deepEqual(h.sent[2]!.content, { status: "ok", 0: { queue: 0, completed: 0, tasks: 0 }, unassigned: 0 });
  h.ask("load_request", { targets: ["e-0"] });
  assert.deepEqual(h.sent[3]!.content, { status: "ok", 0: 0 });
});

test("hub dispatch: unknown msg_type and bad targets get a hub_error; the hub keeps answering", (t) => {
  const h = makeHub();
  t.after(() => h.timers.stop());
  h.ask("no_such_request", {});
  assert.equal(h.sent[0]!.msgType, "hub_error");
  assert.equal(h.sent[0]!.content.ename, "KeyError");
  assert.deepEqual(h.ctx.bad.snapshot(), { unknown_msg_type: 1 });
  h.ask("queue_request", { targets: [7] });
  assert.equal(h.sent[1]!.msgType, "hub_error");
  assert.equal(h.sent[1]!.content.ename, "IndexError");
  h.ask("registration_request", { uuid: "e-0" });
  h.ask("registration_request", { uuid: "e-0" });
  assert.equal(h.sent[3]!.msgType, "registration_reply");
  assert.equal(h.sent[3]!.content.ename, "KeyError");
  h.ask("history_request", {});
  assert.deepEqual(h.sent[4]!.content, { status: "ok", history: [] });
});

test("hub: result_request for a completed task whose record was culled answers as upstream (hub_error KeyError)", (t) => {
  const h = makeHub();
  t.after(() => h.timers.stop());
  const { records } = h.ctx;
  records.pending.add("gone");
  records.db.add({ ...emptyRecord("gone"), submitted: isoDate(new Date()), completed: isoDate(new Date()) });
  records.completeIfPending("gone", "e-0");
  records.pending.add("kept");
  records.db.add({ ...emptyRecord("kept"), submitted: isoDate(new Date()), completed: isoDate(new Date()), result_content: { status: "ok" } });
  records.completeIfPending("kept", "e-0");
  records.db.drop("gone"); // as culling drops it
  h.ask("result_request", { msg_ids: ["gone"], status_only: true });
  assert.deepEqual(h.sent[0]!.content, { status: "ok", pending: [], completed: ["gone"] });
  h.ask("result_request", { msg_ids: ["kept", "gone"], status_only: false });
  assert.equal(h.sent[1]!.msgType, "hub_error");
  assert.equal(h.sent[1]!.content.ename, "KeyError");
  assert.equal(h.sent[1]!.content.evalue, "'gone'");
  h.ask("result_request", { msg_ids: ["never"] });
  assert.equal(h.sent[2]!.msgType, "result_reply");
  assert.equal(h.sent[2]!.content.evalue, "'No such message: never'");
  h.ask("result_request", { msg_ids: ["kept"] });
  assert.deepEqual((h.sent[3]!.content.kept as JsonObject).result_content, { status: "ok" });
  h.ask("resubmit_request", { msg_ids: ["gone"] });
  assert.equal(h.sent[4]!.content.evalue, "No such msg(s): ['gone']");
});

test("hub: malformed queries from a key holder get a hub_error; unsigned ones get nothing", (t) => {
  const h = makeHub();
  t.after(() => h.timers.stop());
  const session = new Session({ key: KEY, username: "client" });
  const ids = [Buffer.from("client-1")];
  h.hub.onRegistration(session.serializeParts(ids, Buffer.from("{not json"), Buffer.from("{}"), Buffer.from("{}"), Buffer.from("{}")));
  assert.equal(h.sent[0]!.msgType, "hub_error");
  assert.equal(h.sent[0]!.content.ename, "ValueError");
  h.hub.onRegistration(session.serializeParts(ids, Buffer.from(JSON.stringify({ msg_id: "x", msg_type: "result_request" })), Buffer.from("{}"), Buffer.from("{}"), Buffer.from("[1]")));
  assert.equal(h.sent[1]!.msgType, "hub_error");
  h.ask("result_request", { msg_ids: 5 });
  assert.equal(h.sent[2]!.msgType, "hub_error");
  assert.equal(h.sent[2]!.content.ename, "TypeError");
  h.ask("result_request", {});
  assert.equal(h.sent[3]!.content.ename, "KeyError");
  h.ask("purge_request", { msg_ids: { a: 1 } });
  assert.equal(h.sent[4]!.msgType, "purge_reply");
  assert.equal(h.sent[4]!.content.ename, "TypeError");
  const forged = new Session({ key: "wrong", username: "x" });
  h.hub.onRegistration(forged.build("connection_request", {}, { ids }));
  assert.equal(h.sent.length, 5, "no answer without the key");
  assert.deepEqual(h.ctx.bad.snapshot(), { bad_json: 2, bad_signature: 1 });
});

test("hub: an unregistration_request from a socket that did not register the id only asks the heart (a nanny, or an old world's engine reaching a replaced controller)", (t) => {
  const h = makeHub();
  t.after(() => h.timers.stop());
  h.askFrom("engine-new-2", "registration_request", { uuid: "new-2", id: 2 });
  assert.equal(h.sent[0]!.content.id, 2);
  h.engines.finishRegistration("new-2");
  h.askFrom("engine-old-2", "unregistration_request", { id: 2 });
  assert.deepEqual([...h.engines.byId.keys()], [2], "the registered engine stays until its heart says otherwise");
  assert.deepEqual(h.suspects, [2], "its heart is checked");
  h.askFrom("engine-new-2", "unregistration_request", { id: 2 });
  assert.deepEqual([...h.engines.byId.keys()], [], "its own socket unregisters it at once");
  assert.deepEqual(h.suspects, [2]);
});

test("hub: a new engine asking for an id reported gone by another socket (its nanny) within a heartbeat period takes it, as upstream", (t) => {
  const h = makeHub();
  t.after(() => h.timers.stop());
  h.askFrom("engine-a", "registration_request", { uuid: "a", id: 0 });
  h.engines.finishRegistration("a");
  h.askFrom("nanny-a", "unregistration_request", { id: 0 });
  assert.deepEqual([...h.engines.byId.keys()], [0], "still registered while its heart is checked");
  h.askFrom("engine-b", "registration_request", { uuid: "b", id: 0 });
  assert.equal(h.sent.at(-1)!.content.id, 0, "the restarted engine gets its old id");
  h.engines.finishRegistration("b");
  assert.equal(h.engines.byId.get(0)!.uuid, "b");
});
