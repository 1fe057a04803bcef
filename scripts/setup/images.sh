#!/usr/bin/env bash
# The engine, controller/operator and pause images without Docker: Debian root filesystems from
# Debian's mirror (mmdebstrap), packed as OCI images (umoci) and written as docker-archive tars
# (skopeo) that `ctr images import`, `docker load` and `skopeo copy ... docker://<registry>` all read.
#   ~/.cache/ipp-operator/images/<name>-<content hash>.tar   (IPP_CACHE_DIR)
# Keyed by the content of everything that goes in, so a second run costs a few hashes. The image
# configuration (ENV, USER, WORKDIR, EXPOSE, ENTRYPOINT, CMD) is read from the same Dockerfile that
# users with Docker build from (native/engine, native/controller), and both routes install the same
# package lists, so the two routes build the same image (test/unit/native/image-routes.test.ts).
# Usage: images.sh [engine|controller|pause]... (default: all); images.sh --path <name> prints the tar
# (building it if needed) and images.sh --ref <name> the image name it carries.
# shellcheck source=scripts/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGES_DIR="$CACHE_DIR/images"
SUITE="${IPP_DEBIAN_SUITE:-bookworm}"
VERSION="$(sed -nE 's/^  "version": "([^"]+)".*/\1/p' "$REPO_ROOT/package.json" | head -n1)"
PAUSE_VERSION=3.10
mkdir -p "$IMAGES_DIR"

# The names the images carry (a site retags and pushes them, docs/images.md).
image_ref() {
  case "$1" in
    engine) echo "ipp.local/ipp-engine:$VERSION" ;;
    controller) echo "ipp.local/ipp-operator:$VERSION" ;;
    pause) echo "ipp.local/pause:$PAUSE_VERSION" ;;
  esac
}

# Content key of an image: its input files (paths relative to the repository) and the text of the
# functions that build it (`declare -f` prints them without comments, so only a change of what
# runs makes a new key).
image_key() { # image_key "<build functions>" <file or folder>...
  local fns="$1"; shift
  {
    # shellcheck disable=SC2086 # a list of function names
    declare -f pack dockerfile_config packages $fns
    [ $# -eq 0 ] || (cd "$REPO_ROOT" && find "$@" -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum)
  } | sha256sum | cut -c1-16
}

image_path() {
  local key
  case "$1" in
    engine) key="$(image_key "build_engine build_engine_base engine_base pip_wheels" native/engine)" ;;
    controller) key="$(image_key "build_controller build_controller_base controller_base" native/controller package.json package-lock.json tsconfig.json src bin crds)-node$(node --version)" ;;
    pause) key="$PAUSE_VERSION-$(image_key build_pause)" ;;
    *) log "unknown image: $1"; return 2 ;;
  esac
  echo "$IMAGES_DIR/$1-$key.tar"
}

# Image configuration from a Dockerfile's final stage, as umoci config arguments (one per line).
# Understands the one-line forms our Dockerfiles use: ENV k=v..., USER, WORKDIR, EXPOSE, and the
# JSON forms of ENTRYPOINT and CMD.
dockerfile_config() {
  python3 - "$1" <<'PY'
import json, shlex, sys
lines = open(sys.argv[1]).read().replace("\\\n", " ").splitlines()
last = max(i for i, l in enumerate(lines) if l.startswith("FROM "))
out = []
for l in lines[last + 1:]:
    word, _, rest = l.strip().partition(" ")
    rest = rest.strip()
    if word == "ENV":
        out += [f"--config.env={kv}" for kv in shlex.split(rest)]
    elif word == "USER":
        out.append(f"--config.user={rest}")
    elif word == "WORKDIR":
        out.append(f"--config.workingdir={rest}")
    elif word == "EXPOSE":
        out += [f"--config.exposedports={p if '/' in p else p + '/tcp'}" for p in rest.split()]
    elif word in ("ENTRYPOINT", "CMD"):
        for a in json.loads(rest):
            out.append(f"--config.{word.lower()}={a}")
print("\n".join(out))
PY
}

