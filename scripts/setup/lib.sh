# shellcheck shell=bash
# Shared helpers for the idempotent set-up scripts. Sourced, not run.
set -euo pipefail
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Slow builds (Go binaries, venvs, OpenPBS, images) are cached outside the clone, keyed by version
# or content, so a fresh clone (CI's included) reuses them; IPP_CACHE_DIR moves them.
CACHE_DIR="${IPP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ipp-operator}"
mkdir -p "$CACHE_DIR"

log() { printf '[setup] %s\n' "$*" >&2; }

# Run as root directly, otherwise through sudo when it exists.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

# apt_install pkg...: installs only the packages that are missing, so a second run costs one dpkg query.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# kube_wrapper_gomod <module> <k8s version>: prints the go.mod of a small module outside the
# kubernetes tree that builds its cmd/ packages. kubernetes' own go.mod points every k8s.io/*
# staging module at ./staging; the wrapper replaces each with its published release of the same
# minor/patch (v1.M.P -> v0.M.P) and copies kubernetes' go and godebug lines.
kube_wrapper_gomod() {
  local module="$1" version="$2" upstream staging="v0.${2#v1.}"
  upstream="$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [ -f "$upstream" ] || { log "could not download k8s.io/kubernetes@$version"; return 1; }
  echo "module $module"
  echo
  grep -E '^go [0-9]' "$upstream"
  grep -E '^godebug' "$upstream" || true
  sed -n '/^godebug (/,/^)/p' "$upstream"
  echo
  echo "require k8s.io/kubernetes $version"
  echo
  echo "replace ("
  grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$upstream" \
    | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
}
