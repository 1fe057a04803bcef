/**
 * The HTTP server and JSON API against our controller (in-process) and real MPI engines, once with
 * ipyparallel 9.2 engines and once with 8.8 engines (arrays travel in apply_request buffers, which
 * both must accept). A real Python client of the same version checks what the API scattered.
 * Every API route is called without a credential, with wrong ones and with the cluster's token:
 * only the last runs anything, and the token never reaches a log line.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Registry } from "prom-client";
import { startController, type ControllerHandle } from "../../../src/controller/controller.ts";
import { writeConnectionFiles } from "../../../src/controller/connection-files.ts";
import { startHttpServer, type HttpServerHandle } from "../../../src/controller/http/server.ts";
import { launchEngines, type EngineGroup } from "../../../src/local/engines.ts";
import { newApiToken, tokenAuth } from "../../../src/controller/http/auth.ts";
import { createLogger, silentLogger } from "../../../src/util/log.ts";
import { python, type IppMajor } from "../../support/paths.ts";

const execFileP = promisify(execFile);
const ENGINES = 3;

interface Rig {
  controller: ControllerHandle;
  group: EngineGroup;
  http: HttpServerHandle;
  base: string;
  clientFile: string;
  dir: string;
  token: string;
  registry: Registry;
  /** every line the HTTP server logged (debug and up) */
  logs: string[];
}

async function startRig(major: IppMajor): Promise<Rig> {
  const registry = new Registry();
  const controller = await startController(
    { ip: "127.0.0.1", key: randomUUID(), heartbeatPeriodMs: 1000, taskScheme: "leastload" },
    { logger: silentLogger, registry },
  );
  const dir = mkdtempSync(join(tmpdir(), `ipp-http-${major}-`));
  const files = await writeConnectionFiles(dir, controller.clientConnection, controller.engineConnection);
  const token = newApiToken();
  const logs: string[] = [];
  const logger = createLogger({ level: "debug", sink: (line: string) => { logs.push(line); } });
  const http = await startHttpServer({
    controller, registry, port: 0, logger, maxBodyBytes: 16 * 1024 * 1024, maxJsonBytes: 1024 * 1024,
    auth: tokenAuth(token), refusalLogIntervalMs: 3_600_000,
  });
  const group = launchEngines({
    engines: ENGINES, mpiexec: "mpiexec", python: python(major), connectionInfo: controller.engineConnection, asRoot: process.getuid?.() === 0,
  }, { logger: silentLogger });
  const deadline = Date.now() + 120_000;
  while (controller.engines().filter((e) => e.alive).length < ENGINES) {
    if (Date.now() > deadline) throw new Error(`engines did not register; output:\n${group.outputTail()}`);
    if (group.pid < 0) throw new Error("mpiexec did not start");
    await new Promise((r) => setTimeout(r, 250));
  }
  return { controller, group, http, base: `http://127.0.0.1:${http.port}`, clientFile: files.client, dir, token, registry, logs };
}

async function stopRig(r: Rig | undefined): Promise<void> {
  if (!r) return;
  await r.group.stop({ graceMs: 3000 });
  await r.http.close();
  await r.controller.stop();
  rmSync(r.dir, { recursive: true, force: true });
}

let currentToken = "";

/** A request; with the rig's token unless `headers` carry an authorization (or `authorization: ""` for none). */
async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const h: Record<string, string> = { authorization: `Bearer ${currentToken}`, ...headers };
  if (h.authorization === "") delete h.authorization;
  const init: RequestInit = { method, headers: h };
  if (body !== undefined) {
    if (Buffer.isBuffer(body) || typeof body === "string") init.body = body as RequestInit["body"];
    else {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)["content-type"] ??= "application/json";
    }
  }
  const res = await fetch(base + path, init);
  const buf = Buffer.from(await res.arrayBuffer());
  const json = (res.headers.get("content-type") ?? "").startsWith("application/json") ? JSON.parse(buf.toString()) : undefined;
  return { status: res.status, headers: res.headers, buf, json };
}

/** Send bytes as they are and read the whole answer (the server closes the connection). */
function rawRequest(base: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => sock.write(bytes));
    let got = "";
    sock.on("data", (d: Buffer) => { got += d.toString(); });
    sock.on("end", () => resolve(got));
    sock.on("error", reject);
  });
}

