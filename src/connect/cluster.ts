/**
 * Reads what `connect` needs through the Kubernetes API with the user's own credentials: the
 * kubeconfig as @kubernetes/client-node loads it (KUBECONFIG, ~/.kube/config or the pod's service
 * account; exec credential plugins and auth providers included), so RBAC decides who may connect.
 * Every API failure becomes a ConnectError naming the object and what is missing.
 */
import { ApiException, CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { GROUP, PLURAL, VERSION } from "../api/engine-cluster.ts";
import { names, selector } from "../backends/mpi/core/names.ts";
import { ConnectError } from "./core/connection.ts";

export interface KubeAccess {
  kubeConfig: KubeConfig;
  /** The namespace when -n is not given: the current context's, else "default". */
  defaultNamespace: string;
  server: string;
}

export function loadKubeAccess(kubeconfigPath: string | undefined, context?: string): KubeAccess {
  const kc = new KubeConfig();
  try {
    if (kubeconfigPath !== undefined) kc.loadFromFile(kubeconfigPath);
    else kc.loadFromDefault();
    if (context !== undefined) kc.setCurrentContext(context);
  } catch (err) {
    throw new ConnectError(`cannot load the Kubernetes configuration${kubeconfigPath ? ` ${kubeconfigPath}` : ""}: ${(err as Error).message}`);
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new ConnectError("no Kubernetes cluster configured: set KUBECONFIG, pass --kubeconfig, or run in a pod with a service account");
  const ctx = kc.getContextObject(kc.getCurrentContext());
  return { kubeConfig: kc, defaultNamespace: ctx?.namespace || "default", server: cluster.server };
}

interface Status { message?: string; reason?: string; details?: { name?: string; kind?: string } }

function statusOf(err: ApiException<unknown>): Status {
  const b = err.body;
  if (typeof b === "string") { try { return JSON.parse(b) as Status; } catch { return { message: b }; } }
  return (b ?? {}) as Status;
}

/** Turns an API failure about `what` into a message that names it and says what to do. */
export function describeApiError(err: unknown, what: string, server: string, rbacHint: string): ConnectError {
  if (err instanceof ApiException) {
    const s = statusOf(err as ApiException<unknown>);
    const msg = s.message ?? `HTTP ${err.code}`;
    if (err.code === 404) {
      if (s.details?.name === undefined && /could not find the requested resource/.test(msg)) {
        return new ConnectError(`${what}: the API server has no such resource (${msg}) — is the EngineCluster CRD installed (helm install ipp charts/ipp-operator)?`);
      }
      return new ConnectError(`${what} not found`);
    }
    if (err.code === 403) return new ConnectError(`${what}: permission denied — ${msg}. ${rbacHint}`);
    if (err.code === 401) return new ConnectError(`${what}: the API server at ${server} rejected the credentials (401 Unauthorized): check the kubeconfig's user`);
    return new ConnectError(`${what}: the API server answered ${err.code}: ${msg}`);
  }
  const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
  const detail = e.cause?.message ?? e.message ?? String(err);
  return new ConnectError(`${what}: cannot reach the API server at ${server}: ${detail}`);
}

export interface ConnectTarget {
  namespace: string;
  name: string;
  cluster: Record<string, unknown> & { status?: { phase?: string; conditions?: Array<Record<string, string>>; controller?: { connectionSecret?: string } } };
  secretName: string;
  secretData: Record<string, string> | undefined;
}

const RBAC_EC = (ns: string) => `Your user needs 'get' on engineclusters.ipp.dev in namespace ${ns} (a Role and RoleBinding; see docs/notebooks.md)`;
const RBAC_SECRET = (ns: string, secret: string) => `Your user needs 'get' on the Secret ${secret} in namespace ${ns} (a Role with resources: [secrets], resourceNames: [${secret}]; see docs/notebooks.md)`;

/** The EngineCluster, then its connection Secret. */
export async function readConnectTarget(access: KubeAccess, namespace: string, name: string): Promise<ConnectTarget> {
  const custom = access.kubeConfig.makeApiClient(CustomObjectsApi);
  const core = access.kubeConfig.makeApiClient(CoreV1Api);
  const id = `${namespace}/${name}`;
  let cluster: ConnectTarget["cluster"];
  try {
    cluster = await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL, name }) as ConnectTarget["cluster"];
  } catch (err) {
    throw describeApiError(err, `EngineCluster ${id}`, access.server, RBAC_EC(namespace));
  }
  const secretName = cluster.status?.controller?.connectionSecret ?? names.connectionSecret(name);
  let secretData: Record<string, string> | undefined;
  try {
    const secret = await core.readNamespacedSecret({ name: secretName, namespace });
    secretData = secret.data;
  } catch (err) {
    const e = describeApiError(err, `connection Secret ${namespace}/${secretName} of EngineCluster ${id}`, access.server, RBAC_SECRET(namespace, secretName));
    if (err instanceof ApiException && err.code === 404) {
      throw new ConnectError(`${e.message}: the operator creates it with the controller; is the operator running ('kubectl get ec ${name} -n ${namespace}' shows its phase)?`);
    }
    throw e;
  }
  return { namespace, name, cluster, secretName, secretData };
}

/** A running, ready controller pod of the cluster (the port-forward target). */
export async function findControllerPod(access: KubeAccess, namespace: string, name: string): Promise<string> {
  const core = access.kubeConfig.makeApiClient(CoreV1Api);
  const labelSelector = Object.entries(selector(name, "controller")).map(([k, v]) => `${k}=${v}`).join(",");
  let pods;
  try {
    pods = await core.listNamespacedPod({ namespace, labelSelector });
  } catch (err) {
    throw describeApiError(err, `controller pods of EngineCluster ${namespace}/${name}`, access.server,
      `--port-forward needs 'list' on pods and 'create' on pods/portforward in namespace ${namespace}`);
  }
  const ready = pods.items.filter((p) => p.metadata?.deletionTimestamp === undefined && p.status?.phase === "Running"
    && (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True"));
  const pod = ready[0]?.metadata?.name;
  if (pod === undefined) {
    throw new ConnectError(`EngineCluster ${namespace}/${name} has no running, ready controller pod (${pods.items.length} pod(s) match ${labelSelector})`);
  }
  return pod;
}

/** The pod's phase, or "gone" (used to explain a dropped forward). */
export async function podState(access: KubeAccess, namespace: string, pod: string): Promise<string> {
  const core = access.kubeConfig.makeApiClient(CoreV1Api);
  try {
    const p = await core.readNamespacedPod({ name: pod, namespace });
    if (p.metadata?.deletionTimestamp !== undefined) return "being deleted";
    return p.status?.phase ?? "unknown";
  } catch (err) {
    if (err instanceof ApiException && err.code === 404) return "gone";
    return `unknown (${(err as Error).message.split("\n")[0]})`;
  }
}
