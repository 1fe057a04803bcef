/**
 * Turn an unknown object (as read from the API server) into a typed EngineCluster, or a list of
 * field errors. The operator uses the errors for the Degraded path: objects that admission let
 * through (created before a rule existed, or by a client that skipped validation) are reported in
 * status, never crash the reconciler.
 */
import type { z } from "zod";
import { API_VERSION, EngineCluster, EngineClusterSpec, KIND } from "./engine-cluster.ts";

export interface FieldError {
  /** Dotted path from the object's root, e.g. `spec.backend.pbs.queue` or `spec.backend.mpi.env[2].name`. */
  field: string;
  message: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out === "" ? String(seg) : `.${String(seg)}`;
  }
  return out === "" ? "(root)" : out;
}

function toFieldErrors(error: z.ZodError, prefix: PropertyKey[]): FieldError[] {
  const seen = new Set<string>();
  const out: FieldError[] = [];
  for (const issue of error.issues) {
    const field = formatPath([...prefix, ...issue.path]);
    // Messages of cross-field rules already name their field; don't repeat it.
    const message = issue.message;
    const key = `${field}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ field, message });
  }
  return out;
}

/** Parse a whole EngineCluster object (apiVersion, kind, metadata, spec, status). */
export function parseEngineCluster(obj: unknown): ParseResult<EngineCluster> {
  const r = EngineCluster.safeParse(obj);
  if (r.success) return { ok: true, value: r.data };
  return { ok: false, errors: toFieldErrors(r.error, []) };
}

/** Parse only a spec; errors are reported from the object's root (`spec.…`). */
export function parseSpec(spec: unknown): ParseResult<EngineClusterSpec> {
  const r = EngineClusterSpec.safeParse(spec);
  if (r.success) return { ok: true, value: r.data };
  return { ok: false, errors: toFieldErrors(r.error, ["spec"]) };
}

/** One line naming every field error, for a condition message or an Event. */
export function describeErrors(errors: FieldError[], max = 5): string {
  const shown = errors.slice(0, max).map((e) => `${e.field}: ${e.message}`);
  if (errors.length > max) shown.push(`and ${errors.length - max} more`);
  return shown.join("; ");
}

export const isEngineClusterKind = (obj: { apiVersion?: unknown; kind?: unknown }): boolean =>
  obj.apiVersion === API_VERSION && obj.kind === KIND;
