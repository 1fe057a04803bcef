/**
 * What kube-controller-manager's namespace controller does to a namespace being deleted, for the
 * test API server (which runs no controllers, so a deleted namespace otherwise stays Terminating):
 * discover every namespaced resource that supports deletecollection, delete each collection one
 * after the other in discovery order, as the controller's deleteAllContent does (core/v1 first, so
 * Secrets go before the ipp.dev EngineClusters that need them), and repeat while objects remain
 * (finalizers hold them); once the
 * namespace is empty, remove the `kubernetes` finalizer through the namespace's finalize
 * subresource, which lets the API server delete it. No kube-controller-manager binary is built
 * here (scripts/setup/kube.sh builds etcd, kube-apiserver and helm only).
 */
import { isNotFound, KubeApiError, type KubeClient } from "../../src/operator/kube/client.ts";

interface ApiResource { name: string; namespaced: boolean; verbs: string[] }

async function namespacedCollections(client: KubeClient): Promise<string[]> {
  const out: string[] = [];
  const add = (base: string, list: { resources: ApiResource[] }) => {
    for (const r of list.resources) {
      if (r.namespaced && !r.name.includes("/") && r.verbs.includes("deletecollection") && r.verbs.includes("list")) out.push(`${base}/${r.name}`);
    }
  };
  add("/api/v1", await client.request<{ resources: ApiResource[] }>("GET", "/api/v1"));
  const groups = await client.request<{ groups: Array<{ preferredVersion: { groupVersion: string } }> }>("GET", "/apis");
  for (const g of groups.groups) add(`/apis/${g.preferredVersion.groupVersion}`, await client.request("GET", `/apis/${g.preferredVersion.groupVersion}`));
  return out;
}

const collectionIn = (collection: string, ns: string): string => {
  const i = collection.lastIndexOf("/");
  return `${collection.slice(0, i)}/namespaces/${ns}${collection.slice(i)}`;
};

export interface NamespaceDeleter {
  /** Resolves when the namespace is gone. */
  readonly done: Promise<void>;
  /** Sweeps so far. */
  sweeps(): number;
  stop(): void;
}

/** Starts sweeping namespace `ns` (already marked for deletion) every `everyMs` until it is gone. */
export function startNamespaceDeleter(client: KubeClient, ns: string, everyMs = 1000): NamespaceDeleter {
  let stopped = false;
  let sweeps = 0;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const done = (async () => {
    const collections = await namespacedCollections(client);
    while (!stopped) {
      sweeps++;
      for (const c of collections) {
        try {
          await client.request("DELETE", collectionIn(c, ns), { body: { apiVersion: "v1", kind: "DeleteOptions", propagationPolicy: "Background" } });
        } catch (err) {
          if (!(err instanceof KubeApiError) || ![404, 405].includes(err.status)) throw err;
        }
      }
      let left = 0;
      for (const c of collections) {
        try {
          left += (await client.request<{ items: unknown[] }>("GET", collectionIn(c, ns))).items.length;
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
      if (left === 0) {
        try {
          const nsObj = await client.request<Record<string, unknown>>("GET", `/api/v1/namespaces/${ns}`);
          await client.request("PUT", `/api/v1/namespaces/${ns}/finalize`, { body: { ...nsObj, spec: { finalizers: [] } } });
        } catch (err) {
          if (isNotFound(err)) return;
          throw err;
        }
      }
      try {
        await client.request("GET", `/api/v1/namespaces/${ns}`);
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
      await sleep(everyMs);
    }
  })();
  return { done, sweeps: () => sweeps, stop: () => { stopped = true; } };
}
