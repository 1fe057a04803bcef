import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConnectionConfig } from "../../../src/operator/kube/config.ts";

function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "ipp-kubeconfig-"));
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

const kubeconfig = (user: string, cluster = "    server: https://10.0.0.1:6443\n    certificate-authority-data: " + Buffer.from("CA").toString("base64")) => `
apiVersion: v1
kind: Config
current-context: main
clusters:
- name: other
  cluster:
    server: https://wrong
- name: c
  cluster:
${cluster}
contexts:
- name: main
  context: {cluster: c, user: u}
users:
- name: u
  user:
${user}
`;

test("kubeconfig: current context's cluster, CA data and bearer token", () => withDir(async (dir) => {
  writeFileSync(join(dir, "config"), kubeconfig("    token: abc"));
  const c = await loadConnectionConfig({ kubeconfig: join(dir, "config") });
  assert.equal(c.server, "https://10.0.0.1:6443");
  assert.equal(c.ca?.toString(), "CA");
  assert.deepEqual(await c.headers(), { Authorization: "Bearer abc" });
}));

test("kubeconfig: files relative to the kubeconfig, client certificates, token files, insecure flag", () => withDir(async (dir) => {
  writeFileSync(join(dir, "ca.pem"), "CAFILE");
  writeFileSync(join(dir, "tok"), "tok-from-file\n");
  writeFileSync(join(dir, "config"), kubeconfig(
    `    client-certificate-data: ${Buffer.from("CERT").toString("base64")}\n    client-key: key.pem\n    tokenFile: tok`,
    "    server: https://api:6443\n    certificate-authority: ca.pem\n    insecure-skip-tls-verify: true\n    tls-server-name: kubernetes",
  ));
  writeFileSync(join(dir, "key.pem"), "KEY");
  const c = await loadConnectionConfig({ kubeconfig: join(dir, "config") });
  assert.equal(c.ca?.toString(), "CAFILE");
  assert.equal(c.cert?.toString(), "CERT");
  assert.equal(c.key?.toString(), "KEY");
  assert.equal(c.insecureSkipTLSVerify, true);
  assert.equal(c.tlsServerName, "kubernetes");
  assert.deepEqual(await c.headers(), { Authorization: "Bearer tok-from-file" });
}));

test("in cluster: service host and port from the environment, token and CA from the service account", () => withDir(async (dir) => {
  mkdirSync(join(dir, "sa"));
  writeFileSync(join(dir, "sa", "token"), "sa-token");
  writeFileSync(join(dir, "sa", "ca.crt"), "SACA");
  const c = await loadConnectionConfig({ env: { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" }, serviceAccountDir: join(dir, "sa") });
  assert.equal(c.server, "https://10.96.0.1:443");
  assert.equal(c.ca?.toString(), "SACA");
  assert.deepEqual(await c.headers(), { Authorization: "Bearer sa-token" });
}));

test("an explicit kubeconfig wins over in-cluster; a context naming a missing user is an error", () => withDir(async (dir) => {
  writeFileSync(join(dir, "config"), kubeconfig("    token: explicit").replace("user: u}", "user: nobody}"));
  await assert.rejects(loadConnectionConfig({ kubeconfig: join(dir, "config"), env: { KUBERNETES_SERVICE_HOST: "x" } }), /no user named 'nobody'/);
}));
