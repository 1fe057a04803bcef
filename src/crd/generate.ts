/**
 * The EngineCluster CustomResourceDefinition, generated from the zod schemas in src/api (pure:
 * schemas in, CRD object out). zod's OpenAPI 3.0 output is post-processed into a structural schema
 * the API server accepts: no `$schema`/`$ref`/`definitions`, no `additionalProperties` beside
 * `properties`, no ±2^53 integer bounds, and int-or-string unions in the Kubernetes form.
 * `checkStructural` enforces those rules so a schema change that breaks them fails the tests.
 */
import { z } from "zod";
import { stringify } from "yaml";
import {
  API_VERSION, CATEGORIES, NAME_RULE, EngineClusterSpec, EngineClusterStatus, GROUP, KIND, LIST_KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION,
} from "../api/engine-cluster.ts";

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function jsonSchemaOf(schema: z.ZodType): Json {
  return z.toJSONSchema(schema, { target: "openapi-3.0", io: "input", reused: "inline", cycles: "throw" }) as Json;
}

const SAFE = Number.MAX_SAFE_INTEGER;

/** Rewrite one zod-emitted node (children first) into its structural form. */
function toStructural(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toStructural);
  if (!isObj(node)) return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === "$schema" || k === "$id") continue;
    if (k === "properties" && isObj(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([name, child]) => [name, toStructural(child)]));
    } else if (k === "items" || k === "additionalProperties" || k === "anyOf") {
      out[k] = toStructural(v);
    } else {
      out[k] = v; // keywords and data (enum, default, required, x-kubernetes-*) verbatim
    }
  }
  // z.int() bounds at ±2^53: meaningless for the API server; drop them.
  if (out.type === "integer") {
    if (out.minimum === -SAFE) delete out.minimum;
    if (out.maximum === SAFE) delete out.maximum;
  }
  // int | string → the Kubernetes int-or-string form (e.g. resource quantities).
  if (Array.isArray(out.anyOf) && out.anyOf.length === 2) {
    const [a, b] = out.anyOf as Json[];
    const types = new Set([a?.type, b?.type]);
    if (types.has("integer") && types.has("string")) {
      const str = (a?.type === "string" ? a : b) as Json;
      delete out.anyOf;
      Object.assign(out, {
        "x-kubernetes-int-or-string": true,
        anyOf: [{ type: "integer" }, { type: "string" }],
        ...(str.pattern !== undefined ? { pattern: str.pattern } : {}),
      });
    }
  }
  // An object with properties must not also carry additionalProperties.
  if (out.properties !== undefined && out.additionalProperties !== undefined) delete out.additionalProperties;
  if (Array.isArray(out.required) && out.required.length === 0) delete out.required;
  return out;
}

/** Throws if `schema` breaks a rule of Kubernetes structural schemas that zod output can break. */
export function checkStructural(schema: unknown, path = "openAPIV3Schema"): void {
  if (Array.isArray(schema)) { schema.forEach((s, i) => checkStructural(s, `${path}[${i}]`)); return; }
  if (!isObj(schema)) return;
  for (const bad of ["$ref", "$schema", "definitions", "$defs", "oneOf", "allOf", "not"]) {
    if (bad in schema) throw new Error(`${path}: ${bad} is not allowed in a structural schema`);
  }
  if (schema.type === "null") throw new Error(`${path}: type null is not allowed`);
  if (schema.properties !== undefined && schema.additionalProperties !== undefined) {
    throw new Error(`${path}: additionalProperties beside properties`);
  }
  if (schema.anyOf !== undefined && schema["x-kubernetes-int-or-string"] !== true) {
    throw new Error(`${path}: anyOf is only allowed for int-or-string`);
  }
  const hasType = schema.type !== undefined || schema["x-kubernetes-int-or-string"] === true || schema["x-kubernetes-preserve-unknown-fields"] === true;
  if (!hasType && path !== "openAPIV3Schema") throw new Error(`${path}: every node needs a type`);
  if (isObj(schema.properties)) for (const [k, v] of Object.entries(schema.properties)) checkStructural(v, `${path}.${k}`);
  if (isObj(schema.additionalProperties)) checkStructural(schema.additionalProperties, `${path}.*`);
  if (isObj(schema.items)) checkStructural(schema.items, `${path}[]`);
}

export const PRINTER_COLUMNS = [
  { name: "Backend", type: "string", jsonPath: ".status.backend", description: "mpi or pbs" },
  { name: "Desired", type: "integer", jsonPath: ".spec.engines", description: "Engines asked for" },
  { name: "Ready", type: "integer", jsonPath: ".status.engines.registered", description: "Engines registered with the controller" },
  { name: "Phase", type: "string", jsonPath: ".status.phase" },
  { name: "Reason", type: "string", jsonPath: ".status.reason", description: "Why the cluster is not Ready (empty when Ready)" },
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
];

export interface Crd {
  apiVersion: "apiextensions.k8s.io/v1";
  kind: "CustomResourceDefinition";
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: Json;
}

/** The CRD object (pure). */
export function engineClusterCrd(): Crd {
  const spec = toStructural(jsonSchemaOf(EngineClusterSpec)) as Json;
  const status = toStructural(jsonSchemaOf(EngineClusterStatus)) as Json;
  const openAPIV3Schema: Json = {
    description: `${KIND} runs an ipyparallel cluster: our controller plus N engines sharing one MPI world, on Kubernetes pods (mpi) or an HPC batch scheduler (pbs).`,
    type: "object",
    properties: {
      apiVersion: { type: "string", description: "APIVersion defines the versioned schema of this representation of an object." },
      kind: { type: "string", description: "Kind is a string value representing the REST resource this object represents." },
      metadata: { type: "object" },
      spec,
      status,
    },
    required: ["spec"],
    "x-kubernetes-validations": [NAME_RULE],
  };
  checkStructural(openAPIV3Schema);
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      names: { kind: KIND, listKind: LIST_KIND, plural: PLURAL, singular: SINGULAR, shortNames: SHORT_NAMES, categories: CATEGORIES },
      scope: "Namespaced",
      versions: [{
        name: VERSION,
        served: true,
        storage: true,
        schema: { openAPIV3Schema },
        subresources: {
          status: {},
          scale: { specReplicasPath: ".spec.engines", statusReplicasPath: ".status.engines.registered" },
        },
        additionalPrinterColumns: PRINTER_COLUMNS,
      }],
    },
  };
}

const HEADER = `# Generated from src/api by scripts/gen-crd.ts (${API_VERSION} ${KIND}). Do not edit: run \`npx tsx scripts/gen-crd.ts\`.\n`;

/** The CRD as YAML (the committed crds/ file and `ipp-operator crd` output). */
export function renderCrdYaml(): string {
  return HEADER + stringify(engineClusterCrd(), { lineWidth: 0, aliasDuplicateObjects: false });
}

/**
 * Paths the generator writes, relative to the repository root, and what goes in each. The chart's
 * CRD template is the same YAML passed through `toChartTemplate` (src/chart/crd-template.ts), so
 * both files come from one function.
 */
export function generatedFiles(options: { toChartTemplate?: (crdYaml: string) => string }): { path: string; content: string }[] {
  const yaml = renderCrdYaml();
  const files = [{ path: CRD_PATH, content: yaml }];
  if (options.toChartTemplate !== undefined) files.push({ path: CHART_CRD_PATH, content: options.toChartTemplate(yaml) });
  return files;
}

export const CRD_PATH = "crds/ipp.dev_engineclusters.yaml";
export const CHART_CRD_PATH = "charts/ipp-operator/templates/crd.yaml";
