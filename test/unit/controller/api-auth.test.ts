// The JSON API's credential checks as pure logic: header parsing, the constant-time token check,
// the Kubernetes decision cache (fed by recorded review answers; the real reviews are exercised
// against a real kube-apiserver in test/integration/http/kubernetes-auth.test.ts) and the
// once-per-interval refusal log.
import { test } from "node:test";
import assert from "node:assert/strict";
import { bearerToken, delegatedReviewer, kubernetesAuth, newApiToken, RefusalLog, tokenAuth, type KubeReviews } from "../../../src/controller/http/auth.ts";

test("newApiToken: 256 random bits, base64url, never twice the same", () => {
  const a = newApiToken();
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(a, "base64url").length, 32);
  assert.notEqual(a, newApiToken());
});

test("bearerToken: missing, malformed and well-formed headers", () => {
  const reason = (h: string | undefined) => { const r = bearerToken(h); return "token" in r ? `token:${r.token}` : r.allowed ? "allowed" : r.reason; };
  assert.equal(reason(undefined), "missing");
  assert.equal(reason(""), "missing");
  assert.equal(reason("  "), "missing");
  assert.equal(reason("Bearer"), "malformed");
  assert.equal(reason("Bearer "), "malformed");
  assert.equal(reason("Basic dXNlcjpwYXNz"), "malformed");
  assert.equal(reason("Bearer short"), "malformed");
  assert.equal(reason("Bearer a b c d e f g h i j k l m n o p"), "malformed");
  assert.equal(reason(`Bearer ${"x".repeat(9000)}`), "malformed");
  const t = newApiToken();
  assert.equal(reason(`Bearer ${t}`), `token:${t}`);
  assert.equal(reason(`bearer  ${t} `), `token:${t}`);
});

test("tokenAuth: only the exact token; 401 reasons for the rest; short tokens refused at start", async () => {
  const t = newApiToken();
  const auth = tokenAuth(t);
  assert.deepEqual(await auth.check(`Bearer ${t}`), { allowed: true, subject: "api-token" });
  for (const [h, reason] of [[undefined, "missing"], [t, "malformed"], [`Bearer ${t}x`, "invalid"], [`Bearer ${t.slice(1)}`, "invalid"], [`Bearer ${newApiToken()}`, "invalid"]] as const) {
    const d = await auth.check(h);
    assert.ok(!d.allowed && d.reason === reason && d.status === 401, `${h}: ${JSON.stringify(d)}`);
    assert.ok(!d.allowed && !d.message.includes(t));
  }
  assert.throws(() => tokenAuth("too-short"));
});

function recordedReviews(users: Record<string, { user: string; allowed: boolean } | "down">): KubeReviews & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async tokenReview(token) {
      calls.push("tokenReview");
      const u = users[token];
      if (u === "down") throw new Error("connection refused");
      return u ? { authenticated: true, user: { username: u.user, groups: ["system:authenticated"] } } : { authenticated: false };
    },
    async subjectAccessReview(spec) {
      calls.push(`sar:${String(spec.user)}:${JSON.stringify(spec.resourceAttributes)}`);
      const u = Object.values(users).find((x) => x !== "down" && x.user === spec.user);
      return { allowed: u !== undefined && u !== "down" && u.allowed };
    },
  };
}

test("kubernetesAuth: the cluster token without any review; a Kubernetes token allowed only when the SubjectAccessReview says so", async () => {
  const token = newApiToken();
  const allowed = "eyJhbGciOiJSUzI1NiJ9.allowed-user-token.sig";
  const denied = "eyJhbGciOiJSUzI1NiJ9.denied-user-token.sig";
  const reviews = recordedReviews({ [allowed]: { user: "system:serviceaccount:sci:alice", allowed: true }, [denied]: { user: "system:serviceaccount:sci:bob", allowed: false } });
  const auth = kubernetesAuth({ token, cluster: { namespace: "sci", name: "psum" }, reviewer: delegatedReviewer(reviews) });
  assert.deepEqual(await auth.check(`Bearer ${token}`), { allowed: true, subject: "api-token" });
  assert.deepEqual(reviews.calls, []);
  assert.deepEqual(await auth.check(`Bearer ${allowed}`), { allowed: true, subject: "system:serviceaccount:sci:alice" });
  assert.equal(reviews.calls[1], 'sar:system:serviceaccount:sci:alice:{"namespace":"sci","name":"psum","verb":"create","group":"ipp.dev","resource":"engineclusters","subresource":"api"}');
  const d = await auth.check(`Bearer ${denied}`);
  assert.ok(!d.allowed && d.status === 403 && d.reason === "forbidden", JSON.stringify(d));
  const u = await auth.check(`Bearer ${"eyJ.unknown-token-value.sig"}`);
  assert.ok(!u.allowed && u.status === 401 && u.reason === "invalid");
});

test("kubernetesAuth: decisions cached briefly (a denial shorter), an unreachable API never cached", async () => {
  let now = 1_000_000;
  const allowed = "eyJhbGciOiJSUzI1NiJ9.allowed-user-token.sig";
  const denied = "eyJhbGciOiJSUzI1NiJ9.denied-user-token.sig";
  const down = "eyJhbGciOiJSUzI1NiJ9.while-api-is-down.sig";
  const reviews = recordedReviews({ [allowed]: { user: "alice", allowed: true }, [denied]: { user: "bob", allowed: false }, [down]: "down" });
  const auth = kubernetesAuth({ token: newApiToken(), cluster: { namespace: "sci", name: "psum" }, reviewer: delegatedReviewer(reviews), allowTtlMs: 30_000, denyTtlMs: 5_000, now: () => now });
  const reviewsFor = async (t: string) => { const n = reviews.calls.length; await auth.check(`Bearer ${t}`); return reviews.calls.length - n; };
  assert.equal(await reviewsFor(allowed), 2);
  assert.equal(await reviewsFor(allowed), 0, "cached");
  assert.equal(await reviewsFor(denied), 2);
  assert.equal(await reviewsFor(denied), 0, "denial cached briefly");
  now += 5_001;
  assert.equal(await reviewsFor(denied), 2, "denial expired after denyTtlMs");
  assert.equal(await reviewsFor(allowed), 0, "allow still cached");
  now += 25_000;
  assert.equal(await reviewsFor(allowed), 2, "allow expired after allowTtlMs");
  const d = await auth.check(`Bearer ${down}`);
  assert.ok(!d.allowed && d.status === 503 && d.reason === "unavailable");
  assert.equal(await reviewsFor(down), 1, "an unavailable review is asked again");
});

test("RefusalLog: the first refusal at once, then at most one line per interval with the counts in between", () => {
  let now = 0;
  const lines: Array<[Record<string, number>, string | undefined]> = [];
  const log = new RefusalLog((c, r) => lines.push([c, r]), 60_000, () => now);
  log.record("missing", "10.0.0.1");
  for (let i = 0; i < 100; i++) { now += 100; log.record(i % 2 ? "invalid" : "missing", "10.0.0.2"); }
  assert.equal(lines.length, 1);
  now = 60_000;
  log.record("malformed", "10.0.0.3");
  assert.deepEqual(lines, [[{ missing: 1 }, "10.0.0.1"], [{ missing: 50, invalid: 50, malformed: 1 }, "10.0.0.3"]]);
});
