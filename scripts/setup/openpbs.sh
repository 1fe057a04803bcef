#!/usr/bin/env bash
# A real OpenPBS (the open-source PBS Professional) for the pbs backend's tests, built from source
# (Debian has no package): server, scheduler, MoM and comm, installed under /opt/pbs.
#
#   scripts/setup/openpbs.sh [build]   build (or take from the cache) and install /opt/pbs
#
# The source archive comes from ../shared/vendor/ next to the checkout when it is there (the master
# snapshot is preferred: it builds unchanged on Debian 12 and its `qstat -F json` is right; a copy
# is kept in the cache for checkouts elsewhere), else the 23.06.06 release is downloaded from GitHub. The installed tree is cached in
# ~/.cache/ipp-operator/openpbs/<sha256 of the archive, 16 hex>/ so a second run only copies it.
# Cold build: about 3 minutes of two cores. The daemons are started by pbs-rig.sh.
# shellcheck source=scripts/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
umask 022

PBS_PREFIX=/opt/pbs
RELEASE=23.06.06
RELEASE_URL="https://github.com/openpbs/openpbs/archive/refs/tags/v$RELEASE.tar.gz"
# ../shared/vendor next to the checkout; for a linked worktree also next to its main checkout
VENDOR_DIRS=("$(cd "$REPO_ROOT/.." && pwd)/shared/vendor")
if common=$(git -C "$REPO_ROOT" rev-parse --path-format=absolute --git-common-dir 2>/dev/null); then
  VENDOR_DIRS+=("$(dirname "$(dirname "$common")")/shared/vendor")
fi
OUT_ROOT="$CACHE_DIR/openpbs"
mkdir -p "$OUT_ROOT"

BUILD_PACKAGES=(gcc make libtool libhwloc-dev libx11-dev libxt-dev libedit-dev libical-dev ncurses-dev perl
  postgresql-server-dev-all postgresql-contrib python3-dev tcl-dev tk-dev swig libexpat-dev libssl-dev
  libxext-dev libxft-dev autoconf automake g++ libcjson-dev)
RUN_PACKAGES=(postgresql postgresql-contrib expat libedit2 python3 sudo tcl tk libical3 libcjson1 libhwloc15)

# the archive to build: vendored master, vendored release, the copy kept in the cache the first
# time a vendored archive was seen (so a clone elsewhere, CI's included, builds the same source),
# else the downloaded release
find_archive() {
  local f d
  [ -n "${IPP_OPENPBS_ARCHIVE:-}" ] && { echo "$IPP_OPENPBS_ARCHIVE"; return 0; }
  mkdir -p "$OUT_ROOT/archives"
  for d in "${VENDOR_DIRS[@]}"; do
    for f in "$d"/openpbs-master-*.tar.gz "$d/openpbs-$RELEASE.tar.gz"; do
      [ -f "$f" ] || continue
      cmp -s "$f" "$OUT_ROOT/archives/$(basename "$f")" || cp "$f" "$OUT_ROOT/archives/$(basename "$f")"
      echo "$f"; return 0
    done
  done
  for f in "$OUT_ROOT/archives"/openpbs-master-*.tar.gz "$OUT_ROOT/archives/openpbs-$RELEASE.tar.gz"; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  f="$OUT_ROOT/openpbs-$RELEASE.tar.gz"
  if [ ! -f "$f" ]; then
    log "downloading OpenPBS $RELEASE from $RELEASE_URL"
    curl -fsSL --retry 3 -o "$f.tmp" "$RELEASE_URL"; mv "$f.tmp" "$f"
  fi
  echo "$f"
}

build() {
  local archive hash out
  archive=$(find_archive)
  hash=$(sha256sum "$archive" | cut -c1-16)
  out="$OUT_ROOT/$hash"
  apt_install "${RUN_PACKAGES[@]}"
  if [ ! -x "$out/root$PBS_PREFIX/sbin/pbs_server.bin" ]; then
    apt_install "${BUILD_PACKAGES[@]}"
    log "building OpenPBS from $(basename "$archive") into $out"
    local src="$out.src" stage="$out.tmp"
    rm -rf "$src" "$stage"; mkdir -p "$src" "$stage"
    tar -xzf "$archive" -C "$src" --strip-components=1
    # the release includes <eval.h>, which Python 3.11 no longer ships; Python.h declares the same
    if grep -q '#include <eval.h>' "$src/src/lib/Libpython/pbs_python_external.c" 2>/dev/null; then
      sed -i 's|#include <eval.h>|#include <Python.h>|' "$src/src/lib/Libpython/pbs_python_external.c"
    fi
    (cd "$src" && ./autogen.sh >"$out.build.log" 2>&1 \
      && ./configure --prefix="$PBS_PREFIX" >>"$out.build.log" 2>&1 \
      && make -j"$(nproc)" >>"$out.build.log" 2>&1 \
      && make install DESTDIR="$stage/root" >>"$out.build.log" 2>&1) \
      || { log "OpenPBS build failed: see $out.build.log"; tail -20 "$out.build.log" >&2; exit 1; }
    echo "$archive" > "$stage/archive"
    rm -rf "$out"; mv "$stage" "$out"; rm -rf "$src"
    log "OpenPBS built: $out"
  fi
  # install: /opt/pbs is replaced only when it came from another archive
  if [ "$(cat "$PBS_PREFIX/.ipp-archive-hash" 2>/dev/null)" != "$hash" ]; then
    log "installing OpenPBS into $PBS_PREFIX"
    as_root rm -rf "$PBS_PREFIX"
    as_root cp -a "$out/root$PBS_PREFIX" "$PBS_PREFIX"
    echo "$hash" | as_root tee "$PBS_PREFIX/.ipp-archive-hash" >/dev/null
  fi
  # only the RPM sets these: without them a non-root qstat/qsub can't authenticate
  as_root chmod 4755 "$PBS_PREFIX/sbin/pbs_iff" "$PBS_PREFIX/sbin/pbs_rcp"
}

case "${1:-build}" in
  build) build ;;
  *) echo "usage: $0 [build]" >&2; exit 2 ;;
esac
