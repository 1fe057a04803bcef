/**
 * End to end without a kubelet: the operator reconciles an EngineCluster on a real kube-apiserver;
 * the launcher Job it created is run locally as the launcher pod would run it (its command and
 * environment, the hostfile pointed at localhost), with our controller started from the connection
 * Secret the operator generated. The engines register, the operator reads the controller's
 * /api/v1/engines and reports the cluster Ready, and the seed notebook's psum gives 496 through
 * an unmodified ipyparallel client.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import type { MpiObjects } from "../../../src/backends/mpi/core/builders.ts";
import { CLUSTER_LABEL, CONNECTION_KEYS } from "../../../src/backends/mpi/core/names.ts";
import { startController, type ControllerHandle } from "../../../src/controller/controller.ts";
import { startHttpServer, type HttpServerHandle } from "../../../src/controller/http/server.ts";
import { tokenAuth } from "../../../src/controller/http/auth.ts";
import { createOperatorMetrics, type OperatorMetrics } from "../../../src/metrics/operator.ts";
import { collectionPath, objectPath, resourceType, ENGINECLUSTER, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { startOperator, type OperatorHandle } from "../../../src/operator/operator.ts";
import { corePlanner } from "../../../src/operator/planner.ts";
import { createLogger, silentLogger } from "../../../src/util/log.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { controllerConfigFromObjects, startLocalLauncher, type LocalLauncher } from "../../support/launcher.ts";
import { REPO_ROOT, python } from "../../support/paths.ts";
import { waitFor } from "./helpers.ts";

const NS = "mpi";
const ENGINES = 4;
let api: ApiServer;
let op: OperatorHandle;
let metrics: OperatorMetrics;
let controller: ControllerHandle | undefined;
let http: HttpServerHandle | undefined;
let metricsHttp: HttpServerHandle | undefined;
let launcher: LocalLauncher | undefined;
let httpPort = 0;
const logs: string[] = [];
const dir = mkdtempSync(join(tmpdir(), "ipp-op-launch-"));

before(async () => {
  api = await startApiServer();
  await createNamespace(api.client, NS);
  metrics = createOperatorMetrics(new Registry(), { defaultMetrics: false });
  op = await startOperator({
    client: api.client, planner: corePlanner, metrics, namespace: NS, workers: 2,
    ownedLabelSelector: CLUSTER_LABEL, podLabel: CLUSTER_LABEL,
    // the controller runs on this machine, not behind a cluster Service
    probe: { controllerUrl: () => (httpPort ? `http://127.0.0.1:${httpPort}` : undefined) },
  });
});

after(async () => {
  const survivors = await launcher?.stop();
  await http?.close();
  await metricsHttp?.close();
  await controller?.stop();
  await op?.stop();
  await api?.stop();
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(survivors?.survivors ?? [], [], "every launcher process stopped");
});

type EC = KubeObject & { status?: { phase?: string; engines?: { registered: number; alive: number }; conditions?: Array<{ type: string; status: string; message: string }> } };
const get = <T = KubeObject>(v: string, k: string, name: string) => api.client.request<T>("GET", objectPath(resourceType(v, k), NS, name));

test("the operator's launcher, run locally, brings up engines that register; the cluster turns Ready and psum = 496", async () => {
  await api.client.request("POST", collectionPath(ENGINECLUSTER, NS), {
    body: { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: "psum", namespace: NS },
      spec: { engines: ENGINES, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0", slotsPerWorker: 2, engineArgs: ["--log-level=WARN"] } },
        controller: { heartbeatPeriodMs: 1000 } } },
  });
  const ec = await waitFor("launcher Job recorded in status", async () => {
    const e = await api.client.request<EC & { status?: { mpi?: { launcherJob?: string } } }>("GET", objectPath(ENGINECLUSTER, NS, "psum"));
    return e.status?.mpi?.launcherJob ? e : undefined;
  });
  const launcherJob = (ec.status as { mpi: { launcherJob: string } }).mpi.launcherJob;
  const objects = {
    connectionSecret: await waitFor("connection Secret", () => get("v1", "Secret", "psum-connection")),
    hostfile: await waitFor("hostfile", () => get("v1", "ConfigMap", "psum-hostfile")),
    launcher: await waitFor("launcher Job", () => get("batch/v1", "Job", launcherJob)),
    shape: { engines: ENGINES, workers: 2, slotsPerWorker: 2, implementation: "openmpi" },
  } as unknown as MpiObjects;

  // our controller, with the key and fixed ports of the Secret the operator generated
  const registry = new Registry();
  const logger = createLogger({ level: "warn", sink: (l) => { logs.push(l); } });
  controller = await startController({
    ...controllerConfigFromObjects(objects), heartbeatPeriodMs: 1000, taskScheme: "leastload", shutdownDelayMs: -1,
  }, { logger, registry });
  // the API and the metrics/health listener on separate ports, as the controller Deployment runs them
  // with the API token of the Secret the operator generated: the operator's probe must send it
  const apiToken = Buffer.from((objects.connectionSecret as unknown as { data: Record<string, string> }).data["api-token"]!, "base64").toString("utf8");
  http = await startHttpServer({ controller, registry, port: 0, logger: silentLogger, serve: "api", auth: tokenAuth(apiToken) });
  httpPort = http.port;
  metricsHttp = await startHttpServer({ controller, registry, port: 0, logger: silentLogger, serve: "metrics" });
  // no kubelet: say the controller's Deployment is available, as the deployment controller would
  await api.client.request("PATCH", objectPath(resourceType("apps/v1", "Deployment"), NS, "psum-controller", "status"), {
    body: { status: { replicas: 1, readyReplicas: 1, availableReplicas: 1 } }, contentType: "application/merge-patch+json",
  });

  launcher = startLocalLauncher({ objects, ipp: 9, env: { OMPI_MCA_btl: "self,vader,tcp", PYTHONUNBUFFERED: "1" } });
  assert.ok(launcher.rendered.argv.some((a) => /mpiexec/.test(a)), `rendered command: ${launcher.rendered.argv.join(" ")}`);
  await waitFor(`${ENGINES} engines registered`, () => controller!.engines().length >= ENGINES || (launcher!.output() && false), 120_000, 250)
    .catch((err: Error) => { throw new Error(`${err.message}\nlauncher output:\n${launcher!.output()}\ncontroller:\n${logs.slice(-20).join("\n")}`); });

  const ready = await waitFor("EngineCluster Ready", async () => {
    const e = await api.client.request<EC>("GET", objectPath(ENGINECLUSTER, NS, "psum"));
    return e.status?.phase === "Ready" && e;
  }, 60_000, 250);
  assert.deepEqual(ready.status!.engines, { desired: ENGINES, registered: ENGINES, alive: ENGINES });
  assert.equal(ready.status!.conditions!.find((c) => c.type === "EnginesReady")!.status, "True");
  assert.equal((await fetch(`http://127.0.0.1:${metricsHttp.port}/readyz?engines=${ENGINES}`)).status, 200, "readiness on the metrics port");
  assert.equal((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status, 404, "no health routes on the API port");
  const ttr = (await metrics.registry.getSingleMetric("ipp_operator_time_to_ready_seconds")!.get()).values.find((v) => (v as { metricName?: string }).metricName?.endsWith("_count"));
  assert.equal(ttr?.value, 1, "time to Ready observed once");

  // the client file from the Secret, pointed at this machine
  const secret = objects.connectionSecret as unknown as { data: Record<string, string> };
  const client = JSON.parse(Buffer.from(secret.data[CONNECTION_KEYS.client]!, "base64").toString()) as Record<string, unknown>;
  const clientFile = join(dir, "ipcontroller-client.json");
  writeFileSync(clientFile, JSON.stringify({ ...client, interface: "tcp://127.0.0.1", location: "127.0.0.1" }));
  const out = await new Promise<string>((resolve, reject) => {
    execFile(python(9), [join(REPO_ROOT, "test/python/workflow.py"), clientFile, String(ENGINES)],
      { env: { ...process.env, IPYTHONDIR: join(dir, "ipython") }, timeout: 180_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr.slice(-3000)}`)) : resolve(stdout)));
  });
  const r = JSON.parse(out.trim().split("\n").pop()!) as { errors: Record<string, string>; size: number[]; px_totalsum: string[] };
  assert.deepEqual(r.errors, {}, JSON.stringify(r.errors, null, 1));
  assert.deepEqual(r.size, Array(ENGINES).fill(ENGINES), "one MPI world of all engines");
  assert.deepEqual(r.px_totalsum, Array(ENGINES).fill("array(496.)"));
});
