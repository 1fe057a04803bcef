/**
 * `ipp-operator operator`: the Kubernetes reconciler for EngineClusters. Reads its configuration
 * here (flags and the few environment variables a pod provides) and nowhere else.
 */
import { hostname } from "node:os";
import { Registry } from "prom-client";
import { CLUSTER_LABEL } from "../backends/mpi/core/names.ts";
import { PbsOperatorRuntime } from "../backends/pbs/runtime.ts";
import { createOperatorMetrics, createPbsMetrics, createTunnelMetrics } from "../metrics/operator.ts";
import { startOperatorHttpServer } from "../operator/http-server.ts";
import { createKubeClient } from "../operator/kube/client.ts";
import { loadConnectionConfig } from "../operator/kube/config.ts";
import { readSecretText } from "../operator/kube/secrets.ts";
import { startOperator } from "../operator/operator.ts";
import { corePlanner } from "../operator/planner.ts";
import { createLogger, type LogLevel } from "../util/log.ts";

const HELP = `usage: ipp-operator operator [options]

Reconcile EngineClusters (ipp.dev/v1alpha1): create and update the objects each one owns, report
status, and clean up on delete.

options:
  --kubeconfig PATH        kubeconfig file (default: in-cluster config, then $KUBECONFIG, ~/.kube/config)
  --namespace NS           watch only this namespace (default: all namespaces)
  --metrics-port N         port of /metrics, /healthz, /readyz (default 8080; 0 = random)
  --leader-elect           elect a leader with a coordination.k8s.io Lease (for replicas > 1)
  --lease-name NAME        Lease name (default ipp-operator-leader)
  --lease-namespace NS     Lease namespace (default: $POD_NAMESPACE, else --namespace, else default)
  --identity ID            this replica's identity in the Lease (default: $POD_NAME or the host name + pid)
  --workers N              concurrent reconciles (default 16)
  --controller-image REF   controller image when spec.controller.image is unset (default: $IPP_OPERATOR_IMAGE, else built-in)
  --cluster-domain NAME    cluster DNS domain (default cluster.local)
  --metrics-scraper-namespace-selector K=V[,K=V...]
                           namespaces whose pods may reach each controller's metrics port (its
                           NetworkPolicy; never the API port). Default: every namespace
  --metrics-scraper-pod-selector K=V[,K=V...]
                           and only pods with these labels there. Default: every pod
  --operator-namespace NS  the operator's own namespace: each controller's NetworkPolicy admits the
                           operator to its API port only from there (default: $POD_NAMESPACE; unset:
                           no operator rule, for an operator running outside the cluster)
  --operator-pod-selector K=V[,K=V...]
                           labels of the operator's pods in that namespace (default ipp.dev/operator=true)
  --pbs-deletion-grace S   seconds a deleted pbs EngineCluster waits for its login host before its
                           finalizer goes anyway (its jobs may still run; an Event names them).
                           Default 600; the annotation ipp.dev/abandon-jobs=true lets go at once
  --log-level LEVEL        debug | info | warn | error (default info)
  -h, --help               show this help
`;

