// The operator's engine probe: it sends the cluster's API token from the connection Secret, finds
// the API through the Service only when the Service publishes it and otherwise at the controller
// pod, and turns a refusal into a reason instead of an error loop.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { apiToken, createEnginesProbe, serviceUrl } from "../../../src/operator/engines-probe.ts";
import type { KubeObject } from "../../../src/operator/kube/resources.ts";

const TOKEN = "dGVzdC10b2tlbi1vZi1hdC1sZWFzdC0zMi1ieXRlcy1sb25n";
const cluster = { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: "psum", namespace: "sci" } } as KubeObject;
const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "psum-connection", namespace: "sci" }, data: { "api-token": Buffer.from(TOKEN).toString("base64") } } as unknown as KubeObject;
const deployment = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "psum-controller" }, status: { availableReplicas: 1 } } as unknown as KubeObject;
const service = (ports: Array<{ name: string; port: number }>) => ({ apiVersion: "v1", kind: "Service", metadata: { name: "psum-controller", namespace: "sci" }, spec: { ports } }) as unknown as KubeObject;
const pod = (phase: string, podIP: string, component = "controller") => ({
  apiVersion: "v1", kind: "Pod", metadata: { name: "psum-controller-x", labels: { "app.kubernetes.io/component": component } }, status: { phase, podIP },
}) as unknown as KubeObject;

test("serviceUrl: the Service's http port when published, else a running controller pod's IP, else nothing", () => {
  assert.equal(serviceUrl(cluster, [service([{ name: "metrics", port: 8081 }, { name: "http", port: 8080 }])]), "http://psum-controller.sci.svc:8080");
  assert.equal(serviceUrl(cluster, [service([{ name: "metrics", port: 8081 }]), pod("Running", "10.1.2.3")]), "http://10.1.2.3:8080");
  assert.equal(serviceUrl(cluster, [pod("Running", "fd00::5")]), "http://[fd00::5]:8080");
  assert.equal(serviceUrl(cluster, [service([{ name: "metrics", port: 8081 }]), pod("Pending", "10.1.2.3")]), undefined);
  assert.equal(serviceUrl(cluster, [pod("Running", "10.1.2.4", "worker")]), undefined);
});

test("apiToken: from the cluster's connection Secret only", () => {
  assert.equal(apiToken(cluster, [secret]), TOKEN);
  assert.equal(apiToken(cluster, [{ ...secret, metadata: { name: "other-connection" } } as KubeObject]), undefined);
});

test("the probe sends the token; a controller that refuses it is reported, not thrown", async () => {
  const seen: Array<string | undefined> = [];
  const server = createServer((req, res) => {
    seen.push(req.headers.authorization);
    if (req.headers.authorization !== `Bearer ${TOKEN}`) { res.writeHead(401, { "content-type": "application/json" }); res.end('{"error":"unauthorized"}'); return; }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ engines: [{ alive: true }, { alive: false }] }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const probe = createEnginesProbe({ controllerUrl: () => url });
    assert.deepEqual(await probe(cluster, [deployment, secret]), { registered: 2, alive: 1 });
    assert.deepEqual(seen, [`Bearer ${TOKEN}`]);
    const wrong = { ...secret, data: { "api-token": Buffer.from("x".repeat(43)).toString("base64") } } as unknown as KubeObject;
    assert.deepEqual(await probe(cluster, [deployment, wrong]), { error: "controller unreachable: HTTP 401" });
    assert.deepEqual(await probe(cluster, [deployment]), { error: "the connection Secret has no api-token" });
  } finally {
    await new Promise((r) => server.close(r));
  }
});
