/** The EngineCluster API: schemas, types, parsing and the Kubernetes object shapes the core uses. */
export * from "./engine-cluster.ts";
export * from "./parse.ts";
export * from "./kube.ts";
export type { CrossFieldRule } from "./validation.ts";
