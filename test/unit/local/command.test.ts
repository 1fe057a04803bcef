import { test } from "node:test";
import assert from "node:assert/strict";
import { buildEngineCommand, isIpengine, CONNECTION_INFO_ENV } from "../../../src/local/command.ts";

const info = { interface: "tcp://127.0.0.1", registration: 5000, key: "secret-key" };

test("a Python interpreter runs ipyparallel.engine as a module under Open MPI", () => {
  const c = buildEngineCommand({ engines: 8, mpiexec: "/usr/bin/mpiexec", python: "/venv/bin/python", connectionInfo: info, asRoot: true });
  assert.equal(c.file, "/usr/bin/mpiexec");
  assert.deepEqual(c.args, [
    "-n", "8", "--oversubscribe", "--allow-run-as-root", "-x", CONNECTION_INFO_ENV,
    "/venv/bin/python", "-m", "ipyparallel.engine", "--mpi", "--log-level=WARN",
  ]);
  assert.deepEqual(JSON.parse(c.env[CONNECTION_INFO_ENV]!), info);
});

test("an ipengine executable runs directly; no root flag when not root; file and extra args appended", () => {
  const c = buildEngineCommand({
    engines: 2, mpiexec: "mpiexec", python: "/opt/bin/ipengine", connectionInfo: info, asRoot: false,
    oversubscribe: false, connectionFile: "/tmp/x/ipcontroller-engine.json", logLevel: "INFO", engineArgs: ["--work-dir=/tmp"],
  });
  assert.deepEqual(c.args, [
    "-n", "2", "-x", CONNECTION_INFO_ENV, "/opt/bin/ipengine", "--mpi", "--log-level=INFO",
    "--file=/tmp/x/ipcontroller-engine.json", "--work-dir=/tmp",
  ]);
});

test("the key never appears on the command line (ps would show it)", () => {
  for (const flavor of ["openmpi", "mpich"] as const) {
    const c = buildEngineCommand({ engines: 3, mpiexec: "mpiexec", python: "ipengine", connectionInfo: info, flavor, asRoot: true });
    assert.ok(!c.args.some((a) => a.includes("secret-key")), flavor);
    assert.ok(c.env[CONNECTION_INFO_ENV]!.includes("secret-key"));
  }
});

test("MPICH gets no Open MPI flags", () => {
  const c = buildEngineCommand({ engines: 3, mpiexec: "mpiexec.hydra", python: "ipengine", connectionInfo: info, flavor: "mpich", asRoot: true });
  assert.deepEqual(c.args, ["-n", "3", "ipengine", "--mpi", "--log-level=WARN"]);
});

test("engine count must be a positive integer", () => {
  for (const engines of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => buildEngineCommand({ engines, mpiexec: "m", python: "p", connectionInfo: info }), RangeError);
  }
});

test("isIpengine looks at the file name only", () => {
  assert.equal(isIpengine("ipengine"), true);
  assert.equal(isIpengine("/a/b/ipengine3"), true);
  assert.equal(isIpengine("/ipengine/bin/python3"), false);
  assert.equal(isIpengine("python"), false);
});
