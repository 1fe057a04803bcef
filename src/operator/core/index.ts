/** The operator's pure core: the planner (observed state → actions + status). */
export * from "./plan.ts";
