import { test } from "node:test";
import assert from "node:assert/strict";
import { channelPorts, newKey, splitMetricsArgs, splitOwnArgs } from "../../../src/commands/controller.ts";
import { ControllerArgsError, assignPorts } from "../../../src/controller/ipcontroller-args.ts";

test("newKey: jupyter_client's new_id() shape (8 and 24 hex digits), random", () => {
  const a = newKey();
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{24}$/);
  assert.notEqual(newKey(), a);
});

test("channelPorts: ipcontroller's pool assignment mapped onto the controller's channels", () => {
  const a = assignPorts({ common: Array.from({ length: 16 }, (_, i) => 100 + i), engine: [], client: [] });
  const { ports, leaves } = channelPorts(a);
  assert.deepEqual(ports, {
    registration: 100, engine_control: 101, engine_mux: 102, engine_task: 103, engine_iopub: 104, hb_ping: 105, hb_pong: 106,
    engine_broadcast: 107, control: 109, mux: 110, task: 111, iopub: 112, notification: 113, broadcast: 114,
  });
  assert.deepEqual(leaves, [107, 108]);
  assert.deepEqual(channelPorts(assignPorts({ common: [], engine: [], client: [] })).ports, {});
});

test("splitMetricsArgs: takes --metrics-port/--metrics-host (= or separate value) out, leaves the rest and anything after --", () => {
  assert.deepEqual(splitMetricsArgs(["--ip=0.0.0.0", "--metrics-port=8081", "--http-port=8080", "--metrics-host", "0.0.0.0", "--", "--metrics-port=1"]), {
    rest: ["--ip=0.0.0.0", "--http-port=8080", "--", "--metrics-port=1"], metrics: { port: 8081, host: "0.0.0.0" },
  });
  assert.deepEqual(splitMetricsArgs(["--metrics-port", "0"]), { rest: [], metrics: { port: 0 } });
  assert.deepEqual(splitMetricsArgs(["--http-port=1"]), { rest: ["--http-port=1"], metrics: {} });
  for (const [argv, code] of [
    [["--metrics-port=65536"], "IPP_ARGS_BAD_VALUE"], [["--metrics-port=-1"], "IPP_ARGS_BAD_VALUE"], [["--metrics-port=8O"], "IPP_ARGS_BAD_VALUE"],
    [["--metrics-port"], "IPP_ARGS_MISSING_VALUE"], [["--metrics-port", "--ip=x"], "IPP_ARGS_MISSING_VALUE"], [["--metrics-host="], "IPP_ARGS_BAD_VALUE"],
  ] as Array<[string[], string]>) {
    assert.throws(() => splitMetricsArgs(argv), (e: unknown) => e instanceof ControllerArgsError && e.code === code, argv.join(" "));
  }
});

test("splitOwnArgs: the API credential options, and clear errors for bad ones", () => {
  assert.deepEqual(splitOwnArgs([
    "--http-port=8080", "--api-token-file", "/etc/ipp/connection/api-token", "--api-auth=kubernetes", "--api-auth-cluster=sci/psum",
    "--api-auth-review=self", "--api-auth-ca=/etc/ipp/kube-ca/ca.crt", "--api-auth-kubeconfig=/k",
  ]), {
    rest: ["--http-port=8080"], metrics: {},
    api: { tokenFile: "/etc/ipp/connection/api-token", auth: "kubernetes", cluster: { namespace: "sci", name: "psum" }, review: "self", ca: "/etc/ipp/kube-ca/ca.crt", kubeconfig: "/k" },
  });
  assert.deepEqual(splitOwnArgs(["--api-auth=token"]).api, { auth: "token" });
  for (const [argv, code] of [
    [["--api-auth=oauth"], "IPP_ARGS_BAD_VALUE"], [["--api-auth=kubernetes"], "IPP_ARGS_MISSING_VALUE"],
    [["--api-auth=kubernetes", "--api-auth-cluster=psum"], "IPP_ARGS_BAD_VALUE"], [["--api-auth-cluster=Sci/psum"], "IPP_ARGS_BAD_VALUE"],
    [["--api-auth-review=admin"], "IPP_ARGS_BAD_VALUE"], [["--api-token-file="], "IPP_ARGS_BAD_VALUE"], [["--api-token-file"], "IPP_ARGS_MISSING_VALUE"],
  ] as Array<[string[], string]>) {
    assert.throws(() => splitOwnArgs(argv), (e: unknown) => e instanceof ControllerArgsError && e.code === code, argv.join(" "));
  }
});
