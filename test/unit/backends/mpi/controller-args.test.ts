// The controller Deployment's command line must mean, to `ipp-operator controller`, exactly the
// ports and key the connection Secret promises to clients and engines.
import { test } from "node:test";
import assert from "node:assert/strict";
import { assignPorts, parseControllerArgs } from "../../../../src/controller/ipcontroller-args.ts";
import { connectionFiles, controllerArgs, DEFAULT_BUILD_CONFIG } from "../../../../src/backends/mpi/core/builders.ts";
import { clusterRef } from "../../../../src/backends/mpi/core/names.ts";
import { splitMetricsArgs } from "../../../../src/commands/controller.ts";
import { cluster, MATERIAL, mpiSpec } from "./fixtures.ts";

for (const controller of [{}, { curve: true, heartbeatPeriodMs: 1200, taskScheme: "twobin" }]) {
  test(`controller args give the Secret's ports and key (${JSON.stringify(controller)})`, () => {
    const ec = cluster(mpiSpec({}, 8, controller));
    const ref = clusterRef(ec);
    const argv = controllerArgs(ref, ec, DEFAULT_BUILD_CONFIG).slice(1); // drop the subcommand
    const env = ec.spec.controller.curve ? { IPP_CURVE_SECRETKEY: "S".repeat(40), IPP_CURVE_PUBLICKEY: "P".repeat(40) } : {};
    const { rest, metrics } = splitMetricsArgs(argv);
    assert.deepEqual(metrics, { port: 8081, host: "0.0.0.0" }, "/metrics, /healthz, /readyz on the Service's metrics port");
    const o = parseControllerArgs({ argv: rest, env, home: "/home/ipp" });
    assert.equal(o.ip, "0.0.0.0");
    assert.equal(o.location, "psum-controller.science.svc.cluster.local");
    assert.equal(o.keyFile, "/etc/ipp/connection/hmac-key");
    assert.equal(o.httpPort, 8080);
    assert.equal(o.connectionDir, "/var/run/ipp");
    assert.equal(o.enableCurve, ec.spec.controller.curve);
    const ports = assignPorts(o.ports);
    const files = connectionFiles(ref, ec, MATERIAL, DEFAULT_BUILD_CONFIG);
    const e = files.engine as Record<string, unknown>;
    const c = files.client as Record<string, unknown>;
    assert.equal(ports.registration, e.registration);
    assert.deepEqual(
      [ports.engine.control, ports.engine.mux, ports.engine.task, ports.engine.iopub, ports.engine.hb_ping, ports.engine.hb_pong, ports.engine.broadcast],
      [e.control, e.mux, e.task, e.iopub, e.hb_ping, e.hb_pong, e.broadcast]);
    assert.deepEqual(
      [ports.client.control, ports.client.mux, ports.client.task, ports.client.iopub, ports.client.notification, ports.client.broadcast],
      [c.control, c.mux, c.task, c.iopub, c.notification, c.broadcast]);
  });
}
