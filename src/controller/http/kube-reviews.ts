/**
 * The Kubernetes reviews behind the API's `kubernetes` authentication mode, through the project's
 * Kubernetes REST client (src/operator/kube/client.ts):
 *
 * - `kubeReviews`: TokenReview and SubjectAccessReview as the controller's own identity (kubeconfig
 *   or in-cluster service account), for `delegatedReviewer`;
 * - `selfReviewer`: a SelfSubjectAccessReview sent with the caller's own token. The API server
 *   authenticates the token (401: not a valid token) and answers for that user; every
 *   authenticated user may ask (system:basic-user), so the controller needs no credential, only
 *   the API server's address and CA.
 */
import { createKubeClient, KubeApiError, type KubeClient } from "../../operator/kube/client.ts";
import type { KubeReviews, TokenReviewer, TokenReviewStatus } from "./auth.ts";

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

/** Where the API server is, without any credential of the controller's. */
export interface ApiServerAddress { server: string; ca?: Buffer; tlsServerName?: string; insecureSkipTLSVerify?: boolean }

export function selfReviewer(address: ApiServerAddress): TokenReviewer {
  return {
    async review(token, attributes) {
      const client = createKubeClient({ ...address, headers: async () => ({ Authorization: `Bearer ${token}` }) }, { maxSockets: 1 });
      try {
        const r = await client.request<{ status?: { allowed?: boolean } }>("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
          body: { apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectAccessReview", spec: { resourceAttributes: attributes } },
          timeoutMs: REVIEW_TIMEOUT_MS,
        });
        return { authenticated: true, user: "the token's user", allowed: r.status?.allowed === true };
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 401) return { authenticated: false };
        throw err;
      } finally {
        client.close();
      }
    },
  };
}
