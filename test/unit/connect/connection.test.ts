import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectError, clientInfoFromSecret, forwardedClientInfo, forwardedPorts, notReadyReason, pythonLine,
} from "../../../src/connect/core/connection.ts";

const client = {
  ssh: "", interface: "tcp://psum-controller.ns.svc.cluster.local", registration: 10101, control: 10110, mux: 10111, task: 10112,
  task_scheme: "leastload", iopub: 10113, notification: 10114, broadcast: 10115, key: "k", curve_serverkey: null,
  location: "psum-controller.ns.svc.cluster.local", pack: "json", unpack: "json", signature_scheme: "hmac-sha256",
};
const data = (v: unknown) => ({ "ipcontroller-client.json": Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64") });
const t = "2026-01-01T00:00:00Z";

test("the client file is the Secret's ipcontroller-client.json, checked for the fields a Client needs", () => {
  assert.deepEqual(clientInfoFromSecret(data(client), "ns/psum-connection"), client);
  assert.throws(() => clientInfoFromSecret(undefined, "ns/x"), (e: Error) => e instanceof ConnectError && /Secret ns\/x has no key ipcontroller-client.json/.test(e.message));
  assert.throws(() => clientInfoFromSecret(data("{oops"), "ns/x"), /is not JSON/);
  assert.throws(() => clientInfoFromSecret(data([1]), "ns/x"), /not a JSON object/);
  const { key: _k, mux: _m, ...partial } = client;
  assert.throws(() => clientInfoFromSecret(data(partial), "ns/x"), /lacks key, mux/);
});

test("port-forward: every client port once, the file rewritten to 127.0.0.1 and the local ports", () => {
  assert.deepEqual(forwardedPorts(client), [10101, 10110, 10111, 10112, 10113, 10114, 10115]);
  const local = new Map(forwardedPorts(client).map((p) => [p, p + 30000]));
  const f = forwardedClientInfo(client, local);
  assert.equal(f.interface, "tcp://127.0.0.1");
  assert.equal(f.location, "127.0.0.1");
  assert.deepEqual([f.registration, f.control, f.mux, f.task, f.iopub, f.notification, f.broadcast], [40101, 40110, 40111, 40112, 40113, 40114, 40115]);
  assert.equal(f.key, "k", "the key and everything else unchanged");
  assert.equal(f.task_scheme, "leastload");
  assert.throws(() => forwardedPorts({ ...client, mux: "x" }), /field mux is not a port/);
});

test("ready to connect once the controller is available; otherwise the reason, from the conditions", () => {
  const cond = (type: string, status: string, reason: string, message: string) => ({ type, status, reason, message, lastTransitionTime: t });
  assert.equal(notReadyReason({ status: { phase: "Starting", conditions: [cond("Ready", "False", "EnginesRegistering", "2/8"), cond("ControllerReady", "True", "ControllerAvailable", "ok")] } }, "ns/psum"), undefined);
  const why = notReadyReason({ status: { phase: "Queued", conditions: [cond("Ready", "False", "JobQueued", "job 12 is queued in batch: Priority"), cond("ControllerReady", "False", "ControllerCreating", "creating")] } }, "ns/psum");
  assert.match(why!, /^EngineCluster ns\/psum is not ready yet \(phase Queued; JobQueued: job 12 is queued in batch: Priority\)/);
  assert.match(why!, /kubectl describe ec psum/);
  assert.match(notReadyReason({}, "ns/psum")!, /phase no status yet; the operator has not reported on it yet/);
});

test("the printed line is the seed's ipp.Client(profile=...)", () => {
  assert.equal(pythonLine("pbs"), `import ipyparallel as ipp; rc = ipp.Client(profile="pbs")`);
});
