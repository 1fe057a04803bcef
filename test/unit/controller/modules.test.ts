import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import { REPO_ROOT } from "../../support/paths.ts";
import { Session } from "../../../src/protocol/index.ts";
import { createControllerMetrics } from "../../../src/metrics/controller.ts";
import { createLogger } from "../../../src/util/log.ts";
import { BadMessages } from "../../../src/controller/bad-messages.ts";
import { connectionInfo } from "../../../src/controller/connection-files.ts";
import type { BoundPorts } from "../../../src/controller/sockets.ts";

const ports: BoundPorts = {
  registration: 1, notification: 2, mux: 3, engine_mux: 4, control: 5, engine_control: 6, task: 7, engine_task: 8,
  broadcast: 9, iopub: 10, engine_iopub: 11, hb_ping: 12, hb_pong: 13, leaves: [14, 15],
};

test("connectionInfo: the files' keys in ipyparallel's order; engine ssh from engineSshServer, else sshServer", () => {
  const fx = JSON.parse(readFileSync(join(REPO_ROOT, "test/fixtures", "ipp9-frames.json"), "utf8")) as { client_json: object; engine_json: object };
  const base = { ip: "127.0.0.1", key: "k", taskScheme: "leastload" as const };
  const both = connectionInfo({ ...base, sshServer: "gw" }, "host", ports);
  assert.deepEqual(Object.keys(both.client), Object.keys(fx.client_json));
  assert.deepEqual(Object.keys(both.engine), Object.keys(fx.engine_json));
  assert.equal(both.client.ssh, "gw");
  assert.equal(both.engine.ssh, "gw");
  assert.deepEqual(both.engine.broadcast, [14, 15]);
  const apart = connectionInfo({ ...base, sshServer: "gw", engineSshServer: "" }, "host", ports);
  assert.equal(apart.client.ssh, "gw");
  assert.equal(apart.engine.ssh, "");
  assert.equal(connectionInfo(base, "host", ports).engine.ssh, "");
});

test("BadMessages: every drop counted by reason; the log line rate-limited per reason", () => {
  const lines: string[] = [];
  const metrics = createControllerMetrics(new Registry());
  const log = createLogger({ level: "warn", sink: (l) => lines.push(l) });
  const session = new Session({ key: "k", username: "t" });
  const bad = new BadMessages({ metrics, log, session, maxMessageBytes: 100, logIntervalMs: 60_000 });
  bad.drop("mux", "bad_routing", "x");
  bad.drop("task", "bad_routing", "y");
  assert.equal(bad.check("task", [Buffer.alloc(10)], 101), null);
  const frames = session.build("apply_request", {}, {});
  assert.equal(bad.check("task", frames, 50)?.ids.length, 0);
  const forged = new Session({ key: "other", username: "t" }).build("apply_request", {}, {});
  assert.equal(bad.check("task", forged, 50), null);
  assert.deepEqual(bad.snapshot(), { bad_routing: 2, too_large: 1, bad_signature: 1 });
  assert.equal(lines.length, 3, "one line per reason within the interval");
});
