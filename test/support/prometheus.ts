/**
 * A real Prometheus (Debian's package, scripts/setup/prometheus.sh) on loopback for tests: a
 * temporary config and data directory, a free port, a fast scrape interval; stop() kills it and
 * removes its files. Queries go through its HTTP API as Grafana's would.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { prometheusPath, promtoolPath } from "./tools.ts";

export interface ScrapeTarget {
  job: string;
  address: string;             // host:port
  labels?: Record<string, string>;
  metricsPath?: string;
  /** A target expected to be down (nothing listens): not waited for by waitForScrapes. */
  down?: boolean;
}

export interface PromAlert { labels: Record<string, string>; annotations: Record<string, string>; state: "pending" | "firing"; value: string }

export interface PromResult<T = unknown> { status: "success" | "error"; data?: T; errorType?: string; error?: string; warnings?: string[] }
export interface VectorSample { metric: Record<string, string>; value: [number, string] }

export interface Prometheus {
  url: string;
  configPath: string;
  logPath: string;
  query(expr: string): Promise<PromResult<{ resultType: string; result: VectorSample[] }>>;
  labelValues(label: string, match?: string): Promise<PromResult<string[]>>;
  targets(): Promise<Array<{ labels: Record<string, string>; health: string; lastError: string }>>;
  /** Alerts of the loaded rule files, pending or firing. */
  alerts(): Promise<PromAlert[]>;
  /** Resolves once every target has been scraped successfully `scrapes` more times. */
  waitForScrapes(scrapes?: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export function prometheusConfig(targets: ScrapeTarget[], scrapeIntervalS: number, ruleFiles: string[] = []): string {
  return stringify({
    global: { scrape_interval: `${scrapeIntervalS}s`, scrape_timeout: `${scrapeIntervalS}s`, evaluation_interval: `${scrapeIntervalS}s` },
    ...(ruleFiles.length > 0 ? { rule_files: ruleFiles } : {}),
    scrape_configs: targets.map((t) => ({
      job_name: t.job,
      metrics_path: t.metricsPath ?? "/metrics",
      // As a ServiceMonitor without honorLabels does: the target's labels win, clashing scraped
      // labels become exported_<name>.
      honor_labels: false,
      static_configs: [{ targets: [t.address], labels: t.labels ?? {} }],
    })),
  });
}

/** `promtool check config` on a config file: throws with promtool's output when it is invalid. */
export function promtoolCheckConfig(configPath: string): string {
  const r = spawnSync(promtoolPath(), ["check", "config", configPath], { encoding: "utf8", timeout: 30_000 });
  const out = `${r.stdout}${r.stderr}`;
  if (r.status !== 0) throw new Error(`promtool check config failed (${r.status}):\n${out}`);
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startPrometheus(targets: ScrapeTarget[], opts: { scrapeIntervalS?: number; ruleFiles?: string[] } = {}): Promise<Prometheus> {
  const bin = prometheusPath();
  const dir = mkdtempSync(join(tmpdir(), "ipp-prometheus-"));
  const configPath = join(dir, "prometheus.yml");
  writeFileSync(configPath, prometheusConfig(targets, opts.scrapeIntervalS ?? 1, opts.ruleFiles));
  promtoolCheckConfig(configPath);
  const port = await freeLoopbackPort();
  const url = `http://127.0.0.1:${port}`;
  const logPath = join(dir, "prometheus.log");
  const log = createWriteStream(logPath);
  const proc: ChildProcess = spawn(bin, [
    `--config.file=${configPath}`, `--storage.tsdb.path=${join(dir, "data")}`,
    `--web.listen-address=127.0.0.1:${port}`, "--storage.tsdb.retention.time=1h", "--log.level=warn",
  ], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout?.pipe(log);
  proc.stderr?.pipe(log);
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));

  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
    log.end();
    rmSync(dir, { recursive: true, force: true });
  };
  const logTail = () => { try { return readFileSync(logPath, "utf8").split("\n").slice(-20).join("\n"); } catch { return ""; } };

  const get = async <T>(path: string, params: Record<string, string | string[]> = {}): Promise<PromResult<T>> => {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const x of Array.isArray(v) ? v : [v]) qs.append(k, x);
    const res = await fetch(`${url}${path}?${qs}`);
    return (await res.json()) as PromResult<T>;
  };

  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`prometheus exited (${proc.exitCode}):\n${logTail()}`);
      try { if ((await fetch(`${url}/-/ready`)).ok) break; } catch { /* not yet */ }
      if (Date.now() > deadline) throw new Error(`prometheus not ready after 30 s:\n${logTail()}`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const targetsNow = async () => {
    const r = await get<{ activeTargets: Array<{ labels: Record<string, string>; health: string; lastError: string; lastScrape: string }> }>("/api/v1/targets");
    return r.data?.activeTargets ?? [];
  };

  return {
    url, configPath, logPath,
    query: (expr) => get("/api/v1/query", { query: expr }),
    labelValues: (label, match) => get(`/api/v1/label/${encodeURIComponent(label)}/values`, match ? { "match[]": match } : {}),
    targets: targetsNow,
    alerts: async () => (await get<{ alerts: PromAlert[] }>("/api/v1/alerts")).data?.alerts ?? [],
    async waitForScrapes(scrapes = 2, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      const seen = new Map<string, Set<string>>();
      for (;;) {
        const ts = await targetsNow();
        for (const t of ts) {
          if (t.health !== "up") continue;
          const key = `${t.labels.job}/${t.labels.instance}`;
          (seen.get(key) ?? seen.set(key, new Set()).get(key)!).add(t.lastScrape);
        }
        const waited = targets.filter((t) => t.down !== true).length;
        if (ts.length === targets.length && [...seen.values()].filter((s) => s.size > scrapes).length === waited) return;
        if (Date.now() > deadline) {
          throw new Error(`targets not scraped ${scrapes} times within ${timeoutMs} ms: ${JSON.stringify(ts.map((t) => [t.labels.job, t.health, t.lastError]))}`);
        }
        await sleep(250);
      }
    },
    stop,
  };
}
