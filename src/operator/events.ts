/**
 * Kubernetes Events (core/v1) for an object, aggregated like client-go's recorder: the same
 * (object, type, reason, message) seen again bumps the existing Event's count and lastTimestamp
 * instead of creating a new object. Events are best effort: a failure is logged, never thrown.
 */
import { randomBytes } from "node:crypto";
import { realClock, type Clock } from "./clock.ts";
import { isNotFound, type KubeClient } from "./kube/client.ts";
import { collectionPath, objectPath, resourceType, type KubeObject } from "./kube/resources.ts";
import { silentLogger, type Logger } from "../util/log.ts";

const EVENT = resourceType("v1", "Event");
const CACHE_LIMIT = 4096;

export interface EventRecorder {
  record(obj: KubeObject, type: "Normal" | "Warning", reason: string, message: string): Promise<void>;
}

export interface EventRecorderOptions {
  client: KubeClient;
  component: string;
  instance?: string;
  clock?: Clock;
  logger?: Logger;
  onEmitted?: (type: string) => void;
}

export function createEventRecorder(opts: EventRecorderOptions): EventRecorder {
  const clock = opts.clock ?? realClock;
  const log = opts.logger ?? silentLogger;
  // key → { event name, namespace, count }; insertion order gives a cheap LRU.
  const seen = new Map<string, { name: string; namespace: string; count: number }>();

  return {
    async record(obj, type, reason, message) {
      const m = obj.metadata ?? {};
      const namespace = m.namespace ?? "default";
      const key = [m.uid, type, reason, message].join("\u0000");
      const now = new Date(clock.now()).toISOString().replace(/\.\d+Z$/, "Z");
      try {
        const prev = seen.get(key);
        if (prev) {
          seen.delete(key);
          try {
            await opts.client.request("PATCH", objectPath(EVENT, prev.namespace, prev.name), {
              body: { count: prev.count + 1, lastTimestamp: now },
              contentType: "application/merge-patch+json",
              discardResponse: true,
            });
            seen.set(key, { ...prev, count: prev.count + 1 });
            opts.onEmitted?.(type);
            return;
          } catch (err) {
            if (!isNotFound(err)) throw err;
          }
        }
        const name = `${m.name ?? "object"}.${clock.now().toString(16)}${randomBytes(3).toString("hex")}`;
        await opts.client.request("POST", collectionPath(EVENT, namespace), {
          body: {
            apiVersion: "v1", kind: "Event",
            metadata: { name, namespace },
            involvedObject: {
              apiVersion: obj.apiVersion, kind: obj.kind, name: m.name, namespace: m.namespace,
              uid: m.uid, resourceVersion: m.resourceVersion,
            },
            type, reason, message: message.slice(0, 1024),
            count: 1, firstTimestamp: now, lastTimestamp: now,
            source: { component: opts.component },
            reportingComponent: opts.component,
            reportingInstance: opts.instance ?? opts.component,
          },
          discardResponse: true,
        });
        seen.set(key, { name, namespace, count: 1 });
        if (seen.size > CACHE_LIMIT) seen.delete(seen.keys().next().value!);
        opts.onEmitted?.(type);
      } catch (err) {
        log.warn("event not recorded", { reason, type, object: `${namespace}/${m.name}`, error: err instanceof Error ? err.message : String(err) });
      }
    },
  };
}
