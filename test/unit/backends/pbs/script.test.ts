import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import fc from "fast-check";
import { PbsBackend } from "../../../../src/api/engine-cluster.ts";
import { dialects } from "../../../../src/backends/pbs/core/dialects.ts";
import { fingerprint, parseKnownHosts, verifyHostKey } from "../../../../src/backends/pbs/core/known-hosts.ts";
import { shJoin, shQuote } from "../../../../src/backends/pbs/core/quote.ts";
import { clusterTag, jobName, renderScript, ScriptError, type JobInput } from "../../../../src/backends/pbs/core/script.ts";
import { createHmac } from "node:crypto";

const pbs = (extra: Record<string, unknown> = {}) => PbsBackend.parse({ host: "login01", user: "alice", credentialsSecret: "hpc-ssh", ...extra });
const conn = JSON.stringify({ interface: "tcp://10.0.0.5", registration: 5000, key: "k'ey" });

test("shQuote: plain words stay, everything else single-quoted; the shell reads back the value", () => {
  assert.equal(shQuote("batch"), "batch");
  assert.equal(shQuote("a b"), "'a b'");
  assert.equal(shQuote(""), "''");
  assert.equal(shQuote("it's"), `'it'\\''s'`);
  assert.equal(shJoin(["qdel", "12", "$(touch x)"]), "qdel 12 '$(touch x)'");
  fc.assert(fc.property(fc.string({ maxLength: 40 }).filter((s) => !s.includes("\0")), (s) => {
    const r = spawnSync("/bin/sh", ["-c", `printf %s ${shQuote(s)}`], { encoding: "utf8" });
    return r.stdout === s;
  }), { numRuns: 60 });
});

test("job name: deterministic, 15 characters, changes with the job's shape only", () => {
  const tag = clusterTag({ namespace: "default", name: "psum", uid: "u1" });
  assert.match(tag, /^[0-9a-f]{5}$/);
  assert.notEqual(tag, clusterTag({ namespace: "default", name: "psum", uid: "u2" }));
  const j: JobInput = { engines: 8, pbs: pbs({ queue: "batch" }), engineConnection: conn };
  const n = jobName(tag, j);
  assert.match(n, /^ipp-[0-9a-f]{5}-[0-9a-f]{5}$/);
  assert.equal(n.length, 15);
  assert.equal(jobName(tag, { ...j }), n);
  assert.notEqual(jobName(tag, { ...j, engines: 16 }), n, "scale change → new name");
  const c = JSON.parse(conn) as Record<string, unknown>;
  assert.notEqual(jobName(tag, { ...j, engineConnection: JSON.stringify({ ...c, key: "another-key" }) }), n, "new controller → new name");
  assert.equal(jobName(tag, { ...j, engineConnection: JSON.stringify({ ...c, interface: "tcp://203.0.113.9", location: "203.0.113.9" }) }), n, "a new controller address is for the next job, not a reason to resubmit");
  assert.equal(jobName(tag, { ...j, pbs: { ...j.pbs, network: { ...j.pbs.network, address: "10.9.9.9" } } }), n);
  assert.equal(jobName(tag, { ...j, pbs: { ...j.pbs, resubmitOnWalltime: false, port: 2222 } }), n, "where from and the resubmit policy don't shape the job");
});

test("script: directives in order, then modules, setup, connection info and mpiexec", () => {
  const j: JobInput = {
    engines: 8,
    pbs: pbs({ queue: "debug", walltime: "01:00:00", account: "proj42", nodes: 2, ppn: 4, modules: ["gcc/12", "openmpi"], setup: ["source /opt/ipp/bin/activate", "export OMP_NUM_THREADS=1"], extraDirectives: ["-m abe", "-l mem=4gb"] }),
    engineConnection: conn,
  };
  const s = renderScript(dialects.torque, "ipp-aaaaa-bbbbb", j, "default/psum");
  assert.equal(s, [
    "#!/bin/bash",
    "# ipp-operator: engines of EngineCluster default/psum",
    "#PBS -V",
    "#PBS -N ipp-aaaaa-bbbbb",
    "#PBS -q debug",
    "#PBS -l walltime=01:00:00",
    "#PBS -A proj42",
    "#PBS -l nodes=2:ppn=4",
    "#PBS -m abe",
    "#PBS -l mem=4gb",
    "",
    "module load gcc/12",
    "module load openmpi",
    "source /opt/ipp/bin/activate",
    "export OMP_NUM_THREADS=1",
    `export IPP_CONNECTION_INFO='{"interface":"tcp://10.0.0.5","registration":5000,"key":"k'\\''ey"}'`,
    "exec mpiexec -n 8 ipengine --mpi --log-level=WARN",
    "",
  ].join("\n"));
  // the exported value reads back exactly
  const r = spawnSync("/bin/bash", ["-c", `${s.split("\n").find((l) => l.startsWith("export IPP_CONNECTION_INFO"))}; printf %s "$IPP_CONNECTION_INFO"`], { encoding: "utf8" });
  assert.equal(r.stdout, conn);
});

