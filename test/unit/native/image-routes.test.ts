/**
 * The two routes to the images build the same thing: users with Docker build native/engine and
 * native/controller's Dockerfiles; scripts/setup/images.sh builds the images without Docker from a
 * Debian root filesystem. Both read the same package lists and run the same set-up script, and
 * images.sh takes the image configuration from the Dockerfiles. The built images themselves are
 * checked against the Dockerfiles in test/integration/cluster/images.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PATHS } from "../../../src/backends/mpi/core/names.ts";
import { REPO_ROOT } from "../../support/paths.ts";

const read = (p: string) => readFileSync(join(REPO_ROOT, p), "utf8");
const engineDockerfile = read("native/engine/Dockerfile");
const controllerDockerfile = read("native/controller/Dockerfile");
const imagesSh = read("scripts/setup/images.sh");
const imageSetup = read("native/engine/image-setup.sh");

/** The body of a shell function `name() { ... }` in images.sh. */
function shellFunction(name: string): string {
  const m = new RegExp(`^${name}\\(\\) \\{[^\\n]*\\n([\\s\\S]*?)\\n\\}$`, "m").exec(imagesSh);
  assert.ok(m, `images.sh defines ${name}()`);
  return m[1]!;
}

test("engine: the Dockerfile installs packages.txt, runs image-setup.sh with requirements.txt, then adds both entrypoints", () => {
  const copy = /^COPY (.+) \/tmp\/ipp-image\/$/m.exec(engineDockerfile);
  assert.ok(copy, "the Dockerfile copies the build inputs to /tmp/ipp-image/");
  assert.deepEqual(copy[1]!.split(/\s+/).sort(), ["image-setup.sh", "packages.txt", "requirements.txt"]);
  assert.match(engineDockerfile, /apt-get install -y --no-install-recommends \$\(grep -v '\^#' \/tmp\/ipp-image\/packages\.txt\)/);
  assert.match(engineDockerfile, /sh \/tmp\/ipp-image\/image-setup\.sh \/tmp\/ipp-image/);
  assert.match(engineDockerfile, /^COPY --chmod=0755 entrypoint-worker\.sh entrypoint-launcher\.sh \/opt\/ipp\/$/m);
  assert.doesNotMatch(engineDockerfile, /pip3? install|useradd/, "no step of the image outside the shared files");
});

test("engine: images.sh installs the same packages.txt (mmdebstrap --include), runs the same image-setup.sh, then adds both entrypoints", () => {
  const base = shellFunction("build_engine_base");
  assert.match(base, /--include="\$\(packages "\$REPO_ROOT\/native\/engine\/packages\.txt"\)"/);
  const copyIn = /copy-in ([^"]+) \/tmp\/ipp-image"/.exec(base);
  assert.ok(copyIn, "images.sh copies the build inputs into the root filesystem");
  const files = copyIn[1]!.split(/\s+/).map((f) => f.replace("$REPO_ROOT/native/engine/", "")).sort();
  assert.deepEqual(files, ["$wheels/wheels", "image-setup.sh", "requirements.txt"]);
  assert.match(base, /chroot "\$1" env PIP_NO_INDEX=1 PIP_FIND_LINKS=\/tmp\/ipp-image\/wheels sh \/tmp\/ipp-image\/image-setup\.sh \/tmp\/ipp-image/);
  assert.match(shellFunction("pip_wheels"), /pip download [^]*-r "\$REPO_ROOT\/native\/engine\/requirements\.txt"/, "the wheels are requirements.txt's");
  const body = shellFunction("build_engine");
  assert.match(body, /install -m 0755 "\$REPO_ROOT\/native\/engine\/entrypoint-worker\.sh" "\$REPO_ROOT\/native\/engine\/entrypoint-launcher\.sh" "\$work\/entrypoints\/opt\/ipp\/"/);
  assert.match(body, /pack engine "\$REPO_ROOT\/native\/engine\/Dockerfile"/, "the image configuration comes from the Dockerfile");
});

test("engine: image-setup.sh installs requirements.txt; the entrypoints go where the operator's pods run them", () => {
  assert.match(imageSetup, /pip3 install .*-r "\$src\/requirements\.txt"/);
  assert.equal(PATHS.workerEntrypoint, "/opt/ipp/entrypoint-worker.sh");
  assert.equal(PATHS.launcherEntrypoint, "/opt/ipp/entrypoint-launcher.sh");
  const packages = read("native/engine/packages.txt").split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#"));
  for (const p of ["openmpi-bin", "python3-mpi4py", "python3-numpy", "openssh-server"]) assert.ok(packages.includes(p), `packages.txt has ${p}`);
  assert.match(read("native/engine/requirements.txt"), /^ipyparallel==9\.2\.\d+$/m);
});

test("controller: both routes put the compiled build, production dependencies, bin and crds in /app", () => {
  const finalStage = controllerDockerfile.slice(controllerDockerfile.lastIndexOf("\nFROM "));
  for (const line of ["COPY package.json package-lock.json ./", "COPY --from=build /src/dist ./dist", "COPY bin ./bin", "COPY crds ./crds"]) {
    assert.ok(finalStage.includes(line), `the Dockerfile's final stage: ${line}`);
  }
  assert.match(finalStage, /npm ci --omit=dev/);
  assert.match(controllerDockerfile, /RUN npm run build/);
  const body = shellFunction("build_controller");
  assert.match(body, /npm run build/);
  assert.match(body, /cp -a "\$REPO_ROOT\/package\.json" "\$REPO_ROOT\/package-lock\.json" "\$app\/app\/"/);
  assert.match(body, /npm ci --omit=dev/);
  assert.match(body, /cp -a "\$work\/src\/dist" "\$app\/app\/dist"/);
  assert.match(body, /cp -a "\$REPO_ROOT\/bin" "\$REPO_ROOT\/crds" "\$app\/app\/"/);
  assert.match(body, /pack controller "\$REPO_ROOT\/native\/controller\/Dockerfile"/, "the image configuration comes from the Dockerfile");
});
