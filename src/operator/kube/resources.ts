/**
 * The REST paths of the kinds the operator reads and writes. A static table instead of discovery:
 * the operator only ever touches these kinds, and a missing kind is a programming error.
 */
import type { ObjectMeta as CoreObjectMeta, OwnerReference } from "../../api/kube.ts";

/** Any object as read from or sent to the API server (the pure core's `KubeObject`, loosened). */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [field: string]: unknown;
}

/** An object's metadata as read from or sent to the API server: any field may be absent. */
export type ObjectMeta = Partial<CoreObjectMeta> & { generateName?: string; managedFields?: unknown[] };
export type { OwnerReference };

export interface ResourceType {
  apiVersion: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

const TYPES: ResourceType[] = [
  { apiVersion: "ipp.dev/v1alpha1", kind: "EngineCluster", plural: "engineclusters", namespaced: true },
  { apiVersion: "v1", kind: "Pod", plural: "pods", namespaced: true },
  { apiVersion: "v1", kind: "Service", plural: "services", namespaced: true },
  { apiVersion: "v1", kind: "Secret", plural: "secrets", namespaced: true },
  { apiVersion: "v1", kind: "ConfigMap", plural: "configmaps", namespaced: true },
  { apiVersion: "v1", kind: "ServiceAccount", plural: "serviceaccounts", namespaced: true },
  { apiVersion: "v1", kind: "Event", plural: "events", namespaced: true },
  { apiVersion: "v1", kind: "Namespace", plural: "namespaces", namespaced: false },
  { apiVersion: "apps/v1", kind: "Deployment", plural: "deployments", namespaced: true },
  { apiVersion: "apps/v1", kind: "StatefulSet", plural: "statefulsets", namespaced: true },
  { apiVersion: "batch/v1", kind: "Job", plural: "jobs", namespaced: true },
  { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", plural: "networkpolicies", namespaced: true },
  { apiVersion: "policy/v1", kind: "PodDisruptionBudget", plural: "poddisruptionbudgets", namespaced: true },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", plural: "roles", namespaced: true },
  { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", plural: "rolebindings", namespaced: true },
  { apiVersion: "coordination.k8s.io/v1", kind: "Lease", plural: "leases", namespaced: true },
  { apiVersion: "apiextensions.k8s.io/v1", kind: "CustomResourceDefinition", plural: "customresourcedefinitions", namespaced: false },
];

export const ENGINECLUSTER = TYPES[0]!;

export function resourceType(apiVersion: string, kind: string): ResourceType {
  const t = TYPES.find((r) => r.apiVersion === apiVersion && r.kind === kind);
  if (!t) throw new Error(`unknown kind ${kind} in ${apiVersion}`);
  return t;
}

/** `/api/v1` or `/apis/<group>/<version>`, then the namespace (if any) and the plural. */
export function collectionPath(t: ResourceType, namespace?: string): string {
  const base = t.apiVersion.includes("/") ? `/apis/${t.apiVersion}` : `/api/${t.apiVersion}`;
  const ns = t.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  return `${base}${ns}/${t.plural}`;
}

export function objectPath(t: ResourceType, namespace: string | undefined, name: string, subresource?: string): string {
  return `${collectionPath(t, namespace)}/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ""}`;
}

/** `namespace/name` (or `name` for cluster-scoped objects): the work queue key. */
export function objectKey(obj: { metadata?: { namespace?: string; name?: string } }): string {
  const m = obj.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name ?? ""}` : (m.name ?? "");
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf("/");
  return i < 0 ? { namespace: "", name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