test("script: resources default per dialect; select for PBS Pro", () => {
  const j: JobInput = { engines: 4, pbs: pbs(), engineConnection: "{}" };
  assert.match(renderScript(dialects.pbspro, "n", j, "c"), /^#PBS -l select=1:ncpus=4:mpiprocs=4$/m);
  assert.match(renderScript(dialects.slurm, "n", j, "c"), /^#PBS -l nodes=1:ppn=4$/m);
  assert.match(renderScript(dialects.pbspro, "n", { ...j, pbs: pbs({ select: "2:ncpus=2:mpiprocs=2" }) }, "c"), /^#PBS -l select=2:ncpus=2:mpiprocs=2$/m);
  assert.match(renderScript(dialects.torque, "n", { ...j, pbs: pbs({ ppn: 2 }) }, "c"), /^#PBS -l nodes=2:ppn=2$/m);
});

test("script: a value with shell metacharacters that bypassed the schema is refused, not rendered", () => {
  const base = pbs();
  const j = (p: object): JobInput => ({ engines: 2, pbs: { ...base, ...p }, engineConnection: "{}" });
  for (const bad of [{ queue: "batch;touch /tmp/x" }, { modules: ["x$(id)"] }, { setup: ["echo hi > /tmp/x"] }, { extraDirectives: ["-l mem=1gb\n/bin/true"] }, { account: "a`id`" }, { walltime: "1:00;id" }]) {
    assert.throws(() => renderScript(dialects.slurm, "n", j(bad), "c"), ScriptError, JSON.stringify(bad));
  }
});

test("known_hosts: plain, [host]:port, hashed, wildcard, revoked; mismatch and unknown host are refused", () => {
  const key = Buffer.from("ssh-ed25519-key-blob-A");
  const other = Buffer.from("ssh-ed25519-key-blob-B");
  const b64 = key.toString("base64");
  const salt = Buffer.from("0123456789abcdefghij");
  const hashed = `|1|${salt.toString("base64")}|${createHmac("sha1", salt).update("[login.hpc]:2200").digest("base64")}`;
  const kh = parseKnownHosts([
    "# comment",
    `[127.0.0.1]:22522 ssh-ed25519 ${b64}`,
    `login01,login02 ssh-ed25519 ${b64} comment`,
    `${hashed} ssh-ed25519 ${b64}`,
    `*.example.org,!bad.example.org ssh-ed25519 ${b64}`,
    `@revoked login02 ssh-ed25519 ${other.toString("base64")}`,
  ].join("\n"));
  assert.deepEqual(verifyHostKey(kh, "127.0.0.1", 22522, key), { ok: true });
  assert.deepEqual(verifyHostKey(kh, "login02", 22, key), { ok: true });
  assert.deepEqual(verifyHostKey(kh, "login.hpc", 2200, key), { ok: true });
  assert.deepEqual(verifyHostKey(kh, "n1.example.org", 22, key), { ok: true });
  const bad = verifyHostKey(kh, "bad.example.org", 22, key);
  assert.equal(bad.ok ? "" : bad.reason, "unknown-host");
  const mism = verifyHostKey(kh, "127.0.0.1", 22522, other);
  assert.equal(mism.ok ? "" : mism.reason, "mismatch");
  assert.match(mism.ok ? "" : mism.message, new RegExp(`offered ${fingerprint(other).replace(/[+/]/g, ".")}`));
  assert.equal(verifyHostKey(kh, "127.0.0.1", 22, key).ok, false, "port 22 is a different known_hosts name");
  const rev = verifyHostKey(kh, "login02", 22, other);
  assert.equal(rev.ok ? "" : rev.reason, "revoked");
  assert.match(fingerprint(key), /^SHA256:[A-Za-z0-9+/]+$/);
});