# pack <name> <dockerfile|pause> <out> <rootfs folder or tar>... : an OCI image whose layers are
# the given root filesystems (in order), configured from the Dockerfile (or the pause defaults),
# written as a docker-archive. Each layer goes in verbatim (umoci raw add-layer: no unpacking).
pack() {
  local name="$1" dockerfile="$2" out="$3"; shift 3
  local work; work="$(mktemp -d "$IMAGES_DIR/.build-$name-XXXX")"
  umoci init --layout "$work/oci" && umoci new --image "$work/oci:img" || return 1
  local layer
  for layer in "$@"; do
    if [ -d "$layer" ]; then
      tar --numeric-owner --sort=name -C "$layer" -cf "$work/layer.tar" . || return 1
      layer="$work/layer.tar"
    fi
    umoci raw add-layer --image "$work/oci:img" "$layer" || return 1
    rm -f "$work/layer.tar"
  done
  local args=()
  if [ "$dockerfile" = pause ]; then args=(--config.entrypoint=/pause --config.user=65535:65535)
  else
    # debian:bookworm-slim's PATH, which the Dockerfiles' images inherit from their base image.
    args=(--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
    mapfile -t -O 1 args < <(dockerfile_config "$dockerfile")
  fi
  umoci config --image "$work/oci:img" --author=ipp-operator "${args[@]}" || return 1
  umoci gc --layout "$work/oci"
  rm -f "$out.tmp"
  skopeo copy --quiet "oci:$work/oci:img" "docker-archive:$out.tmp:$(image_ref "$name")" || return 1
  mv "$out.tmp" "$out"; rm -rf "$work"
  log "$name image ready: $out ($(image_ref "$name"), $(du -h "$out" | cut -f1))"
}

# The PyPI requirements are downloaded here, by Debian's own python3 (the interpreter the image
# runs), and installed in the root filesystem from those files with --no-index: pip inside the
# chroot reaches no index, so a site's proxy or CA set-up on this machine is all it takes.
pip_wheels() { # pip_wheels <folder>
  apt_install python3-pip
  /usr/bin/python3 -m pip download --quiet --disable-pip-version-check --no-cache-dir \
    -r "$REPO_ROOT/native/engine/requirements.txt" -d "$1" >&2
}

packages() { grep -vE '^\s*(#|$)' "$1" | paste -sd, -; }

build_pause() {
  local out="$1" work
  work="$(mktemp -d)"
  # Kubernetes' own pause (build/pause/linux/pause.c in the k8s.io/kubernetes module), static.
  local kube_version src
  kube_version="$(sed -nE 's/^KUBE_VERSION="\$\{KUBE_VERSION:-(v[^}]+)\}"/\1/p' "$REPO_ROOT/scripts/setup/kube.sh")"
  src="$(go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/build/pause/linux/pause.c"
  [ -f "$src" ] || { log "no $src"; return 1; }
  mkdir -p "$work/rootfs"
  gcc -Os -static -DVERSION="$PAUSE_VERSION" -o "$work/rootfs/pause" "$src" && strip "$work/rootfs/pause" || return 1
  pack pause pause "$out" "$work/rootfs"
  rm -rf "$work"
}

# The engine image in two layers, as the Dockerfile has them: the Debian packages and PyPI
# requirements with image-setup.sh (cached on its own, keyed by those inputs: the slow part), then
# the entrypoints.
engine_base() { # engine_base: prints the cached root filesystem tar, building it when needed
  local out
  out="$IMAGES_DIR/engine-base-$(image_key "build_engine_base pip_wheels" native/engine/packages.txt native/engine/requirements.txt native/engine/image-setup.sh).tar"
  [ -f "$out" ] || build_engine_base "$out" >&2 || return 1
  echo "$out"
}

build_engine_base() {
  local out="$1" wheels
  wheels="$(mktemp -d)"
  pip_wheels "$wheels/wheels" || { rm -rf "$wheels"; return 1; }
  log "engine image: mmdebstrap $SUITE with $(packages "$REPO_ROOT/native/engine/packages.txt")"
  # shellcheck disable=SC2016 # the hooks' $1 is the root filesystem, expanded by mmdebstrap
  mmdebstrap --quiet --variant=apt --include="$(packages "$REPO_ROOT/native/engine/packages.txt")" \
    --customize-hook='mkdir -p "$1/tmp/ipp-image"' \
    --customize-hook="copy-in $REPO_ROOT/native/engine/requirements.txt $REPO_ROOT/native/engine/image-setup.sh $wheels/wheels /tmp/ipp-image" \
    --customize-hook='chroot "$1" env PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/ipp-image/wheels sh /tmp/ipp-image/image-setup.sh /tmp/ipp-image' \
    --customize-hook='rm -rf "$1/tmp/ipp-image"' \
    "$SUITE" "${out%.tar}.tmp.tar" || { rm -rf "${out%.tar}.tmp.tar" "$wheels"; return 1; }
  rm -rf "$wheels"
  mv "${out%.tar}.tmp.tar" "$out"
}

