import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../../support/paths.ts";
import { writeConnectionFiles, engineConnectionEnv, connectionFileNames, type ClientConnectionInfo, type EngineConnectionInfo } from "../../../src/controller/connection-files.ts";
import { validateConfig, ConfigError } from "../../../src/controller/controller.ts";

const common = { key: "k", curve_serverkey: null, location: "host", pack: "json" as const, unpack: "json" as const, signature_scheme: "hmac-sha256" };
const client: ClientConnectionInfo = { ssh: "", interface: "tcp://127.0.0.1", registration: 1, control: 2, mux: 3, task: 4, task_scheme: "leastload", iopub: 5, notification: 6, broadcast: 7, ...common };
const engine: EngineConnectionInfo = { ssh: "", interface: "tcp://127.0.0.1", registration: 1, control: 12, mux: 13, task: 14, iopub: 15, hb_ping: 16, hb_pong: 17, broadcast: [18, 19], ...common };

for (const major of [9, 8]) {
  test(`connection files have ipyparallel ${major}'s keys, order, layout and mode 0600`, async () => {
    const fx = JSON.parse(readFileSync(join(REPO_ROOT, "test/fixtures", `ipp${major}-frames.json`), "utf8")) as { client_json: object; engine_json: object; client_json_mode: string };
    assert.deepEqual(Object.keys(client), Object.keys(fx.client_json));
    assert.deepEqual(Object.keys(engine), Object.keys(fx.engine_json));
    const dir = mkdtempSync(join(tmpdir(), "ipp-cf-"));
    try {
      const paths = await writeConnectionFiles(dir, client, engine);
      const text = readFileSync(paths.client, "utf8");
      assert.equal(text, JSON.stringify(client, null, 2));
      assert.deepEqual(JSON.parse(readFileSync(paths.engine, "utf8")), engine);
      assert.equal((statSync(paths.client).mode & 0o777).toString(8), fx.client_json_mode.replace("0o", ""));
      assert.equal(statSync(paths.engine).mode & 0o777, 0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("IPP_CONNECTION_INFO is the engine file's JSON; cluster ids change file names", () => {
  assert.deepEqual(JSON.parse(engineConnectionEnv(engine)), engine);
  assert.deepEqual(connectionFileNames("abc"), { client: "ipcontroller-abc-client.json", engine: "ipcontroller-abc-engine.json" });
});

test("a missing or invalid key is a clear startup error", () => {
  const base = { ip: "127.0.0.1", key: "k", heartbeatPeriodMs: 3000, taskScheme: "leastload" as const };
  assert.doesNotThrow(() => validateConfig(base));
  assert.throws(() => validateConfig({ ...base, key: "" }), (e: unknown) => e instanceof ConfigError && /empty key/.test(e.message));
  assert.throws(() => validateConfig({ ...base, key: undefined as unknown as string }), ConfigError);
  assert.throws(() => validateConfig({ ...base, taskScheme: "pure" as never }), ConfigError);
  assert.throws(() => validateConfig({ ...base, heartbeatPeriodMs: 0 }), ConfigError);
});
