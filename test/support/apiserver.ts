/**
 * A real Kubernetes control plane for integration tests: etcd and kube-apiserver (built by
 * scripts/setup/kube.sh into ~/.cache/ipp-operator/kube/) on loopback with random free ports and temporary
 * directories, configured as envtest does (secure port on 127.0.0.1, self-signed serving cert,
 * service-account key pair, a token with system:masters, RBAC). The CRDs from crds/ are installed
 * and established before it is handed out. There is no kubelet and, unless `controllers` names
 * some, no controller: Pods never run, nothing is garbage collected, and namespaces never finish
 * deleting.
 *
 *   const api = await startApiServer();   // one per test file
 *   ... api.kubeconfigPath, api.server, api.token, api.client ...
 *   await api.stop();
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseAllDocuments } from "yaml";
import { createKubeClient, isConflict, type KubeClient } from "../../src/operator/kube/client.ts";
import { loadConnectionConfig } from "../../src/operator/kube/config.ts";
import { CACHE_DIR, REPO_ROOT } from "./paths.ts";

export const KUBE_VERSION = process.env.KUBE_VERSION ?? "v1.34.4";
export const ETCD_VERSION = process.env.ETCD_VERSION ?? "v3.6.16";

export interface ApiServer {
  kubeconfigPath: string;
  server: string;
  token: string;
  /** A client authenticated as the system:masters user. */
  client: KubeClient;
  /** The apiserver's log file (read it when a test fails). */
  logPath: string;
  /** Process ids of etcd and kube-apiserver (benchmarks read their CPU time). */
  pids: { etcd: number; apiserver: number };
  stop(): Promise<void>;
}

export interface ApiServerOptions {
  /** Install every CRD in this folder (default: the repository's crds/). */
  crdDir?: string;
  /** More kube-apiserver flags, e.g. --etcd-compaction-interval=2s. */
  extraArgs?: string[];
  /**
   * Service ClusterIP range (default 10.0.0.0/16: room for thousands of Services, as a benchmark
   * of 1,000 EngineClusters needs; a /24 fills after about 253).
   */
  serviceClusterIpRange?: string;
  /**
   * Run kube-controller-manager (the single-node cluster's build, scripts/setup/cluster.sh) with
   * only these controllers, e.g. ["clusterrole-aggregation"]. Default: none.
   */
  controllers?: string[];
}

/** A binary of the single-node cluster's multi-call build (kube-controller-manager, kubectl, ...). */
export function nodeBinary(name: "kube-controller-manager" | "kubectl"): string {
  const kubectl = execFileSync("bash", [join(REPO_ROOT, "scripts/setup/cluster.sh"), "info", "kubectl"], { encoding: "utf8" }).trim();
  const p = join(dirname(kubectl), name);
  if (!existsSync(p)) throw new Error(`${p} missing: run scripts/setup/cluster.sh build`);
  return p;
}

