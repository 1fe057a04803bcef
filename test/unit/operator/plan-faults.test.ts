/**
 * The planner's answers to the faults a site hits (pure): a deleted pbs cluster whose login host or
 * credentials are gone reports it, retries with backoff and lets go after the grace period or at
 * once with the abandon annotation (naming the jobs that may still run); a missing credentials
 * Secret is looked for again with backoff; key Secrets not yet observed are created, never applied.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ABANDON_JOBS_ANNOTATION, backoffSince, DEFAULT_PBS_DELETION_GRACE_SECONDS, DELETION_RETRY_MAX_MS, DELETION_RETRY_MIN_MS, FINALIZER,
  plan, type Action, type KubeObject, type Observed, type Plan,
} from "../../../src/operator/core/plan.ts";
import { MATERIAL, rawCluster } from "../backends/mpi/fixtures.ts";

type J = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const DELETED_AT = "2026-02-01T10:00:00Z";
const at = (sec: number) => new Date(Date.parse(DELETED_AT) + sec * 1000);

const spec = () => ({
  engines: 4,
  backend: { pbs: { host: "login01", user: "alice", credentialsSecret: "hpc-ssh", dialect: "slurm", queue: "batch", network: { mode: "direct", address: "10.1.2.3" } } },
});
const of = <T extends Action["type"]>(p: Plan, t: T) => p.actions.filter((a): a is Extract<Action, { type: T }> => a.type === t);
const cond = (s: J | undefined, t: string) => s?.conditions?.find((c: J) => c.type === t);
const running = { phase: "Starting", conditions: [], pbs: { jobs: [{ id: "41", role: "engines", state: "R" }, { id: "39", role: "engines", state: "C" }] } };

function deleting(extraMeta: J = {}, status: J = running): J {
  const c = rawCluster(spec()) as J;
  return { ...c, metadata: { ...c.metadata, finalizers: [FINALIZER], deletionTimestamp: DELETED_AT, ...extraMeta }, status };
}
const observe = (cluster: unknown, now: Date, extra: Partial<Observed> = {}): Observed =>
  ({ cluster, owned: [] as KubeObject[], generated: { ...MATERIAL }, now, secrets: { "hpc-ssh": false }, pbs: { error: "Secret hpc-ssh not found" }, ...extra });

test("backoffSince: as long again as the problem lasted, between the bounds", () => {
  const now = new Date("2026-02-01T10:00:10Z");
  assert.equal(backoffSince(undefined, now, 2_000, 60_000), 2_000);
  assert.equal(backoffSince("2026-02-01T10:00:09Z", now, 2_000, 60_000), 2_000);
  assert.equal(backoffSince("2026-02-01T10:00:00Z", now, 2_000, 60_000), 10_000);
  assert.equal(backoffSince("2026-02-01T09:00:00Z", now, 2_000, 60_000), 60_000);
  assert.equal(backoffSince("not a time", now, 2_000, 60_000), 2_000);
});

test("deletion with the credentials Secret gone: Degraded/CredentialsNotFound + Warning, finalizer kept, retried with growing backoff", () => {
  const p = plan(observe(deleting(), at(5)));
  const s = p.status as J;
  assert.equal(s.phase, "Terminating");
  assert.equal(cond(s, "Degraded").status, "True");
  assert.equal(cond(s, "Degraded").reason, "CredentialsNotFound");
  assert.match(cond(s, "Degraded").message, /credentials Secret hpc-ssh is gone/);
  assert.match(cond(s, "Degraded").message, /job\(s\) 41 may still be running on alice@login01/);
  assert.match(cond(s, "Degraded").message, /ipp\.dev\/abandon-jobs=true/);
  const warnings = of(p, "event").filter((e) => e.eventType === "Warning");
  assert.deepEqual(warnings.map((e) => e.reason), ["CredentialsNotFound"]);
  assert.equal(of(p, "removeFinalizer").length + of(p, "delete").length + of(p, "pbsQdel").length, 0);
  assert.equal(p.requeueAfterMs, DELETION_RETRY_MIN_MS);
  // later: the same condition (no new Event), a longer wait
  const later = plan(observe(deleting({}, s), at(65)));
  assert.equal(of(later, "event").filter((e) => e.eventType === "Warning").length, 0);
  assert.equal(later.requeueAfterMs, Math.min(DELETION_RETRY_MAX_MS, 60_000));
  assert.equal(of(later, "removeFinalizer").length, 0);
  // the retry never sleeps past the end of the grace period
  const nearEnd = plan(observe(deleting({}, s), at(DEFAULT_PBS_DELETION_GRACE_SECONDS - 3)));
  assert.ok(nearEnd.requeueAfterMs! <= 3_000, String(nearEnd.requeueAfterMs));
});

test("deletion with the host unreachable (Secret present): Degraded/SchedulerUnreachable", () => {
  const p = plan(observe(deleting(), at(1), { secrets: { "hpc-ssh": true }, pbs: { error: "connect ECONNREFUSED 10.0.0.9:22" } }));
  assert.equal(cond(p.status as J, "Degraded").reason, "SchedulerUnreachable");
  assert.match(cond(p.status as J, "Degraded").message, /ECONNREFUSED/);
});

test("grace period over: a Warning JobsAbandoned naming the job ids, then the generic deletion removes the finalizer", () => {
  const p = plan(observe(deleting(), at(DEFAULT_PBS_DELETION_GRACE_SECONDS)));
  const [ev] = of(p, "event").filter((e) => e.reason === "JobsAbandoned");
  assert.ok(ev !== undefined);
  assert.equal(ev.eventType, "Warning");
  assert.match(ev.message, /grace period of 600 s is over/);
  assert.match(ev.message, /job\(s\) 41 may still be running/);
  assert.doesNotMatch(ev.message, /\b39\b/, "an ended job is not named");
  const s = p.status as J;
  assert.equal(cond(s, "Submitted").reason, "JobsAbandoned");
  // the next reconcile goes on with the generic deletion: nothing owned left → finalizer goes
  const next = plan(observe(deleting({}, s), at(DEFAULT_PBS_DELETION_GRACE_SECONDS + 1)));
  assert.deepEqual(next.actions, [{ type: "removeFinalizer" }]);
});

test("a configured grace period, and the annotation that lets go at once", () => {
  const short = plan(observe(deleting(), at(30), { config: { pbsDeletionGraceSeconds: 30 } }));
  assert.equal(cond(short.status as J, "Submitted").reason, "JobsAbandoned");
  const byUser = plan(observe(deleting({ annotations: { [ABANDON_JOBS_ANNOTATION]: "true" } }), at(1)));
  const [ev] = of(byUser, "event").filter((e) => e.reason === "JobsAbandoned");
  assert.match(ev!.message, /annotation ipp\.dev\/abandon-jobs=true is set/);
  assert.match(ev!.message, /41/);
  const notTrue = plan(observe(deleting({ annotations: { [ABANDON_JOBS_ANNOTATION]: "yes" } }), at(1)));
  assert.equal(of(notTrue, "event").filter((e) => e.reason === "JobsAbandoned").length, 0);
});

test("the host answers again during deletion: qdel goes ahead and Degraded clears", () => {
  const blocked = plan(observe(deleting(), at(5))).status as J;
  const p = plan(observe(deleting({}, blocked), at(20), { secrets: { "hpc-ssh": true }, pbs: { dialect: "slurm", jobs: [{ id: "41", name: "x", owner: "alice", state: "R", phase: "running" }] } }));
  assert.deepEqual(of(p, "pbsQdel"), [{ type: "pbsQdel", ids: ["41"], why: "deleting" }]);
  assert.equal(cond(p.status as J, "Degraded").status, "False");
});

test("a missing credentials Secret (not deleting) is looked for again with backoff", () => {
  const c = rawCluster(spec()) as J;
  const live = { ...c, metadata: { ...c.metadata, finalizers: [FINALIZER] } };
  const p = plan(observe(live, at(0)));
  assert.equal(cond(p.status as J, "Degraded").reason, "SecretNotFound");
  assert.equal(p.requeueAfterMs, 1_000);
  const later = plan(observe({ ...live, status: p.status }, at(40)));
  assert.equal(later.requeueAfterMs, 40_000);
});

test("mpi: key Secrets the cache doesn't show are created, never applied; once observed they are applied", () => {
  const c = rawCluster({ engines: 2, backend: { mpi: { image: "ghcr.io/example/ipp-engine:1.0" } } }) as J;
  const live = { ...c, metadata: { ...c.metadata, finalizers: [FINALIZER] } };
  const first = plan({ cluster: live, owned: [], generated: { ...MATERIAL }, now: at(0) });
  const secrets = first.actions.filter((a) => (a.type === "apply" || a.type === "create") && a.object.kind === "Secret");
  assert.deepEqual(secrets.map((a) => a.type), ["create", "create"]);
  const owned = first.actions.flatMap((a) => (a.type === "apply" || a.type === "create" ? [a.object] : []));
  const second = plan({ cluster: live, owned, generated: { ...MATERIAL, hmacKey: "another" }, now: at(1) });
  assert.equal(second.actions.filter((a) => a.type === "create").length, 0);
  const conn = second.actions.find((a) => a.type === "apply" && a.object.kind === "Secret" && a.object.metadata.name.endsWith("-connection"));
  assert.ok(conn !== undefined && conn.type === "apply");
  // the observed keys are kept, the freshly generated ones ignored
  assert.deepEqual(conn.object.data, owned.find((o) => o.metadata.name.endsWith("-connection"))!.data);
});
