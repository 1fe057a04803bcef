import { test } from "node:test";
import assert from "node:assert/strict";
import { curlLine, parseLocalArgs, pythonLine, UsageError, type LocalOptions } from "../../../src/commands/local.ts";

const env = { HOME: "/home/u", cpus: 2, cwd: "/work" };
const parse = (argv: string[], e: Parameters<typeof parseLocalArgs>[1] = env) => parseLocalArgs(argv, e) as LocalOptions;

test("defaults: CPU count engines, loopback, default profile security dir, ipengine on PATH", () => {
  const o = parse([]);
  assert.equal(o.engines, 2);
  assert.equal(o.ip, "127.0.0.1");
  assert.equal(o.outDir, "/home/u/.ipython/profile_default/security");
  assert.deepEqual(o.http, { port: 0, host: "127.0.0.1", metricsPort: 0 });
  assert.equal(o.python, "ipengine");
  assert.equal(o.mpiexec, "mpiexec");
  assert.equal(o.scheme, "leastload");
  assert.equal(o.heartbeatMs, 3000);
  assert.equal(o.timeoutMs, 300_000);
  assert.equal(o.logLevel, "warn");
});

test("every flag is read", () => {
  const o = parse([
    "--engines", "8", "--ip", "10.0.0.5", "--out", "rel/dir", "--http-port", "9100", "--http-host", "0.0.0.0", "--metrics-port", "9101",
    "--python", "/v/bin/python", "--mpiexec", "/usr/bin/mpiexec", "--scheme", "lru", "--heartbeat-ms", "1000",
    "--timeout", "60", "--grace-ms", "2000", "--log-level", "debug",
  ]);
  assert.deepEqual(o, {
    engines: 8, ip: "10.0.0.5", outDir: "/work/rel/dir", http: { port: 9100, host: "0.0.0.0", metricsPort: 9101 }, python: "/v/bin/python",
    mpiexec: "/usr/bin/mpiexec", scheme: "lru", heartbeatMs: 1000, timeoutMs: 60_000, graceMs: 2000, logLevel: "debug",
  });
});

test("profile directory, profile name and IPYTHONDIR choose the security dir", () => {
  assert.equal(parse(["--profile-dir", "~/p"]).outDir, "/home/u/p/security");
  assert.equal(parse(["--profile", "pbs"]).outDir, "/home/u/.ipython/profile_pbs/security");
  assert.equal(parse(["--profile", "pbs"], { ...env, IPYTHONDIR: "/ipy" }).outDir, "/ipy/profile_pbs/security");
});

test("IPP_PYTHON is the default engine program; --python wins", () => {
  assert.equal(parse([], { ...env, IPP_PYTHON: "/env/python" }).python, "/env/python");
  assert.equal(parse(["--python", "/x/ipengine"], { ...env, IPP_PYTHON: "/env/python" }).python, "/x/ipengine");
});

test("--help", () => {
  assert.equal(parseLocalArgs(["--help"], env), "help");
  assert.equal(parseLocalArgs(["-h"], env), "help");
});

test("bad arguments are usage errors", () => {
  for (const argv of [
    ["--engines", "0"], ["--engines", "two"], ["--engines", "-3"], ["--http-port", "70000"], ["--scheme", "fifo"],
    ["--log-level", "loud"], ["--out", "a", "--profile-dir", "b"], ["--bogus"], ["positional"], ["--engines"], ["--ip", ""],
  ]) {
    assert.throws(() => parseLocalArgs(argv, env), UsageError, argv.join(" "));
  }
});

test("the Python line passes the file positionally (ipyparallel 9.2 ignores url_file=) and quotes it", () => {
  assert.equal(pythonLine("/tmp/a b/ipcontroller-client.json"), 'import ipyparallel as ipp; rc = ipp.Client("/tmp/a b/ipcontroller-client.json")');
  assert.equal(pythonLine('/x/"q"/f.json'), 'import ipyparallel as ipp; rc = ipp.Client("/x/\\"q\\"/f.json")');
});

test("the curl line reads the token from its file (the token itself is never printed) and survives quotes in the path", () => {
  assert.equal(curlLine("/home/u/.ipython/profile_default/security/ipcontroller-api-token", "http://127.0.0.1:9100"),
    `curl -H "Authorization: Bearer $(cat '/home/u/.ipython/profile_default/security/ipcontroller-api-token')" http://127.0.0.1:9100/api/v1/engines`);
  assert.equal(curlLine("/tmp/it's/t", "http://h:1"), `curl -H "Authorization: Bearer $(cat '/tmp/it'\\''s/t')" http://h:1/api/v1/engines`);
});
