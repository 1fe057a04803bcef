/** The pure planner of src/operator/core, as the runtime's Planner. */
import { planner, type Observed } from "./core/index.ts";
import type { Planner } from "./reconciler.ts";

export const corePlanner: Planner = {
  finalizer: planner.finalizer,
  // Objects read from the API (informer caches) always carry apiVersion, kind and metadata, which
  // the runtime's looser KubeObject type leaves optional.
  plan: (observed) => planner.plan(observed as Observed),
  referencedSecrets: (cluster) => planner.referencedSecrets(cluster as Observed["owned"][number]),
};