const f64 = (a: number[]) => Buffer.from(new Float64Array(a).buffer);
const i64 = (a: bigint[]) => Buffer.from(new BigInt64Array(a).buffer);

async function pyView(major: IppMajor, clientFile: string, expr: string): Promise<string> {
  const code = `import ipyparallel as ipp, sys\nrc = ipp.Client(sys.argv[1])\nview = rc[:]\nprint(${expr})\nrc.close()`;
  const { stdout } = await execFileP(python(major), ["-c", code, clientFile], { timeout: 60_000 });
  return stdout.trim();
}

for (const major of [9, 8] as const) {
  describe(`JSON API with ipyparallel ${major} engines`, { timeout: 300_000 }, () => {
    let rig: Rig | undefined;
    const r = () => rig as Rig;
    before(async () => { rig = await startRig(major); currentToken = rig.token; });
    after(async () => { await stopRig(rig); });

    test("every API route refuses a request without the cluster's token: 401 JSON, nothing runs, counted, logged once, never the token", async () => {
      const marker = join(r().dir, "ran");
      const code = `open(${JSON.stringify(marker)}, "w").write("x")`;
      const routes: [string, string, unknown, Record<string, string>][] = [
        ["GET", "/api/v1/engines", undefined, {}],
        ["POST", "/api/v1/execute", { code }, {}],
        ["POST", "/api/v1/execute", { code, targets: [0] }, {}],
        ["PUT", "/api/v1/arrays/unauth", { data: [1, 2, 3] }, {}],
        ["PUT", "/api/v1/arrays/unauth?dtype=float64", f64([1, 2, 3]), { "content-type": "application/octet-stream" }],
        ["GET", "/api/v1/arrays/a", undefined, {}],
        ["GET", "/api/v1/arrays/a", undefined, { accept: "application/octet-stream" }],
        ["DELETE", "/api/v1/arrays/a", undefined, {}],
        ["GET", "/api/v1/no-such-route", undefined, {}],
        ["GET", "/api", undefined, {}],
      ];
      const wrongSameLength = r().token.slice(0, -1) + (r().token.endsWith("A") ? "B" : "A");
      const credentials: [string, Record<string, string>][] = [
        ["missing", { authorization: "" }],
        ["malformed", { authorization: r().token }],
        ["malformed", { authorization: `Basic ${Buffer.from(`u:${r().token}`).toString("base64")}` }],
        ["malformed", { authorization: "Bearer" }],
        ["invalid", { authorization: `Bearer ${wrongSameLength}` }],
        ["invalid", { authorization: `Bearer ${newApiToken()}` }],
        ["invalid", { authorization: `Bearer ${r().token}x` }],
      ];
      const before = r().logs.length;
      for (const [method, path, body, headers] of routes) {
        for (const [why, cred] of credentials) {
          const res = await call(r().base, method, path, body, { ...headers, ...cred });
          assert.equal(res.status, 401, `${method} ${path} (${why}): ${res.buf.toString().slice(0, 200)}`);
          assert.equal(res.json?.error, "unauthorized", `${method} ${path} (${why})`);
          assert.equal(typeof res.json?.message, "string");
          assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer /);
        }
      }
      // a 64 MiB upload without a credential is not read: the answer is a 401 or, when the server
      // closed the connection before the client finished sending, a reset; either way nothing lands
      for (const [why, cred] of credentials) {
        const res = await call(r().base, "PUT", "/api/v1/arrays/unauth", Buffer.alloc(64 * 1024 * 1024), { "content-type": "application/octet-stream", ...cred })
          .catch((err: unknown) => ({ status: "reset", json: undefined, err }));
        assert.ok(res.status === 401 || res.status === "reset", `big upload (${why}): ${String(res.status)}`);
        if (res.status === 401) assert.equal(res.json?.error, "unauthorized");
      }
      // nothing ran: no file, no array on any engine
      assert.equal(existsSync(marker), false, "no refused request executed code");
      assert.equal((await call(r().base, "GET", "/api/v1/arrays/unauth")).json?.error, "array_not_found");
      // counted by reason
      const metric = await r().registry.getSingleMetricAsString("ipp_controller_api_auth_failures_total");
      const count = (reason: string) => Number(new RegExp(`reason="${reason}"} (\\d+)`).exec(metric)?.[1] ?? 0);
      const tries = routes.length + 1; // and the big upload
      assert.equal(count("missing"), tries);
      assert.equal(count("malformed"), 3 * tries);
      assert.equal(count("invalid"), 3 * tries);
      // logged once in the interval (an hour here), without any token
      const lines = r().logs.slice(before);
      assert.equal(lines.filter((l) => l.includes("API requests refused")).length, 1, lines.join("\n"));
      // /healthz and /readyz stay open
      assert.equal((await call(r().base, "GET", "/healthz", undefined, { authorization: "" })).status, 200);
      assert.equal((await call(r().base, "GET", "/readyz", undefined, { authorization: "" })).status, 200);
      // with the token the same request runs
      const ok = await call(r().base, "POST", "/api/v1/execute", { code, targets: [0] });
      assert.equal(ok.status, 200);
      assert.equal(existsSync(marker), true);
      for (const secret of [r().token, wrongSameLength]) {
        assert.ok(!r().logs.some((l) => l.includes(secret)), "no log line carries a token");
      }
    });

    test("health, readiness and engine list", async () => {
      assert.equal((await call(r().base, "GET", "/healthz")).status, 200);
      const ready = await call(r().base, "GET", `/readyz?engines=${ENGINES}`);
      assert.equal(ready.status, 200);
      assert.deepEqual(ready.json, { ready: true, controller: true, engines: ENGINES, want: ENGINES });
      const notReady = await call(r().base, "GET", "/readyz?engines=99");
      assert.equal(notReady.status, 503);
      assert.equal(notReady.json.ready, false);
      const list = await call(r().base, "GET", "/api/v1/engines");
      assert.equal(list.status, 200);
      assert.deepEqual(list.json.engines.map((e: { id: number }) => e.id).sort(), [0, 1, 2]);
      // what an engine state file holds (the operator keeps a copy for a replaced controller pod)
      assert.equal(list.json.nextId, 3);
      for (const e of list.json.engines) {
        assert.equal(e.alive, true);
        assert.match(e.uuid, /^[0-9a-f-]+$/);
        assert.ok(!Number.isNaN(Date.parse(e.registeredAt)));
      }
    });

    test("execute on all engines and on chosen targets: stdout, stderr, result, errors", async () => {
      const all = await call(r().base, "POST", "/api/v1/execute", {
        code: "import sys\nfrom mpi4py import MPI\nprint('rank', MPI.COMM_WORLD.Get_rank())\nprint('warn', file=sys.stderr)\nMPI.COMM_WORLD.Get_size() * 10",
      });
      assert.equal(all.status, 200);
      assert.deepEqual(all.json.results.map((x: { engine: number }) => x.engine), [0, 1, 2]);
      for (const x of all.json.results) {
        assert.equal(x.status, "ok");
        assert.equal(x.stdout, `rank ${x.engine}\n`);
        assert.equal(x.stderr, "warn\n");
        assert.equal(x.result, "30");
      }
      const one = await call(r().base, "POST", "/api/v1/execute", { code: "1/0", targets: [2], timeoutMs: 30_000 });
      assert.equal(one.status, 200);
      assert.equal(one.json.results.length, 1);
      const [e] = one.json.results;
      assert.equal(e.engine, 2);
      assert.equal(e.status, "error");
      assert.equal(e.error.ename, "ZeroDivisionError");
      assert.equal(e.error.evalue, "division by zero");
      assert.ok(e.error.traceback.length > 0);
    });

    test("scatter/gather float64 and int64 as JSON; a Python client sees the arrays", async () => {
      const data = Array.from({ length: 32 }, (_, i) => i);
      const put = await call(r().base, "PUT", "/api/v1/arrays/a", { data });
      assert.equal(put.status, 200);
      assert.deepEqual(put.json.parts, [
        { engine: 0, offset: 0, length: 11 }, { engine: 1, offset: 11, length: 11 }, { engine: 2, offset: 22, length: 10 },
      ]);
      const got = await call(r().base, "GET", "/api/v1/arrays/a");
      assert.equal(got.status, 200);
      assert.equal(got.json.dtype, "float64");
      assert.deepEqual(got.json.data, data);
      const seen = await pyView(major, r().clientFile, `[(str(x.dtype), x.tolist()) for x in view['a']]`);
      const floats = (xs: number[]) => `('float64', [${xs.map((v) => v.toFixed(1)).join(", ")}])`;
      assert.equal(seen, `[${[data.slice(0, 11), data.slice(11, 22), data.slice(22)].map(floats).join(", ")}]`);

      const ints = [-(2 ** 53) + 1, -1, 0, 1, 2 ** 53 - 1];
      assert.equal((await call(r().base, "PUT", "/api/v1/arrays/b", { data: ints, dtype: "int64", targets: [2, 0] })).status, 200);
      const gb = await call(r().base, "GET", "/api/v1/arrays/b?targets=2,0");
      assert.equal(gb.json.dtype, "int64");
      assert.deepEqual(gb.json.data, ints);
      assert.deepEqual(gb.json.parts, [{ engine: 2, offset: 0, length: 3 }, { engine: 0, offset: 3, length: 2 }]);
      const seenB = await pyView(major, r().clientFile, `[str(x.dtype) for x in view.pull('b', targets=[2, 0], block=True)]`);
      assert.equal(seenB, "['int64', 'int64']");
    });

    test("scatter/gather raw little-endian bytes, identical both ways", async () => {
      const n = 1_000_003;
      const floats = new Float64Array(n);
      for (let k = 0; k < n; k++) floats[k] = Math.sin(k) * 1e6;
      const raw = Buffer.from(floats.buffer);
      const put = await call(r().base, "PUT", "/api/v1/arrays/big?dtype=float64", raw, { "content-type": "application/octet-stream" });
      assert.equal(put.status, 200, put.buf.toString());
      assert.equal(put.json.length, n);
      const got = await call(r().base, "GET", "/api/v1/arrays/big", undefined, { accept: "application/octet-stream" });
      assert.equal(got.status, 200);
      assert.equal(got.headers.get("x-ipp-dtype"), "float64");
      assert.equal(got.headers.get("x-ipp-length"), String(n));
      assert.ok(got.buf.equals(raw), "float64 bytes come back identical");

      const ints = i64([-(2n ** 63n), -1n, 0n, 2n ** 63n - 1n, 42n]);
      assert.equal((await call(r().base, "PUT", "/api/v1/arrays/c?dtype=int64", ints, { "content-type": "application/octet-stream" })).status, 200);
      const gi = await call(r().base, "GET", "/api/v1/arrays/c", undefined, { accept: "application/octet-stream" });
      assert.equal(gi.headers.get("x-ipp-dtype"), "int64");
      assert.ok(gi.buf.equals(ints), "int64 bytes come back identical, including values beyond 2^53");
      const gj = await call(r().base, "GET", "/api/v1/arrays/c");
      assert.deepEqual(gj.json.data, ["-9223372036854775808", -1, 0, "9223372036854775807", 42]);
      const seen = await pyView(major, r().clientFile, `[x.tolist() for x in view['c']]`);
      assert.equal(seen, "[[-9223372036854775808, -1], [0, 9223372036854775807], [42]]");
      // an empty array is scattered as empty parts
      assert.equal((await call(r().base, "PUT", "/api/v1/arrays/e", f64([]), { "content-type": "application/octet-stream" })).status, 200);
      assert.deepEqual((await call(r().base, "GET", "/api/v1/arrays/e")).json.data, []);
    });

    test("bad requests get 4xx with {error, message}", async () => {
      const cases: [string, string, unknown, Record<string, string>, number, string][] = [
        ["POST", "/api/v1/execute", "{not json", { "content-type": "application/json" }, 400, "invalid_json"],
        ["POST", "/api/v1/execute", { targets: "all" }, {}, 400, "validation_failed"],
        ["POST", "/api/v1/execute", { code: "1", extra: 1 }, {}, 400, "validation_failed"],
        ["POST", "/api/v1/execute", { code: "1", targets: [] }, {}, 400, "validation_failed"],
        ["POST", "/api/v1/execute", { code: "1", targets: [0, 0] }, {}, 400, "validation_failed"],
        ["POST", "/api/v1/execute", { code: "1", timeoutMs: -5 }, {}, 400, "validation_failed"],
        ["POST", "/api/v1/execute", { code: "1", targets: [99] }, {}, 404, "unknown_engine"],
        ["POST", "/api/v1/execute", "code=1", { "content-type": "text/plain" }, 415, "unsupported_media_type"],
        ["GET", "/api/v1/execute", undefined, {}, 405, "method_not_allowed"],
        ["PUT", "/api/v1/arrays/import", { data: [1] }, {}, 400, "invalid_name"],
        ["PUT", "/api/v1/arrays/a%20b", { data: [1] }, {}, 400, "invalid_name"],
        ["PUT", "/api/v1/arrays/x", { data: ["1"] }, {}, 400, "validation_failed"],
        ["PUT", "/api/v1/arrays/x", { data: [1], dtype: "float32" }, {}, 400, "validation_failed"],
        ["PUT", "/api/v1/arrays/x", { data: [1.5], dtype: "int64" }, {}, 400, "validation_failed"],
        ["PUT", "/api/v1/arrays/x?dtype=int8", Buffer.alloc(8), { "content-type": "application/octet-stream" }, 400, "validation_failed"],
        ["PUT", "/api/v1/arrays/x?targets=0,x", Buffer.alloc(8), { "content-type": "application/octet-stream" }, 400, "validation_failed"],
        ["PUT", "/api/v1/arrays/x", Buffer.alloc(12), { "content-type": "application/octet-stream" }, 400, "validation_failed"],
        ["PUT", "/api/v1/arrays/x", Buffer.alloc(8), { "content-type": "text/csv" }, 415, "unsupported_media_type"],
        ["PUT", "/api/v1/arrays/x", Buffer.alloc(17 * 1024 * 1024), { "content-type": "application/octet-stream" }, 413, "body_too_large"],
        ["PUT", "/api/v1/arrays/x", { data: new Array(600_000).fill(1) }, {}, 413, "body_too_large"],
        ["PUT", "/api/v1/arrays/x?targets=7", Buffer.alloc(8), { "content-type": "application/octet-stream" }, 404, "unknown_engine"],
        ["GET", "/api/v1/arrays/never_defined", undefined, {}, 404, "array_not_found"],
        ["GET", "/api/v1/arrays/x?dtype=int64", undefined, {}, 400, "validation_failed"],
        ["GET", "/api/v1/arrays/a", undefined, { accept: "text/html" }, 406, "not_acceptable"],
        ["DELETE", "/api/v1/arrays/a", undefined, {}, 405, "method_not_allowed"],
        ["GET", "/api/v2/nothing", undefined, {}, 404, "not_found"],
        ["GET", "/api/v1/arrays/%E0%A4%A", undefined, {}, 400, "invalid_name"],
        ["GET", "/readyz?engines=lots", undefined, {}, 400, "validation_failed"],
      ];
      for (const [method, path, body, headers, status, code] of cases) {
        const res = await call(r().base, method, path, body, headers);
        assert.equal(res.status, status, `${method} ${path}: ${res.buf.toString().slice(0, 300)}`);
        assert.equal(res.json?.error, code, `${method} ${path}`);
        assert.equal(typeof res.json?.message, "string");
      }
      // what node's HTTP parser refuses gets a JSON error too
      for (const [raw, status, code] of [
        ["GARBAGE\r\n\r\n", 400, "bad_request"],
        [`GET /api/v1/engines HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`, 431, "headers_too_large"],
      ] as const) {
        const answer = await rawRequest(r().base, raw);
        assert.match(answer, new RegExp(`^HTTP/1.1 ${status} `), answer);
        assert.equal(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).error, code);
      }
      // a string that is not an array: a clear 422
      await call(r().base, "POST", "/api/v1/execute", { code: "s = 'text'" });
      const s = await call(r().base, "GET", "/api/v1/arrays/s");
      assert.equal(s.status, 422);
      assert.equal(s.json.error, "unsupported_dtype");
      // the server is still healthy after all of that
      assert.equal((await call(r().base, "GET", "/healthz")).status, 200);
    });
  });
}