export interface Flags {
  kubeconfig?: string; namespace?: string; metricsPort: number; leaderElect: boolean; leaseName: string;
  leaseNamespace?: string; identity?: string; workers: number; logLevel: LogLevel;
  controllerImage?: string; clusterDomain?: string; pbsDeletionGraceSeconds?: number;
  scraperNamespaceSelector: Record<string, string>; scraperPodSelector: Record<string, string>;
  operatorNamespace?: string; operatorPodSelector: Record<string, string>;
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

/**
 * A matchLabels selector written `key=value[,key=value...]` (kubectl's equality form; `==` is
 * accepted too). The empty string selects everything: {}.
 */
export function parseLabelSelector(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (text.trim() === "") return out;
  for (const part of text.split(",")) {
    const m = /^\s*([^=!\s]+)\s*==?\s*([^=\s]*)\s*$/.exec(part);
    if (!m) throw new Error(`'${part}' is not key=value (only equality selectors are supported)`);
    const [, key, value] = m as unknown as [string, string, string];
    const name = key.includes("/") ? key.slice(key.indexOf("/") + 1) : key;
    if (!LABEL_KEY.test(key) || name.length > 63 || key.length > 253 + 1 + 63) throw new Error(`'${key}' is not a valid label key`);
    if (!LABEL_VALUE.test(value) || value.length > 63) throw new Error(`'${value}' is not a valid label value (for key ${key})`);
    if (key in out && out[key] !== value) throw new Error(`label ${key} is given twice with different values`);
    out[key] = value;
  }
  return out;
}

export function parseOperatorArgs(argv: string[]): Flags | string {
  const f: Flags = {
    metricsPort: 8080, leaderElect: false, leaseName: "ipp-operator-leader", workers: 16, logLevel: "info",
    scraperNamespaceSelector: {}, scraperPodSelector: {}, operatorPodSelector: {},
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    let value: string | undefined;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) { value = arg.slice(eq + 1); arg = arg.slice(0, eq); }
    const need = () => {
      const v = value ?? argv[++i];
      if (v === undefined || v === "") throw new Error(`${arg} needs a value`);
      return v;
    };
    const labelSelector = () => {
      const v = value ?? argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      try {
        return parseLabelSelector(v);
      } catch (err) {
        throw new Error(`${arg}: ${(err as Error).message}`);
      }
    };
    const int = (min: number, max: number) => {
      const v = need();
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${arg} must be an integer from ${min} to ${max}, got '${v}'`);
      return n;
    };
    switch (arg) {
      case "--kubeconfig": f.kubeconfig = need(); break;
      case "--namespace": f.namespace = need(); break;
      case "--metrics-port": f.metricsPort = int(0, 65535); break;
      case "--leader-elect": f.leaderElect = value === undefined ? true : value === "true"; break;
      case "--lease-name": f.leaseName = need(); break;
      case "--lease-namespace": f.leaseNamespace = need(); break;
      case "--identity": f.identity = need(); break;
      case "--workers": f.workers = int(1, 256); break;
      case "--controller-image": f.controllerImage = need(); break;
      case "--cluster-domain": f.clusterDomain = need(); break;
      case "--pbs-deletion-grace": f.pbsDeletionGraceSeconds = int(0, 30 * 24 * 3600); break;
      case "--metrics-scraper-namespace-selector": f.scraperNamespaceSelector = labelSelector(); break;
      case "--metrics-scraper-pod-selector": f.scraperPodSelector = labelSelector(); break;
      case "--operator-namespace": f.operatorNamespace = need(); break;
      case "--operator-pod-selector": f.operatorPodSelector = labelSelector(); break;
      case "--log-level": {
        const v = need();
        if (!["debug", "info", "warn", "error"].includes(v)) throw new Error(`--log-level must be debug, info, warn or error, got '${v}'`);
        f.logLevel = v as LogLevel;
        break;
      }
      default: return `unknown option '${arg}'`;
    }
  }
  return f;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes("-h") || argv.includes("--help")) { process.stdout.write(HELP); return 0; }
  let flags: Flags;
  try {
    const parsed = parseOperatorArgs(argv);
    if (typeof parsed === "string") { process.stderr.write(`ipp-operator operator: ${parsed}\n\n${HELP}`); return 2; }
    flags = parsed;
  } catch (err) {
    process.stderr.write(`ipp-operator operator: ${(err as Error).message}\n`);
    return 2;
  }
  const identity = flags.identity ?? process.env.POD_NAME ?? `${hostname()}-${process.pid}`;
  const log = createLogger({ level: flags.logLevel }).with({ component: "operator", identity });
  let client;
  try {
    client = createKubeClient(await loadConnectionConfig({ kubeconfig: flags.kubeconfig, env: process.env }));
  } catch (err) {
    log.error("cannot load the Kubernetes configuration", err, { kubeconfig: flags.kubeconfig });
    return 1;
  }
  const registry = new Registry();
  const metrics = createOperatorMetrics(registry);

  const controllerImage = flags.controllerImage ?? process.env.IPP_OPERATOR_IMAGE;
  const operatorNamespace = flags.operatorNamespace ?? process.env.POD_NAMESPACE;
  const plannerConfig = {
    ...(controllerImage ? { controllerImage } : {}),
    ...(flags.clusterDomain ? { clusterDomain: flags.clusterDomain } : {}),
    ...(flags.pbsDeletionGraceSeconds !== undefined ? { pbsDeletionGraceSeconds: flags.pbsDeletionGraceSeconds } : {}),
    metricsScrapers: {
      namespaceSelector: flags.scraperNamespaceSelector,
      ...(Object.keys(flags.scraperPodSelector).length > 0 ? { podSelector: flags.scraperPodSelector } : {}),
    },
    ...(operatorNamespace ? { operator: { namespace: operatorNamespace, podLabels: flags.operatorPodSelector } } : {}),
  };
  const pbs = new PbsOperatorRuntime({
    logger: log.with({ backend: "pbs" }), metrics: createPbsMetrics(registry), tunnelMetrics: createTunnelMetrics(registry),
    readSecret: (namespace, name) => readSecretText(client, namespace, name),
  });
  const op = await startOperator({
    client, planner: corePlanner, metrics, pbs, namespace: flags.namespace, workers: flags.workers, identity,
    ownedLabelSelector: CLUSTER_LABEL, podLabel: CLUSTER_LABEL, plannerConfig, logger: log,
    leaderElection: flags.leaderElect ? {
      name: flags.leaseName, identity,
      namespace: flags.leaseNamespace ?? process.env.POD_NAMESPACE ?? flags.namespace ?? "default",
    } : undefined,
  });
  const http = await startOperatorHttpServer({ registry, port: flags.metricsPort, ready: op.isReady });
  log.info("operator started", { metricsPort: http.port, namespace: flags.namespace ?? "(all)", leaderElect: flags.leaderElect });

  const onSignal = (signal: string) => {
    log.info("shutting down", { signal });
    void op.stop();
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));
  const result = await op.done;
  await op.stop();
  await http.close();
  pbs.close();
  client.close();
  if (result === "lost") { log.error("leadership lost, exiting"); return 1; }
  return 0;
}
