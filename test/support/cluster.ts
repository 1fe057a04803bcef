/**
 * A real single-node Kubernetes for end-to-end tests: `scripts/setup/cluster.sh up` (etcd,
 * kube-apiserver, kube-controller-manager, kube-scheduler, containerd + kubelet, kube-proxy in
 * iptables mode, a bridge CNI and CoreDNS, with the engine, controller and pause images imported)
 * and `down` when the test is done, so nothing leaks into other tests. Needs root. A cluster that
 * does not come up is an error with the failing part's log, never a skip.
 *
 *   const cluster = await startCluster();          // one per test file (one cluster per machine)
 *   cluster.kubectl("get", "pods", "-A");           // throws with stderr on a non-zero exit
 *   cluster.helm("install", ...);
 *   await cluster.stop();
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createKubeClient, type KubeClient } from "../../src/operator/kube/client.ts";
import { loadConnectionConfig } from "../../src/operator/kube/config.ts";
import { REPO_ROOT } from "./paths.ts";
import { helmPath } from "./tools.ts";

const SCRIPT = join(REPO_ROOT, "scripts/setup/cluster.sh");

export interface Cluster {
  kubeconfigPath: string;
  kubectlPath: string;
  /** The folder holding every component's log (kubelet.log, kube-apiserver.log, ...). */
  logDir: string;
  /** A client authenticated as a system:masters user. */
  client: KubeClient;
  /** The images cluster.sh imported: engine, controller (operator) and pause. */
  images: { engine: string; controller: string; pause: string };
  kubectl(...args: string[]): string;
  /** kubectl without throwing: exit status, stdout and stderr. */
  kubectlResult(...args: string[]): { status: number | null; stdout: string; stderr: string };
  /** `kubectl apply -f -` of objects (JSON), throwing on failure. */
  apply(...objects: unknown[]): string;
  helm(...args: string[]): string;
  /** The last lines of a component's log, for failure messages. */
  logTail(component: string, lines?: number): string;
  stop(): Promise<void>;
}

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn("bash", [SCRIPT, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    p.stdout.on("data", (d: Buffer) => { output += d.toString(); });
    p.stderr.on("data", (d: Buffer) => { output += d.toString(); });
    const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("close", (code) => { clearTimeout(timer); resolve({ code, output }); });
  });
}

function info(...key: string[]): string {
  const r = spawnSync("bash", [SCRIPT, "info", ...key], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`cluster.sh info ${key.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

export async function startCluster(): Promise<Cluster> {
  if (process.getuid?.() !== 0) throw new Error("the single-node cluster needs root (containerd, kubelet, iptables)");
  // A cluster left over by an interrupted run is taken down first.
  await run(["down"], 180_000);
  const up = await run(["up"], 30 * 60_000);
  if (up.code !== 0) {
    const down = await run(["down"], 180_000);
    throw new Error(`scripts/setup/cluster.sh up failed (exit ${up.code}):\n${up.output.slice(-6000)}\n(down: ${down.code})`);
  }
  const kubeconfigPath = info("kubeconfig");
  const kubectlPath = info("kubectl");
  const logDir = info("logs");
  const client = createKubeClient(await loadConnectionConfig({ kubeconfig: kubeconfigPath }));
  const kubectlWith = (input: string | undefined, args: string[]) => {
    const r = spawnSync(kubectlPath, ["--kubeconfig", kubeconfigPath, ...args], { encoding: "utf8", timeout: 300_000, maxBuffer: 64 << 20, ...(input !== undefined ? { input } : {}) });
    return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? String(r.error ?? "") };
  };
  const kubectlResult = (...args: string[]) => kubectlWith(undefined, args);
  let stopped = false;
  return {
    kubeconfigPath, kubectlPath, logDir, client,
    images: { engine: info("image", "engine"), controller: info("image", "controller"), pause: info("image", "pause") },
    kubectl: (...args) => {
      const r = kubectlResult(...args);
      if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")} (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
      return r.stdout;
    },
    kubectlResult,
    apply: (...objects) => {
      const r = kubectlWith(JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }), ["apply", "-f", "-"]);
      if (r.status !== 0) throw new Error(`kubectl apply (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
      return r.stdout;
    },
    helm: (...args) => {
      const r = spawnSync(helmPath(), [...args, "--kubeconfig", kubeconfigPath], { encoding: "utf8", timeout: 300_000 });
      if (r.status !== 0) throw new Error(`helm ${args.join(" ")} (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
      return r.stdout;
    },
    logTail: (component, lines = 40) => {
      try { return readFileSync(join(logDir, `${component}.log`), "utf8").split("\n").slice(-lines).join("\n"); } catch { return "(no log)"; }
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      const down = await run(["down"], 300_000);
      if (down.code !== 0) throw new Error(`scripts/setup/cluster.sh down failed (exit ${down.code}):\n${down.output.slice(-4000)}`);
    },
  };
}
