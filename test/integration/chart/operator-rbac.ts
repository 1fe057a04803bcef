/**
 * Every API call the operator makes (src/operator): EngineClusters listed/watched, finalizers
 * patched, status replaced through the subresource (PUT); finalizers/update for owner references
 * that block owner deletion; owned objects server-side applied (create + patch), listed/watched and
 * deleted; pods watched; events created and their counts patched. rbac.test.ts runs the real
 * operator with exactly these rules and fails on any forbidden request.
 */
export const OPERATOR_RULES: Record<string, string[]> = {
  "ipp.dev/engineclusters": ["get", "list", "watch", "patch"],
  "ipp.dev/engineclusters/status": ["update"],
  "ipp.dev/engineclusters/finalizers": ["update"],
  "apps/deployments": ["get", "list", "watch", "create", "patch", "delete"],
  "apps/statefulsets": ["get", "list", "watch", "create", "patch", "delete"],
  "/services": ["get", "list", "watch", "create", "patch", "delete"],
  "/secrets": ["get", "list", "watch", "create", "patch", "delete"],
  "/configmaps": ["get", "list", "watch", "create", "patch", "delete"],
  "batch/jobs": ["get", "list", "watch", "create", "patch", "delete"],
  "networking.k8s.io/networkpolicies": ["get", "list", "watch", "create", "patch", "delete"],
  "/pods": ["get", "list", "watch"],
  "/events": ["create", "patch"],
};
export const LEASE_RULES: Record<string, string[]> = { "coordination.k8s.io/leases": ["get", "create", "update"] };
