/**
 * The ipyparallel launchers of native/python (pip-installed from the path into the ipp9 venv)
 * driving a real EngineCluster: `ipp.Cluster(controller_launcher_class="EngineCluster",
 * engine_launcher_class="EngineCluster", n=4)` with the rest configured once in the profile's
 * ipcluster_config.py. The operator reconciles on a real kube-apiserver; there is no kubelet, so
 * this test plays the kubelet's part as test/integration/operator/launcher.test.ts does: it starts
 * our controller from the connection Secret the operator generated, marks the controller Deployment
 * available, and runs the launcher Job's mpiexec locally. The manifest asks for 2 engines, the
 * Cluster for 4: the engine launcher's scale request must reach spec.engines (the operator then
 * relaunches the world with 4), ipyparallel's client gets psum = 496 over one MPI world of 4, and
 * stopping the Cluster deletes the EngineCluster.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import type { MpiObjects } from "../../../src/backends/mpi/core/builders.ts";
import { CLUSTER_LABEL } from "../../../src/backends/mpi/core/names.ts";
import { startController, type ControllerHandle } from "../../../src/controller/controller.ts";
import { startHttpServer, type HttpServerHandle } from "../../../src/controller/http/server.ts";
import { tokenAuth } from "../../../src/controller/http/auth.ts";
import { createOperatorMetrics } from "../../../src/metrics/operator.ts";
import { isNotFound } from "../../../src/operator/kube/client.ts";
import { objectPath, resourceType, type KubeObject } from "../../../src/operator/kube/resources.ts";
import { startOperator, type OperatorHandle } from "../../../src/operator/operator.ts";
import { corePlanner } from "../../../src/operator/planner.ts";
import { createLogger, silentLogger } from "../../../src/util/log.ts";
import { createNamespace, startApiServer, type ApiServer } from "../../support/apiserver.ts";
import { controllerConfigFromObjects, startLocalLauncher, type LocalLauncher } from "../../support/launcher.ts";
import { REPO_ROOT, python, venvBin } from "../../support/paths.ts";
import { waitFor } from "../operator/helpers.ts";

const NS = "lab";
const NAME = "nbk";
const ENGINES = 4;
let api: ApiServer;
let op: OperatorHandle;
let controller: ControllerHandle | undefined;
let http: HttpServerHandle | undefined;
let launcher: LocalLauncher | undefined;
let httpPort = 0;
const logs: string[] = [];
const dir = mkdtempSync(join(tmpdir(), "ipp-launchers-"));

before(async () => {
  // pip install from a path, as a user would (dependencies come from provisioning: scripts/setup/python.sh);
  // from a copy, so the build leaves nothing in the checkout
  const src = join(dir, "ipp-operator-launchers");
  cpSync(join(REPO_ROOT, "native/python"), src, { recursive: true, filter: (p) => !/(\.egg-info|\/build|__pycache__)$/.test(p) });
  execFileSync(venvBin(9, "pip"), ["install", "-q", "--disable-pip-version-check", "--no-deps", "--no-build-isolation", "--no-cache-dir", src],
    { stdio: "pipe", env: { ...process.env, PIP_NO_INPUT: "1" }, cwd: dir });
  api = await startApiServer();
  await createNamespace(api.client, NS);
  op = await startOperator({
    client: api.client, planner: corePlanner, metrics: createOperatorMetrics(new Registry(), { defaultMetrics: false }), namespace: NS, workers: 2,
    ownedLabelSelector: CLUSTER_LABEL, podLabel: CLUSTER_LABEL,
    probe: { controllerUrl: () => (httpPort ? `http://127.0.0.1:${httpPort}` : undefined) },
  });
});

after(async () => {
  await launcher?.stop();
  await http?.close();
  await controller?.stop();
  await op?.stop();
  await api?.stop();
  rmSync(dir, { recursive: true, force: true });
});

type EC = KubeObject & { spec: { engines: number }; metadata: { generation?: number }; status?: { observedGeneration?: number; phase?: string; mpi?: { launcherJob?: string; worldGeneration?: string } } };
const get = <T = KubeObject>(v: string, k: string, name: string) => api.client.request<T>("GET", objectPath(resourceType(v, k), NS, name));

test("ipp.Cluster with the EngineCluster launchers creates, scales, uses and deletes a real EngineCluster", async () => {
  const profileDir = join(dir, "profile_nbk");
  mkdirSync(profileDir, { recursive: true });
  writeFileSync(join(dir, "nbk.yaml"), [
    "apiVersion: ipp.dev/v1alpha1", "kind: EngineCluster", `metadata: {name: ${NAME}, namespace: ${NS}}`,
    "spec:", "  engines: 2", "  backend:", "    mpi: {image: ghcr.io/example/ipp-engine:1.0, slotsPerWorker: 2, engineArgs: [--log-level=WARN]}",
    "  controller: {heartbeatPeriodMs: 1000}", "",
  ].join("\n"));
  // configured once in the profile, as for the Clusters tab
  writeFileSync(join(profileDir, "ipcluster_config.py"), [
    "c = get_config()",
    `c.EngineClusterControllerLauncher.manifest = ${JSON.stringify(join(dir, "nbk.yaml"))}`,
    `c.EngineClusterControllerLauncher.kubeconfig = ${JSON.stringify(api.kubeconfigPath)}`,
    // no cluster DNS here: clients reach the locally run controller on loopback
    `c.EngineClusterControllerLauncher.client_address = "127.0.0.1"`,
    "c.EngineClusterControllerLauncher.poll_interval = 0.25",
    "",
  ].join("\n"));

  let driverOut = "";
  let driverErr = "";
  const driver = spawn(python(9), [join(REPO_ROOT, "test/python/engine_cluster_launchers.py"), profileDir, String(ENGINES)],
    { env: { ...process.env, IPYTHONDIR: join(dir, "ipython"), PYTHONPATH: join(REPO_ROOT, "test/python") }, stdio: ["ignore", "pipe", "pipe"] });
  driver.stdout!.on("data", (d: Buffer) => { driverOut += d.toString(); });
  driver.stderr!.on("data", (d: Buffer) => { driverErr += d.toString(); });
  const exited = new Promise<number | null>((r) => driver.once("exit", (code) => r(code)));
  const diag = () => `\ndriver stderr:\n${driverErr.slice(-4000)}\nlauncher:\n${launcher?.output().slice(-2000) ?? ""}\ncontroller:\n${logs.slice(-20).join("\n")}`;

  try {
    // the controller launcher created the cluster from the manifest (2 engines)
    const created = await waitFor("EngineCluster created by the launcher", () => get<EC>("ipp.dev/v1alpha1", "EngineCluster", NAME).catch(() => undefined), 120_000, 250)
      .catch((e: Error) => { throw new Error(e.message + diag()); });
    assert.equal((created.metadata.labels as Record<string, string>)["app.kubernetes.io/created-by"], "ipp-operator-launchers");

    // play the kubelet: the controller from the operator's Secret, its Deployment available
    const secret = await waitFor("connection Secret", () => get("v1", "Secret", `${NAME}-connection`).catch(() => undefined), 60_000);
    await waitFor("controller Deployment", () => get("apps/v1", "Deployment", `${NAME}-controller`).catch(() => undefined), 60_000);
    const registry = new Registry();
    controller = await startController({
      ...controllerConfigFromObjects({ connectionSecret: secret } as unknown as MpiObjects), heartbeatPeriodMs: 1000, taskScheme: "leastload", shutdownDelayMs: -1,
    }, { logger: createLogger({ level: "warn", sink: (l) => { logs.push(l); } }), registry });
    // the API with the Secret's token: the operator's probe must send it
    const apiToken = Buffer.from((secret as unknown as { data: Record<string, string> }).data["api-token"]!, "base64").toString("utf8");
    http = await startHttpServer({ controller, registry, port: 0, logger: silentLogger, serve: "api", auth: tokenAuth(apiToken) });
    httpPort = http.port;
    await api.client.request("PATCH", objectPath(resourceType("apps/v1", "Deployment"), NS, `${NAME}-controller`, "status"), {
      body: { status: { replicas: 1, readyReplicas: 1, availableReplicas: 1 } }, contentType: "application/merge-patch+json",
    });

    // the engine launcher scaled it to the Cluster's n; the operator relaunched the world for 4
    const scaled = await waitFor(`spec.engines = ${ENGINES} through the scale subresource, reconciled`, async () => {
      const e = await get<EC>("ipp.dev/v1alpha1", "EngineCluster", NAME);
      return e.spec.engines === ENGINES && e.status?.observedGeneration === e.metadata.generation && e.status?.mpi?.launcherJob ? e : undefined;
    }, 180_000, 250).catch((e: Error) => { throw new Error(e.message + diag()); });
    const managers = ((scaled.metadata as { managedFields?: Array<{ manager?: string; subresource?: string }> }).managedFields ?? []);
    assert.ok(managers.some((m) => m.manager === "ipp-operator-launchers" && m.subresource === "scale"), `scaled through /scale: ${JSON.stringify(managers)}`);

    const objects = {
      connectionSecret: secret,
      hostfile: await get("v1", "ConfigMap", `${NAME}-hostfile`),
      launcher: await get("batch/v1", "Job", scaled.status!.mpi!.launcherJob!),
      shape: { engines: ENGINES, workers: 2, slotsPerWorker: 2, implementation: "openmpi" },
    } as unknown as MpiObjects;
    launcher = startLocalLauncher({ objects, ipp: 9, env: { OMPI_MCA_btl: "self,vader,tcp", PYTHONUNBUFFERED: "1" } });

    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise<"timeout">((r) => { timer = setTimeout(() => r("timeout"), 420_000); })]);
    clearTimeout(timer);
    assert.notEqual(code, "timeout", `driver did not finish${diag()}`);
    const r = JSON.parse(driverOut.trim().split("\n").pop() ?? "{}") as { errors: Record<string, string>; start: { ids: number[]; cluster_name: string; controller: string; engines: string[] }; psum: { totalsum: number[]; size: number[] } };
    assert.deepEqual(r.errors, {}, JSON.stringify(r.errors, null, 1) + diag());
    assert.equal(code, 0);
    assert.equal(r.start.cluster_name, NAME);
    assert.equal(r.start.controller, "EngineClusterControllerLauncher");
    assert.deepEqual(r.start.engines, ["EngineClusterEngineSetLauncher"]);
    assert.equal(r.start.ids.length, ENGINES);
    assert.deepEqual(r.psum.size, Array(ENGINES).fill(ENGINES), "one MPI world of all engines");
    assert.deepEqual(r.psum.totalsum, Array(ENGINES).fill(496));

    // stop_cluster deleted it (the operator removed its finalizer after the owned objects)
    await waitFor("EngineCluster deleted", async () => {
      try { await get("ipp.dev/v1alpha1", "EngineCluster", NAME); return false; } catch (e) { return isNotFound(e); }
    }, 60_000, 250);
  } finally {
    if (driver.exitCode === null) driver.kill("SIGKILL");
  }
});

test("bad input: a manifest that is missing, and a cluster that already exists, fail with a clear message", async () => {
  const run = (config: string[]) => {
    const profileDir = mkdtempSync(join(dir, "profile_bad"));
    writeFileSync(join(profileDir, "ipcluster_config.py"), ["c = get_config()", `c.EngineClusterControllerLauncher.kubeconfig = ${JSON.stringify(api.kubeconfigPath)}`, ...config, ""].join("\n"));
    const script = [
      "import ipyparallel as ipp, sys",
      `c = ipp.Cluster(profile_dir=${JSON.stringify(profileDir)}, controller_launcher_class="EngineCluster", engine_launcher_class="EngineCluster", n=1)`,
      "try:\n    c.start_controller_sync()\nexcept Exception as e:\n    print(type(e).__name__ + ': ' + str(e)); sys.exit(3)",
    ].join("\n");
    return new Promise<{ code: number | null; out: string }>((resolve) => {
      execFile(python(9), ["-c", script], { env: { ...process.env, IPYTHONDIR: join(dir, "ipython") }, timeout: 120_000 },
        (err, stdout) => resolve({ code: err ? (err as { code?: number }).code ?? null : 0, out: stdout }));
    });
  };
  const missing = await run([`c.EngineClusterControllerLauncher.manifest = "/nonexistent/ec.yaml"`]);
  assert.equal(missing.code, 3);
  assert.match(missing.out, /EngineClusterError: EngineClusterControllerLauncher.manifest: cannot read \/nonexistent\/ec.yaml: No such file or directory/);

  await api.client.request("POST", `/apis/ipp.dev/v1alpha1/namespaces/${NS}/engineclusters`, { body: {
    apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", metadata: { name: "taken", namespace: NS },
    spec: { engines: 1, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } } } });
  const taken = await run([`c.EngineClusterControllerLauncher.cluster_name = "taken"`, `c.EngineClusterControllerLauncher.namespace = "${NS}"`,
    `c.EngineClusterControllerLauncher.spec = {"backend": {"mpi": {"image": "ghcr.io/example/ipp-engine:1.0"}}}`]);
  assert.equal(taken.code, 3);
  assert.match(taken.out, /EngineClusterError: EngineCluster lab\/taken already exists/);
  const noBackend = await run([]);
  assert.equal(noBackend.code, 3);
  assert.match(noBackend.out, /no backend/);
});
