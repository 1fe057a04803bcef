// With spec.controller.curve, the controller Deployment's args and env (resolved from the
// connection Secret as the kubelet would) give `ipp-operator controller` exactly the key pair whose
// public half the connection files promise as curve_serverkey; without curve, none of it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseControllerArgs } from "../../../../src/controller/ipcontroller-args.ts";
import { buildMpiObjects, type MpiObjects } from "../../../../src/backends/mpi/core/builders.ts";
import { CONNECTION_KEYS, PATHS } from "../../../../src/backends/mpi/core/names.ts";
import { splitMetricsArgs } from "../../../../src/commands/controller.ts";
import { cluster, MATERIAL, mpiSpec, unb64 } from "./fixtures.ts";

type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const CURVE = { curvePublicKey: "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", curveSecretKey: "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6" };

/** The container's env as the kubelet resolves it: literal values and keys of the connection Secret. */
function resolveEnv(objects: MpiObjects, container: J): Record<string, string> {
  const secret = objects.connectionSecret as J;
  const env: Record<string, string> = {};
  for (const e of (container.env ?? []) as J[]) {
    if (e.value !== undefined) { env[e.name] = e.value; continue; }
    const ref = e.valueFrom?.secretKeyRef as { name: string; key: string } | undefined;
    assert.ok(ref, `env ${e.name} has a value or a secretKeyRef`);
    assert.equal(ref.name, secret.metadata.name, `env ${e.name} reads the connection Secret`);
    assert.ok(ref.key in secret.data, `the Secret has ${ref.key}`);
    env[e.name] = unb64(secret.data[ref.key]);
  }
  return env;
}

function rendered(curve: boolean) {
  const ec = cluster(mpiSpec({}, 4, curve ? { curve: true } : {}));
  const objects = buildMpiObjects(ec, { ...MATERIAL, ...CURVE });
  const container = (objects.controllerDeployment as J).spec.template.spec.containers[0] as J;
  const env = resolveEnv(objects, container);
  const argv = (container.args as string[]).slice(1);
  assert.equal(container.args[0], "controller");
  const o = parseControllerArgs({ argv: splitMetricsArgs(argv).rest, env, home: "/home/ipp" });
  const data = (objects.connectionSecret as J).data as Record<string, string>;
  const client = JSON.parse(unb64(data[CONNECTION_KEYS.client])) as J;
  const engine = JSON.parse(unb64(data[CONNECTION_KEYS.engine])) as J;
  return { o, env, client, engine, data, argv };
}

test("curve: the controller gets --enable-curve and the Secret's key pair; both files carry its public key", () => {
  const { o, env, client, engine, data } = rendered(true);
  assert.deepEqual(Object.keys(env).sort(), ["HOME", "IPP_CURVE_PUBLICKEY", "IPP_CURVE_SECRETKEY"]);
  assert.equal(o.enableCurve, true);
  assert.equal(o.curveSecretKey, CURVE.curveSecretKey);
  assert.equal(o.curvePublicKey, CURVE.curvePublicKey);
  assert.equal(client.curve_serverkey, CURVE.curvePublicKey);
  assert.equal(engine.curve_serverkey, CURVE.curvePublicKey);
  // the HMAC key stays on (as upstream when Session.key is configured): the controller reads the
  // same key the files carry, from the Secret mounted at PATHS.connectionDir
  assert.equal(o.keyFile, `${PATHS.connectionDir}/${CONNECTION_KEYS.hmacKey}`);
  assert.equal(unb64(data[CONNECTION_KEYS.hmacKey]), client.key);
  assert.equal(engine.key, client.key);
  assert.notEqual(client.key, "");
});

test("no curve: no flag, no curve env, no key pair in the Secret, curve_serverkey null", () => {
  const { o, env, client, engine, data, argv } = rendered(false);
  assert.deepEqual(env, { HOME: "/var/run/ipp" }, "only HOME: the writable run volume");
  assert.ok(!argv.includes("--enable-curve"));
  assert.equal(o.enableCurve, false);
  assert.equal(o.curveSecretKey, undefined);
  assert.equal(client.curve_serverkey, null);
  assert.equal(engine.curve_serverkey, null);
  assert.ok(!(CONNECTION_KEYS.curveSecretKey in data) && !(CONNECTION_KEYS.curvePublicKey in data));
});
