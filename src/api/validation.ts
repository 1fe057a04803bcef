/**
 * Cross-field rules that a structural schema cannot express. Each rule is written twice, side by
 * side: as CEL (for the API server's admission, emitted into the CRD as `x-kubernetes-validations`)
 * and as a JavaScript predicate (for `parseEngineCluster`, which catches what admission missed, e.g.
 * objects created before a rule existed). Tests check that both agree on the same fixtures.
 */
import type { z } from "zod";

export interface CrossFieldRule<T> {
  /** CEL expression over `self` (the object the rule is attached to). */
  rule: string;
  /** Message shown by the API server and by parseEngineCluster; names the field. */
  message: string;
  /** JSONPath of the offending field, relative to `self` (as the CRD's `fieldPath`), e.g. `.workers`. */
  fieldPath?: string;
  /** The field's path relative to `self`, for zod issues (mirrors fieldPath). */
  path?: (string | number)[];
  /** `FieldValueInvalid` (default), `FieldValueRequired`, `FieldValueForbidden`, `FieldValueDuplicate`. */
  reason?: "FieldValueInvalid" | "FieldValueRequired" | "FieldValueForbidden" | "FieldValueDuplicate";
  /** The same rule in JavaScript, evaluated on the parsed value (defaults applied). */
  check: (self: T) => boolean;
}

/** The CRD form of a rule list. */
export function celValidations<T>(rules: CrossFieldRule<T>[]): Record<string, unknown>[] {
  return rules.map((r) => ({
    rule: r.rule,
    message: r.message,
    ...(r.fieldPath !== undefined ? { fieldPath: r.fieldPath } : {}),
    ...(r.reason !== undefined ? { reason: r.reason } : {}),
  }));
}

/**
 * Attach rules to a zod object schema: a superRefine that reports each broken rule at its path, and
 * the CEL form as metadata that the CRD generator copies into `x-kubernetes-validations`.
 */
export function withRules<S extends z.ZodType>(schema: S, rules: CrossFieldRule<z.output<S>>[], description: string): S {
  const refined = schema.superRefine((value, ctx) => {
    for (const r of rules) {
      if (!r.check(value)) ctx.addIssue({ code: "custom", message: r.message, path: r.path ?? [], input: value });
    }
  });
  return refined.meta({ description, "x-kubernetes-validations": celValidations(rules) }) as S;
}
