/**
 * TokenReview and SubjectAccessReview through the project's Kubernetes REST client
 * (src/operator/kube/client.ts: kubeconfig or in-cluster service account, rotating tokens re-read),
 * for the API's `kubernetes` authentication mode.
 */
import type { KubeClient } from "../../operator/kube/client.ts";
import type { KubeReviews, TokenReviewStatus } from "./auth.ts";

const REVIEW_TIMEOUT_MS = 10_000;

export function kubeReviews(client: KubeClient): KubeReviews {
  return {
    async tokenReview(token) {
      const r = await client.request<{ status?: TokenReviewStatus }>("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token } }, timeoutMs: REVIEW_TIMEOUT_MS,
      });
      return r.status ?? {};
    },
    async subjectAccessReview(spec) {
      const r = await client.request<{ status?: { allowed?: boolean; denied?: boolean; reason?: string } }>(
        "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        { body: { apiVersion: "authorization.k8s.io/v1", kind: "SubjectAccessReview", spec }, timeoutMs: REVIEW_TIMEOUT_MS },
      );
      return r.status ?? {};
    },
  };
}
