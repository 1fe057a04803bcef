/** Reading a Secret's data as text, the way the pbs backend consumes credentials. */
import { isNotFound, type KubeClient } from "./client.ts";
import { objectPath, resourceType } from "./resources.ts";

/** The Secret's keys decoded from base64, or undefined when the Secret does not exist. */
export async function readSecretText(client: KubeClient, namespace: string, name: string): Promise<Record<string, string> | undefined> {
  try {
    const s = await client.request<{ data?: Record<string, string> }>("GET", objectPath(resourceType("v1", "Secret"), namespace, name));
    return Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