build_engine() {
  local out="$1" base work
  base="$(engine_base)" || return 1
  work="$(mktemp -d "$IMAGES_DIR/.rootfs-XXXX")"
  install -d -m 0755 "$work/entrypoints/opt/ipp"
  install -m 0755 "$REPO_ROOT/native/engine/entrypoint-worker.sh" "$REPO_ROOT/native/engine/entrypoint-launcher.sh" "$work/entrypoints/opt/ipp/"
  pack engine "$REPO_ROOT/native/engine/Dockerfile" "$out" "$base" "$work/entrypoints"
  rm -rf "$work"
}

# The controller image's Debian layer (minimal, with the C++ runtime node links), cached on its own.
controller_base() { # prints the cached root filesystem tar, building it when needed
  local out
  out="$IMAGES_DIR/controller-base-$(image_key build_controller_base).tar"
  [ -f "$out" ] || build_controller_base "$out" >&2 || return 1
  echo "$out"
}

build_controller_base() {
  local out="$1"
  log "controller image: mmdebstrap $SUITE minbase"
  # shellcheck disable=SC2016 # the hook's $1 is the root filesystem, expanded by mmdebstrap
  mmdebstrap --quiet --variant=minbase --include=libstdc++6,ca-certificates \
    --customize-hook='rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/archives/"*.deb' \
    "$SUITE" "${out%.tar}.tmp.tar" || { rm -f "${out%.tar}.tmp.tar"; return 1; }
  mv "${out%.tar}.tmp.tar" "$out"
}

# The controller image runs this machine's node binary (Debian bookworm's nodejs is 18; the project
# needs 20) on a minimal Debian with the C++ runtime it links, then the compiled build and production
# node_modules in /app, as native/controller/Dockerfile's final stage has them.
build_controller() {
  local out="$1" work
  work="$(mktemp -d "$IMAGES_DIR/.rootfs-XXXX")"
  local base; base="$(controller_base)" || { rm -rf "$work"; return 1; }
  log "controller image: node $(node --version) + the compiled build on $(basename "$base")"
  local app="$work/app"
  mkdir -p "$app/app" "$app/usr/local/bin" "$work/src"
  install -m 0755 "$(readlink -f "$(command -v node)")" "$app/usr/local/bin/node"
  (cd "$REPO_ROOT" && cp -a package.json package-lock.json tsconfig.json src "$work/src/") || return 1
  (cd "$work/src" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run build --silent >/dev/null) || { log "npm run build failed"; return 1; }
  cp -a "$REPO_ROOT/package.json" "$REPO_ROOT/package-lock.json" "$app/app/"
  (cd "$app/app" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null) || { log "npm ci --omit=dev failed"; return 1; }
  cp -a "$work/src/dist" "$app/app/dist"
  cp -a "$REPO_ROOT/bin" "$REPO_ROOT/crds" "$app/app/"
  pack controller "$REPO_ROOT/native/controller/Dockerfile" "$out" "$base" "$app"
  rm -rf "$work"
}

build() {
  local name="$1" out
  out="$(image_path "$name")" || return 1
  [ -f "$out" ] && return 0
  # One build at a time across checkouts: two builds of one key would share temporary names and
  # race at the final rename. Whoever waited finds the image built and is done.
  exec 9>"$IMAGES_DIR/.build.lock"
  flock -n 9 || { log "waiting for another checkout's image build"; flock 9; }
  [ -f "$out" ] && { exec 9>&-; return 0; }
  apt_install mmdebstrap umoci skopeo
  "build_$name" "$out" || { exec 9>&-; log "$name image failed"; return 1; }
  exec 9>&-
  # Superseded builds go once they are a day old (another checkout may still use one meanwhile).
  find "$IMAGES_DIR" -maxdepth 1 -name "$name-*.tar" ! -name "$name-base-*" ! -path "$out" -mmin +1440 -delete
}

case "${1:-}" in
  --path) build "$2" >&2 && image_path "$2"; exit ;;
  --ref) image_ref "$2"; exit ;;
esac
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(pause engine controller)
for n in "${names[@]}"; do build "$n" || exit 1; done