export function kubeBinary(name: "etcd" | "kube-apiserver" | "helm", version?: string): string {
  const v = version ?? (name === "etcd" ? ETCD_VERSION : name === "kube-apiserver" ? KUBE_VERSION : process.env.HELM_VERSION ?? "v3.22.0");
  const p = join(CACHE_DIR, "kube", `${name}-${v}`, name);
  if (!existsSync(p)) throw new Error(`${p} missing: run scripts/setup/kube.sh (builds etcd, kube-apiserver and helm from the Go module proxy)`);
  return p;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tail(path: string, lines = 30): string {
  try { return readFileSync(path, "utf8").split("\n").slice(-lines).join("\n"); } catch { return "(no log)"; }
}

async function stopProcess(p: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once("exit", () => r()));
  p.kill("SIGTERM");
  const timer = setTimeout(() => p.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

function startLogged(bin: string, args: string[], logPath: string): ChildProcess {
  const log = createWriteStream(logPath);
  const p = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  p.stdout!.pipe(log);
  p.stderr!.pipe(log);
  return p;
}

export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const etcdBin = kubeBinary("etcd");
  const apiBin = kubeBinary("kube-apiserver");
  const crdDir = opts.crdDir ?? join(REPO_ROOT, "crds");
  const crdFiles = existsSync(crdDir) ? readdirSync(crdDir).filter((f) => /\.ya?ml$/.test(f)).sort() : [];
  if (crdFiles.length === 0) throw new Error(`no CRD in ${crdDir}: generate it first (crds/ipp.dev_engineclusters.yaml)`);

  const dir = mkdtempSync(join(tmpdir(), "ipp-apiserver-"));
  const procs: ChildProcess[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(procs.slice(1).map((p) => stopProcess(p)));
    await stopProcess(procs[0]);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcdLog = join(dir, "etcd.log");
    const etcd = startLogged(etcdBin, [
      "--name=default", `--data-dir=${join(dir, "etcd")}`,
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
      "--unsafe-no-fsync=true", "--log-level=warn", "--quota-backend-bytes=4294967296",
    ], etcdLog);
    procs.push(etcd);

    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    writeFileSync(join(dir, "sa.key"), privateKey.export({ type: "pkcs8", format: "pem" }));
    writeFileSync(join(dir, "sa.pub"), publicKey.export({ type: "spki", format: "pem" }));
    const token = randomBytes(24).toString("hex");
    writeFileSync(join(dir, "tokens.csv"), `${token},admin,admin-uid,"system:masters"\n`);
    const certDir = join(dir, "certs");

    // etcd must answer before the apiserver starts, or the apiserver burns its start-up retries.
    const etcdDeadline = Date.now() + 30_000;
    for (;;) {
      if (etcd.exitCode !== null) throw new Error(`etcd exited (${etcd.exitCode}):\n${tail(etcdLog)}`);
      try { if ((await fetch(`${etcdUrl}/health`)).ok) break; } catch { /* not yet */ }
      if (Date.now() > etcdDeadline) throw new Error(`etcd not healthy after 30 s:\n${tail(etcdLog)}`);
      await sleep(100);
    }

    const server = `https://127.0.0.1:${apiPort}`;
    const logPath = join(dir, "kube-apiserver.log");
    const api = startLogged(apiBin, [
      `--etcd-servers=${etcdUrl}`, `--cert-dir=${certDir}`,
      "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", `--secure-port=${apiPort}`,
      `--service-cluster-ip-range=${opts.serviceClusterIpRange ?? "10.0.0.0/16"}`, "--allow-privileged=true",
      `--service-account-issuer=${server}`, `--service-account-key-file=${join(dir, "sa.pub")}`,
      `--service-account-signing-key-file=${join(dir, "sa.key")}`,
      `--token-auth-file=${join(dir, "tokens.csv")}`, "--authorization-mode=RBAC",
      "--disable-admission-plugins=ServiceAccount", "--enable-priority-and-fairness=false",
      "--endpoint-reconciler-type=none", "--v=1", ...(opts.extraArgs ?? []),
    ], logPath);
    procs.push(api);

    const deadline = Date.now() + 90_000;
    const certFile = join(certDir, "apiserver.crt");
    for (;;) {
      if (api.exitCode !== null) throw new Error(`kube-apiserver exited (${api.exitCode}):\n${tail(logPath)}`);
      if (existsSync(certFile)) {
        const ok = await new Promise<boolean>((resolve) => {
          const ca = readFileSync(certFile);
          import("node:https").then((https) => {
            const req = https.request(`${server}/readyz`, { ca, headers: { Authorization: `Bearer ${token}` } }, (res) => {
              res.resume();
              resolve(res.statusCode === 200);
            });
            req.on("error", () => resolve(false));
            req.setTimeout(2000, () => req.destroy());
            req.end();
          }, () => resolve(false));
        });
        if (ok) break;
      }
      if (Date.now() > deadline) throw new Error(`kube-apiserver not ready after 90 s:\n${tail(logPath)}`);
      await sleep(250);
    }

    const kubeconfigPath = join(dir, "kubeconfig");
    writeFileSync(kubeconfigPath, [
      "apiVersion: v1", "kind: Config", "current-context: test",
      "clusters:", "- name: test", "  cluster:", `    server: ${server}`,
      `    certificate-authority-data: ${readFileSync(certFile).toString("base64")}`,
      "users:", "- name: admin", "  user:", `    token: ${token}`,
      "contexts:", "- name: test", "  context:", "    cluster: test", "    user: admin", "",
    ].join("\n"));
    const client = createKubeClient(await loadConnectionConfig({ kubeconfig: kubeconfigPath }));

    if (opts.controllers && opts.controllers.length > 0) {
      // No serving port: nothing scrapes it, and serving would need its own authn set-up.
      procs.push(startLogged(nodeBinary("kube-controller-manager"), [
        `--kubeconfig=${kubeconfigPath}`, `--controllers=${opts.controllers.join(",")}`,
        "--leader-elect=false", "--secure-port=0", "--v=1",
      ], join(dir, "kube-controller-manager.log")));
    }

    for (const f of crdFiles) {
      for (const doc of parseAllDocuments(readFileSync(join(crdDir, f), "utf8"))) {
        const crd = doc.toJS() as { kind?: string; metadata: { name: string } } | null;
        if (!crd || crd.kind !== "CustomResourceDefinition") continue;
        await client.request("PATCH", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`, {
          query: { fieldManager: "ipp-operator-tests", force: true }, body: crd, contentType: "application/apply-patch+yaml",
        });
        await waitEstablished(client, crd.metadata.name);
      }
    }

    return {
      kubeconfigPath, server, token, client, logPath, pids: { etcd: etcd.pid!, apiserver: api.pid! },
      async stop() { client.close(); await stop(); },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function waitEstablished(client: KubeClient, name: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const crd = await client.request<{ status?: { conditions?: Array<{ type: string; status: string; message?: string }> } }>(
      "GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
    const conds = crd.status?.conditions ?? [];
    if (conds.some((c) => c.type === "Established" && c.status === "True")) {
      // Established is set slightly before the new resource's storage answers; probe it.
      const [group, plural] = [name.slice(name.indexOf(".") + 1), name.slice(0, name.indexOf("."))];
      const version = (crd as { spec?: { versions?: Array<{ name: string; storage?: boolean }> } }).spec?.versions?.find((v) => v.storage)?.name;
      try {
        await client.request("GET", `/apis/${group}/${version}/${plural}`);
        return;
      } catch { /* not served yet */ }
    }
    const bad = conds.find((c) => c.type === "NamesAccepted" && c.status === "False");
    if (bad) throw new Error(`CRD ${name} not accepted: ${bad.message}`);
    if (Date.now() > deadline) throw new Error(`CRD ${name} not established after 30 s: ${JSON.stringify(conds)}`);
    await sleep(100);
  }
}

/** Creates a namespace (idempotent). */
export async function createNamespace(client: KubeClient, name: string): Promise<void> {
  try {
    await client.request("POST", "/api/v1/namespaces", { body: { apiVersion: "v1", kind: "Namespace", metadata: { name } } });
  } catch (err) {
    if (!isConflict(err)) throw err;
  }
}
