/**
 * Benchmark: 100 EngineClusters on a real kube-apiserver. Measures the time from the first create
 * until every cluster has all its owned objects and a current status (observedGeneration equal to
 * its generation, conditions set), and the operator process's peak RSS (VmHWM).
 *
 *   node --import tsx bench/operator-100.ts [--clusters 100] [--workers 16] [--apiserver-profile FILE] [--no-build]
 *
 * The operator runs as it is deployed: `npm run build` first (unless dist/ is newer than every
 * source file), then bin/ipp-operator runs the compiled CLI from dist/ (--no-build: from source
 * through tsx, about 35 MB more RSS).
 *
 * --apiserver-profile writes a 30 s CPU profile of kube-apiserver (its /debug/pprof/profile),
 * taken from the first create on; read it with `go tool pprof -top FILE`.
 *
 * Targets: ≤ 10 s and peak RSS ≤ 150 MB for 100 clusters; ≤ 60 s and ≤ 200 MB for 1,000. The
 * API server's Service range (test/support/apiserver.ts, a /16) holds the 1,000 controller
 * Services. Needs scripts/setup/kube.sh.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createNamespace, freePort, startApiServer } from "../test/support/apiserver.ts";
import { REPO_ROOT } from "../test/support/paths.ts";
import { collectionPath, resourceType, ENGINECLUSTER, type KubeObject } from "../src/operator/kube/resources.ts";
import { OWNED_KINDS } from "../src/operator/operator.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg("clusters", 100);
const profileAt = process.argv.indexOf("--apiserver-profile");
const PROFILE = profileAt > 0 ? process.argv[profileAt + 1] : undefined;
const WORKERS = arg("workers", 16);
const NS = "bench";
const TARGET = N > 100 ? { seconds: 60, rssMB: 200 } : { seconds: 10, rssMB: 150 };
// listing every owned kind is not free: poll less often when there are many objects
const POLL_MS = N > 100 ? 1000 : 100;

function manifest(i: number) {
  return {
    apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster",
    metadata: { name: `ec-${i}`, namespace: NS },
    spec: { engines: 4, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0", slotsPerWorker: 2 } } },
  };
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
const cpuSeconds = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
};
const loadAverage = (): number => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);

/**
 * kube-apiserver's request counters and the seconds it spent serving them, by verb and resource
 * (apiserver_request_total, apiserver_request_duration_seconds_sum), from its /metrics; watches
 * are left out of the seconds (a watch lasts as long as its stream).
 */
