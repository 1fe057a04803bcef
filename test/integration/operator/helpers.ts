/** Shared helpers for the operator's integration tests (real kube-apiserver). */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { freePort, type ApiServer } from "../../support/apiserver.ts";
import { REPO_ROOT } from "../../support/paths.ts";
import type { KubeClient } from "../../../src/operator/kube/client.ts";
import { isNotFound } from "../../../src/operator/kube/client.ts";
import type { KubeObject } from "../../../src/operator/kube/resources.ts";

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) { lastErr = err; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface OperatorProcess {
  proc: ChildProcess;
  metricsPort: number;
  output(): string;
  /** Sends `signal` and waits for the exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs `ipp-operator operator` as a child process against `api`. */
export async function spawnOperator(api: ApiServer, args: string[] = []): Promise<OperatorProcess> {
  const metricsPort = await freePort();
  const proc = spawn(join(REPO_ROOT, "bin/ipp-operator"), [
    "operator", "--kubeconfig", api.kubeconfigPath, "--metrics-port", String(metricsPort), "--log-level", "info", ...args,
  ], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on("data", (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  return {
    proc, metricsPort,
    output: () => out,
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

export async function metric(port: number, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const [k, v] = line.split(" ");
    if (k === name) return Number(v);
  }
  return undefined;
}

export async function getOrUndefined<T = KubeObject>(client: KubeClient, path: string): Promise<T | undefined> {
  try { return await client.request<T>("GET", path); } catch (err) { if (isNotFound(err)) return undefined; throw err; }
}

export async function listItems(client: KubeClient, path: string, labelSelector?: string): Promise<KubeObject[]> {
  return (await client.request<{ items: KubeObject[] }>("GET", path, { query: { labelSelector } })).items;
}
