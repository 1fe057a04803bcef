/**
 * Who may call the controller's JSON API (it executes code on the engines, so it needs the same
 * capability as the connection files' HMAC key). Two authenticators:
 *
 * - `tokenAuth`: the cluster's API token (`Authorization: Bearer <token>`), 256 random bits,
 *   compared in constant time (SHA-256 digests of both sides, so the length leaks nothing either);
 * - `kubernetesAuth`: the API token as above, or a Kubernetes bearer token whose user the
 *   Kubernetes API grants the API verb on this EngineCluster (`create` on `engineclusters/api` in
 *   group ipp.dev, in the cluster's namespace). Two reviewers: `delegatedReviewer` (TokenReview +
 *   SubjectAccessReview as the controller's own identity) and `selfReviewer` in ./kube-reviews.ts
 *   (a SelfSubjectAccessReview sent with the caller's token: no RBAC for the controller). Decisions
 *   are cached briefly (allowed: `allowTtlMs`, denied: `denyTtlMs`), keyed by the token's digest;
 *   an unanswered review is never cached.
 *
 * The token is never logged and never part of an error message.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Why a request was refused; also the `reason` label of the failure metric. */
export type AuthFailure = "missing" | "malformed" | "invalid" | "forbidden" | "unavailable";

export type AuthDecision =
  | { allowed: true; subject: string }
  | { allowed: false; reason: AuthFailure; status: 401 | 403 | 503; message: string };

export interface ApiAuth {
  readonly mode: "token" | "kubernetes";
  check(authorization: string | undefined): Promise<AuthDecision>;
}

/** The verb, group, resource and subresource a SubjectAccessReview asks about. */
export const API_ACCESS = { verb: "create", group: "ipp.dev", resource: "engineclusters", subresource: "api" } as const;

/** A fresh API token: 32 random bytes (256 bits), base64url (43 characters, no padding). */
export function newApiToken(): string {
  return randomBytes(32).toString("base64url");
}

/** Tokens we accept on the wire: base64url/base64 or JWT characters, bounded length. */
const TOKEN_SHAPE = /^[A-Za-z0-9._~+/=-]{16,8192}$/;

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

const refuse = (reason: AuthFailure, message: string): AuthDecision => ({
  allowed: false, reason, message,
  status: reason === "forbidden" ? 403 : reason === "unavailable" ? 503 : 401,
});

/** The bearer token of an Authorization header, or why there is none. */
export function bearerToken(header: string | undefined): { token: string } | AuthDecision {
  if (header === undefined || header.trim() === "") {
    return refuse("missing", "this API needs a credential: Authorization: Bearer <token> (the cluster's API token)");
  }
  const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
  if (!m || !TOKEN_SHAPE.test(m[1]!)) return refuse("malformed", "the Authorization header must be 'Bearer <token>'");
  return { token: m[1]! };
}

/** Constant-time check of a presented token against the cluster's. */
export function tokenMatches(presented: string, expectedDigest: Buffer): boolean {
  return timingSafeEqual(digest(presented), expectedDigest);
}

export function tokenAuth(token: string): ApiAuth {
  if (!TOKEN_SHAPE.test(token) || token.length < 32) throw new Error("the API token must be at least 32 characters of base64url");
  const expected = digest(token);
  return {
    mode: "token",
    check: async (header) => {
      const b = bearerToken(header);
      if (!("token" in b)) return b;
      return tokenMatches(b.token, expected) ? { allowed: true, subject: "api-token" } : refuse("invalid", "the token is not valid for this cluster");
    },
  };
}

/** The attributes of a SubjectAccessReview for the API verb on one EngineCluster. */
export type ResourceAttributes = { namespace: string; name: string } & typeof API_ACCESS;

/**
 * Asks the Kubernetes API who a bearer token belongs to and whether that user has the API verb.
 * Throws when the API cannot answer (the request is then refused as `unavailable`, not cached).
 */
export interface TokenReviewer {
  review(token: string, attributes: ResourceAttributes): Promise<{ authenticated: false } | { authenticated: true; user: string; allowed: boolean }>;
}

/** The two review calls of the delegated reviewer, so it does not depend on one HTTP client. */
export interface KubeReviews {
  /** POST authentication.k8s.io/v1 TokenReview; returns the review's status. */
  tokenReview(token: string): Promise<TokenReviewStatus>;
  /** POST authorization.k8s.io/v1 SubjectAccessReview; returns the review's status. */
  subjectAccessReview(spec: Record<string, unknown>): Promise<{ allowed?: boolean; denied?: boolean; reason?: string }>;
}

export interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  error?: string;
}

/**
 * The controller's own identity reviews the caller: a TokenReview authenticates the token, a
 * SubjectAccessReview for that user decides. The controller needs `create` on tokenreviews and
 * subjectaccessreviews (the system:auth-delegator ClusterRole).
 */
export function delegatedReviewer(reviews: KubeReviews): TokenReviewer {
  return {
    async review(token, attributes) {
      const tr = await reviews.tokenReview(token);
      const user = tr.user;
      if (!tr.authenticated || user?.username === undefined || user.username === "") return { authenticated: false };
      const sar = await reviews.subjectAccessReview({
        user: user.username,
        ...(user.uid ? { uid: user.uid } : {}),
        ...(user.groups ? { groups: user.groups } : {}),
        ...(user.extra ? { extra: user.extra } : {}),
        resourceAttributes: attributes,
      });
      return { authenticated: true, user: user.username, allowed: sar.allowed === true };
    },
  };
}

export interface KubernetesAuthOptions {
  /** The cluster's API token, accepted as in token mode. */
  token: string;
  /** The EngineCluster whose `engineclusters/api` the caller needs. */
  cluster: { namespace: string; name: string };
  reviewer: TokenReviewer;
  allowTtlMs?: number;
  denyTtlMs?: number;
  /** Cached decisions at most (oldest dropped first). */
  maxCached?: number;
  now?: () => number;
}

export function kubernetesAuth(o: KubernetesAuthOptions): ApiAuth {
  const clusterToken = tokenAuth(o.token);
  const expected = digest(o.token);
  const allowTtl = o.allowTtlMs ?? 30_000;
  const denyTtl = o.denyTtlMs ?? 5_000;
  const maxCached = o.maxCached ?? 1024;
  const now = o.now ?? Date.now;
  const cache = new Map<string, { decision: AuthDecision; until: number }>();
  const attributes: ResourceAttributes = { namespace: o.cluster.namespace, name: o.cluster.name, ...API_ACCESS };
  const what = `${API_ACCESS.verb} ${API_ACCESS.resource}/${API_ACCESS.subresource} of ${o.cluster.namespace}/${o.cluster.name} (group ${API_ACCESS.group})`;

  const review = async (token: string): Promise<AuthDecision> => {
    let r: Awaited<ReturnType<TokenReviewer["review"]>>;
    try {
      r = await o.reviewer.review(token, attributes);
    } catch (err) {
      return refuse("unavailable", `cannot check the token with the Kubernetes API: ${errorText(err)}`);
    }
    if (!r.authenticated) return refuse("invalid", "the Kubernetes API did not authenticate this token");
    if (!r.allowed) return refuse("forbidden", `${r.user} may not ${what}`);
    return { allowed: true, subject: r.user };
  };

  return {
    mode: "kubernetes",
    check: async (header) => {
      const b = bearerToken(header);
      if (!("token" in b)) return b;
      if (tokenMatches(b.token, expected)) return clusterToken.check(header);
      const key = digest(b.token).toString("hex");
      const t = now();
      const hit = cache.get(key);
      if (hit && hit.until > t) return hit.decision;
      const decision = await review(b.token);
      if (decision.allowed || decision.reason !== "unavailable") {
        cache.delete(key);
        cache.set(key, { decision, until: t + (decision.allowed ? allowTtl : denyTtl) });
        while (cache.size > maxCached) cache.delete(cache.keys().next().value!);
      }
      return decision;
    },
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Counts refused requests and logs them at most once per interval: the first refusal is logged at
 * once, later ones are summed into the next line. Never given the token.
 */
export class RefusalLog {
  private pending = new Map<AuthFailure, number>();
  private last = -Infinity;

  constructor(
    private readonly emit: (counts: Record<string, number>, lastRemote: string | undefined) => void,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  record(reason: AuthFailure, remote: string | undefined): void {
    this.pending.set(reason, (this.pending.get(reason) ?? 0) + 1);
    const t = this.now();
    if (t - this.last < this.intervalMs) return;
    this.last = t;
    const counts = Object.fromEntries(this.pending);
    this.pending.clear();
    this.emit(counts, remote);
  }
}