type RequestTally = Map<string, { count: number; seconds: number }>;
async function apiserverRequests(server: string, token: string): Promise<RequestTally> {
  const { request } = await import("node:https");
  const text = await new Promise<string>((resolve, reject) => {
    const req = request(`${server}/metrics`, { headers: { Authorization: `Bearer ${token}` }, rejectUnauthorized: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => { body += c; });
      res.on("end", () => resolve(body));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
  const tally: RequestTally = new Map();
  const label = (labels: string, name: string) => new RegExp(`${name}="([^"]*)"`).exec(labels)?.[1] ?? "";
  for (const line of text.split("\n")) {
    const m = /^(apiserver_request_total|apiserver_request_duration_seconds_sum)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const verb = label(m[2]!, "verb");
    if (verb === "WATCH" || verb === "CONNECT") continue;
    const sub = label(m[2]!, "subresource");
    const key = `${verb} ${label(m[2]!, "resource")}${sub ? `/${sub}` : ""}`;
    const t = tally.get(key) ?? { count: 0, seconds: 0 };
    if (m[1] === "apiserver_request_total") t.count += Number(m[3]);
    else t.seconds += Number(m[3]);
    tally.set(key, t);
  }
  return tally;
}

/** Requests per cluster and API server seconds by verb and resource, between two tallies. */
function requestsPerCluster(before: RequestTally, after: RequestTally, clusters: number): Record<string, string> {
  const rows = [...after].map(([k, a]) => {
    const b = before.get(k) ?? { count: 0, seconds: 0 };
    return [k, a.count - b.count, a.seconds - b.seconds] as const;
  }).filter(([, n]) => n > 0).sort((x, y) => y[2] - x[2]);
  return Object.fromEntries(rows.map(([k, n, s]) => [k, `${(n / clusters).toFixed(2)}/cluster, ${s.toFixed(1)} s`]));
}

const vmHWM = (pid: number): number => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
};

/** dist/ was built after every source file changed (bin/ipp-operator's own rule for running it). */
function builtIsFresh(): boolean {
  const built = join(REPO_ROOT, "dist/src/cli.js");
  if (!existsSync(built) || !existsSync(join(REPO_ROOT, "dist/package.json"))) return false;
  const at = statSync(built).mtimeMs;
  const newer = (dir: string): boolean => readdirSync(dir, { withFileTypes: true }).some((e) =>
    e.isDirectory() ? newer(join(dir, e.name)) : e.name.endsWith(".ts") && statSync(join(dir, e.name)).mtimeMs > at);
  return !newer(join(REPO_ROOT, "src"));
}

async function main() {
  if (!process.argv.includes("--no-build") && !builtIsFresh()) {
    const built = spawnSync("npm", ["run", "--silent", "build"], { cwd: REPO_ROOT, stdio: ["ignore", "inherit", "inherit"] });
    if (built.status !== 0) throw new Error(`npm run build failed (${built.status}); --no-build runs from source`);
  }
  const api = await startApiServer();
  const client = api.client;
  await createNamespace(client, NS);
  const metricsPort = await freePort();
  const op = spawn(join(REPO_ROOT, "bin/ipp-operator"), [
    "operator", "--kubeconfig", api.kubeconfigPath, "--namespace", NS, "--metrics-port", String(metricsPort),
    "--workers", String(WORKERS), "--log-level", "warn",
  ], { stdio: ["ignore", "inherit", "inherit"] });
  try {
    // wait until the operator serves /readyz (caches synced)
    for (let i = 0; ; i++) {
      try { if ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).ok) break; } catch { /* starting */ }
      if (i > 600) throw new Error("operator not ready after 60 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    const rssIdle = vmHWM(op.pid!);
    const cpu0 = { operator: cpuSeconds(op.pid!), apiserver: cpuSeconds(api.pids.apiserver), etcd: cpuSeconds(api.pids.etcd), bench: process.cpuUsage() };
    const load0 = loadAverage();
    const requests0 = await apiserverRequests(api.server, api.token);
    const t0 = performance.now();
    const profiled = PROFILE === undefined ? undefined : (async () => {
      const { request } = await import("node:https");
      const body = await new Promise<Buffer>((resolve, reject) => {
        const req = request(`${api.server}/debug/pprof/profile?seconds=30`, { headers: { Authorization: `Bearer ${api.token}` }, rejectUnauthorized: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve(Buffer.concat(chunks)));
          res.on("error", reject);
        });
        req.on("error", reject);
        req.end();
      });
      writeFileSync(PROFILE, body);
    })();
    const ecPath = collectionPath(ENGINECLUSTER, NS);
    // The EngineClusters are followed by a watch, not polled: listing 1,000 of them every second
    // cost the API server more than a few percent of its CPU during the run, and the bench's
    // overhead should not be what is measured.
    const ecs = new Map<string, KubeObject>();
    const isCurrent = (ec: KubeObject) => (ec.status as { observedGeneration?: number } | undefined)?.observedGeneration === ec.metadata?.generation;
    let currentCount = 0;
    let onChange: (() => void) | undefined;
    const stopWatch = new AbortController();
    // a timeline, one sample every 2 s: statuses current so far, and the CPU each process used in
    // that interval (where a run spends its time: the operator's first passes, the API server's
    // creates, the follow-up status writes)
    const timeline: Array<{ s: number; current: number; cpu: { op: number; api: number; etcd: number }; load: number }> = [];
    let last = { op: cpu0.operator, api: cpu0.apiserver, etcd: cpu0.etcd };
    const sampler = setInterval(() => {
      const now = { op: cpuSeconds(op.pid!), api: cpuSeconds(api.pids.apiserver), etcd: cpuSeconds(api.pids.etcd) };
      timeline.push({
        s: Math.round((performance.now() - t0) / 1000), current: currentCount,
        cpu: { op: +(now.op - last.op).toFixed(1), api: +(now.api - last.api).toFixed(1), etcd: +(now.etcd - last.etcd).toFixed(1) },
        load: loadAverage(),
      });
      last = now;
    }, 2000);
    sampler.unref();
    const rv0 = (await client.request<{ metadata: { resourceVersion: string } }>("GET", ecPath, { query: { limit: 1 } })).metadata.resourceVersion;
    const watching = (async () => {
      let rv = rv0;
      while (!stopWatch.signal.aborted) {
        try {
          for await (const ev of client.watch(ecPath, { query: { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 600 }, signal: stopWatch.signal })) {
            if (ev.type === "ERROR") throw new Error(`watch error: ${JSON.stringify(ev.object)}`);
            rv = ev.object.metadata?.resourceVersion ?? rv;
            if (ev.type === "BOOKMARK") continue;
            const name = ev.object.metadata!.name!;
            const old = ecs.get(name);
            if (old && isCurrent(old)) currentCount--;
            if (ev.type === "DELETED") ecs.delete(name);
            else { ecs.set(name, ev.object); if (isCurrent(ev.object)) currentCount++; }
            onChange?.();
          }
        } catch (err) {
          if (stopWatch.signal.aborted) return;
          throw err;
        }
      }
    })();
    const allCurrent = () => new Promise<void>((resolve, reject) => {
      if (currentCount >= N) return resolve();
      const timer = setTimeout(() => { onChange = undefined; reject(new Error(`only ${currentCount}/${N} statuses current after 600 s`)); }, 600_000 - (performance.now() - t0));
      onChange = () => { if (currentCount >= N) { clearTimeout(timer); onChange = undefined; resolve(); } };
    });
    for (let i = 0; i < N; i += 20) {
      await Promise.all(Array.from({ length: Math.min(20, N - i) }, (_, j) => client.request("POST", ecPath, { body: manifest(i + j) })));
    }
    const tCreated = performance.now();
    let expectedKinds: string[] | undefined;
    let done = 0;
    while (done < N) {
      // a status is written after the applies of its reconcile: list the owned objects only once
      // every status is current
      await Promise.race([allCurrent(), watching.then(() => { throw new Error("EngineCluster watch ended"); })]);
      const owned = new Map<string, Set<string>>();
      for (const [v, k] of OWNED_KINDS) {
        const items = (await client.request<{ items: KubeObject[] }>("GET", collectionPath(resourceType(v, k), NS))).items;
        for (const o of items) for (const r of o.metadata?.ownerReferences ?? []) {
          if (!owned.has(r.uid)) owned.set(r.uid, new Set());
          owned.get(r.uid)!.add(k);
        }
      }
      done = 0;
      for (const ec of ecs.values()) {
        const st = ec.status as { conditions?: unknown[] } | undefined;
        const kinds = [...(owned.get(ec.metadata!.uid!) ?? [])].sort();
        const current = isCurrent(ec) && (st?.conditions?.length ?? 0) > 0;
        if (current && !expectedKinds && kinds.length > 0) expectedKinds = kinds;
        if (current && expectedKinds && kinds.join() === expectedKinds.join()) done++;
      }
      if (performance.now() - t0 > 600_000) throw new Error(`only ${done}/${N} clusters converged after 600 s`);
      if (done < N) await new Promise((r) => setTimeout(r, POLL_MS));
    }
    clearInterval(sampler);
    stopWatch.abort();
    await watching;
    const elapsed = (performance.now() - t0) / 1000;
    await profiled;
    const benchCpu = process.cpuUsage(cpu0.bench);
    const cpu = {
      operator: +(cpuSeconds(op.pid!) - cpu0.operator).toFixed(1),
      apiserver: +(cpuSeconds(api.pids.apiserver) - cpu0.apiserver).toFixed(1),
      etcd: +(cpuSeconds(api.pids.etcd) - cpu0.etcd).toFixed(1),
      benchClient: +((benchCpu.user + benchCpu.system) / 1e6).toFixed(1),
    };
    const load1 = loadAverage();
    const requests = requestsPerCluster(requests0, await apiserverRequests(api.server, api.token), N);
    await new Promise((r) => setTimeout(r, 1000));
    const rssPeak = vmHWM(op.pid!);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const pick = (prefix: string) => metrics.split("\n").filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length)).join("; ");
    const reconciles = pick("ipp_operator_reconcile_total");
    const apiWrites = pick("ipp_operator_api_requests_total");
    const events = pick("ipp_operator_events_total");
    const mb = (name: string) => +(Number(pick(`ipp_operator_${name} `)) / 2 ** 20).toFixed(1);
    const heapAtEnd = { usedMB: mb("nodejs_heap_size_used_bytes"), totalMB: mb("nodejs_heap_size_total_bytes"), externalMB: mb("nodejs_external_memory_bytes") };
    console.log(JSON.stringify({
      clusters: N, workers: WORKERS, ownedKinds: expectedKinds,
      createSeconds: +((tCreated - t0) / 1000).toFixed(2),
      allConvergedSeconds: +elapsed.toFixed(2),
      operatorPeakRssMB: +(rssPeak / 2 ** 20).toFixed(1),
      operatorIdleRssMB: +(rssIdle / 2 ** 20).toFixed(1),
      operatorHeapAtEnd: heapAtEnd,
      // where the time goes: CPU seconds each process used until all converged, and the machine's
      // 1-minute load average (2 cores here) before and after
      cpuSecondsUntilConverged: cpu,
      loadAverage: [load0, load1],
      reconciles, apiWrites, events,
      // every request the API server served until all converged (the bench's own polls included),
      // per cluster, and the seconds spent serving them (summed over concurrent requests)
      apiserverRequests: requests,
    }, null, 2));
    console.log(`timeline (every 2 s: seconds, statuses current, CPU s in the interval operator/apiserver/etcd, load):\n${
      timeline.map((t) => `  ${t.s}s ${t.current} ${t.cpu.op}/${t.cpu.api}/${t.cpu.etcd} ${t.load}`).join("\n")}`);
    console.log(`targets: converge ≤ ${TARGET.seconds} s → ${elapsed <= TARGET.seconds ? "met" : "MISSED"}; peak RSS ≤ ${TARGET.rssMB} MB → ${rssPeak <= TARGET.rssMB * 2 ** 20 ? "met" : "MISSED"}`);
  } finally {
    op.kill("SIGTERM");
    await new Promise((r) => op.once("exit", r));
    await api.stop();
  }
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1; });
