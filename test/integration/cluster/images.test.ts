/**
 * The images scripts/setup/images.sh builds without Docker are the images the Dockerfiles
 * describe: the image configuration (ENV, USER, WORKDIR, EXPOSE, ENTRYPOINT, CMD) of each
 * Dockerfile's final stage, every Debian package of native/engine/packages.txt installed,
 * ipyparallel at requirements.txt's version, the entrypoints executable at /opt/ipp/, and the
 * operator's compiled build in /app. Reads the built docker-archive tars (building them if needed).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../../support/paths.ts";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function imageTar(name: string): string {
  const r = spawnSync("bash", [join(REPO_ROOT, "scripts/setup/images.sh"), "--path", name], { encoding: "utf8", timeout: 60 * 60_000 });
  assert.equal(r.status, 0, `images.sh --path ${name}:\n${r.stderr}`);
  return r.stdout.trim();
}

const member = (tar: string, path: string): Buffer => execFileSync("tar", ["-xOf", tar, path], { maxBuffer: 1 << 30 });

interface Image { tar: string; ref: string; config: Json; layers: string[] }

function readImage(tar: string): Image {
  const manifest = (JSON.parse(member(tar, "manifest.json").toString()) as Json[])[0]!;
  return { tar, ref: String(manifest.RepoTags[0]), config: JSON.parse(member(tar, String(manifest.Config)).toString()).config as Json, layers: manifest.Layers as string[] };
}

/** A file of the image's merged root filesystem (the last layer holding it), with its listing line. */
function fileOf(img: Image, path: string): { content: string; mode: string } | undefined {
  for (const layer of [...img.layers].reverse()) {
    const data = member(img.tar, layer);
    const gz = data[0] === 0x1f && data[1] === 0x8b;
    const list = spawnSync("tar", [gz ? "-tvz" : "-tv", "--wildcards", `*${path}`], { input: data, maxBuffer: 1 << 30 });
    const line = list.stdout.toString().split("\n").find((l) => l.endsWith(path));
    if (list.status !== 0 || line === undefined) continue;
    const content = spawnSync("tar", [gz ? "-xzO" : "-xO", "--wildcards", `*${path}`], { input: data, maxBuffer: 1 << 30 }).stdout.toString();
    return { content, mode: line.split(/\s+/)[0]! };
  }
  return undefined;
}

/** The final stage of a Dockerfile, as the configuration it gives the image. */
function dockerfileConfig(path: string): Json {
  const lines = readFileSync(join(REPO_ROOT, path), "utf8").replace(/\\\n/g, " ").split("\n");
  const last = lines.map((l, i) => (l.startsWith("FROM ") ? i : -1)).filter((i) => i >= 0).pop()!;
  const out: Json = { Env: [] as string[] };
  for (const l of lines.slice(last + 1)) {
    const [word, ...rest] = l.trim().split(/\s+/);
    const arg = rest.join(" ");
    if (word === "ENV") out.Env.push(...rest);
    if (word === "USER") out.User = arg;
    if (word === "WORKDIR") out.WorkingDir = arg;
    if (word === "EXPOSE") out.ExposedPorts = Object.fromEntries(rest.map((p) => [p.includes("/") ? p : `${p}/tcp`, {}]));
    if (word === "ENTRYPOINT") out.Entrypoint = JSON.parse(arg);
    if (word === "CMD") out.Cmd = JSON.parse(arg);
  }
  return out;
}

function assertConfigMatches(img: Image, dockerfile: string): void {
  const want = dockerfileConfig(dockerfile);
  for (const e of want.Env as string[]) assert.ok((img.config.Env as string[]).includes(e), `${img.ref}: ENV ${e} (has ${JSON.stringify(img.config.Env)})`);
  for (const k of ["User", "WorkingDir", "Entrypoint", "Cmd", "ExposedPorts"]) {
    if (want[k] !== undefined) assert.deepEqual(img.config[k], want[k], `${img.ref}: ${k} as in ${dockerfile}`);
  }
}

test("the engine image built without Docker is native/engine/Dockerfile's image", () => {
  const img = readImage(imageTar("engine"));
  assert.match(img.ref, /^ipp\.local\/ipp-engine:/);
  assertConfigMatches(img, "native/engine/Dockerfile");
  const status = fileOf(img, "var/lib/dpkg/status")?.content ?? "";
  const installed = new Set([...status.matchAll(/^Package: (\S+)\n(?:[^\n]+\n)*?Status: install ok installed$/gm)].map((m) => m[1]));
  const wanted = readFileSync(join(REPO_ROOT, "native/engine/packages.txt"), "utf8").split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#"));
  for (const p of wanted) assert.ok(installed.has(p), `Debian package ${p} installed`);
  const [pkg, version] = /^(ipyparallel)==(\S+)$/m.exec(readFileSync(join(REPO_ROOT, "native/engine/requirements.txt"), "utf8"))!.slice(1);
  const meta = fileOf(img, `dist-packages/${pkg}-${version}.dist-info/METADATA`);
  assert.ok(meta, `${pkg} ${version} installed from requirements.txt`);
  for (const e of ["entrypoint-worker.sh", "entrypoint-launcher.sh"]) {
    const f = fileOf(img, `opt/ipp/${e}`);
    assert.ok(f, `/opt/ipp/${e}`);
    assert.equal(f.mode, "-rwxr-xr-x", `/opt/ipp/${e} is executable`);
    assert.equal(f.content, readFileSync(join(REPO_ROOT, "native/engine", e), "utf8"), `/opt/ipp/${e} is the repository's`);
  }
  assert.match(fileOf(img, "etc/passwd")?.content ?? "", /^ipp:x:1000:1000:/m, "user ipp, uid 1000");
  assert.equal(fileOf(img, "etc/ssh/ssh_host_rsa_key"), undefined, "no host key baked in");
});

test("the operator image built without Docker is native/controller/Dockerfile's image: the compiled build in /app", () => {
  const img = readImage(imageTar("controller"));
  assert.match(img.ref, /^ipp\.local\/ipp-operator:/);
  assertConfigMatches(img, "native/controller/Dockerfile");
  for (const f of ["app/dist/src/cli.js", "app/dist/package.json", "app/bin/ipp-operator", "app/package.json", "app/node_modules/zeromq/package.json", "app/crds/ipp.dev_engineclusters.yaml", "usr/local/bin/node"]) {
    assert.ok(fileOf(img, f), `/${f}`);
  }
  assert.equal(fileOf(img, "app/node_modules/typescript/package.json"), undefined, "no dev dependency");
});
