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
