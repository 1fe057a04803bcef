#!/usr/bin/env bash
# A real control plane for the integration tests, built from the Go module proxy (there is no
# kube-apiserver package in Debian and no prebuilt binaries can be fetched):
#   ~/.cache/ipp-operator/kube/etcd-<version>/etcd
#   ~/.cache/ipp-operator/kube/kube-apiserver-<version>/kube-apiserver
#   ~/.cache/ipp-operator/kube/helm-<version>/helm
# Each binary is built by a small wrapper module generated here (never committed) and cached in a
# folder keyed by its version (helm: and by its ldflags), so a second run costs little. Cold build:
# 5-15 minutes.
# Usage: kube.sh [etcd|kube-apiserver|helm]...   (default: all three)
# Versions can be overridden with KUBE_VERSION, ETCD_VERSION, HELM_VERSION.
# shellcheck source=scripts/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBE_DIR="$CACHE_DIR/kube"
mkdir -p "$KUBE_DIR"
command -v go >/dev/null || { log "go is required (the Go toolchain builds the control plane)"; exit 1; }
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"

# Builds into a temp folder and renames it into place, so an interrupted build never leaves a
# half-written binary that a later run would take as done.
finish() { # finish <tmp-dir> <final-dir> <binary>
  "$1/$3" --version >/dev/null 2>&1 || "$1/$3" version >/dev/null 2>&1 || { log "$3 built but does not run"; return 1; }
  rm -rf "$2"; mv "$1" "$2"; log "$3 ready: $2/$3"
}

build_etcd() {
  local out="$KUBE_DIR/etcd-$ETCD_VERSION"
  [ -x "$out/etcd" ] && return 0
  log "building etcd $ETCD_VERSION"
  local mod="$KUBE_DIR/src/etcd-$ETCD_VERSION" tmp="$out.tmp"
  rm -rf "$mod" "$tmp"; mkdir -p "$mod" "$tmp"
  cat >"$mod/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$mod" && go mod init ipp-operator.local/etcd >/dev/null 2>&1 \
    && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null \
    && go mod tidy >/dev/null \
    && go build -trimpath -o "$tmp/etcd" .)
  finish "$tmp" "$out" etcd
}

build_apiserver() {
  local out="$KUBE_DIR/kube-apiserver-$KUBE_VERSION"
  [ -x "$out/kube-apiserver" ] && return 0
  log "building kube-apiserver $KUBE_VERSION"
  local mod="$KUBE_DIR/src/kube-apiserver-$KUBE_VERSION" tmp="$out.tmp"
  local staging="v0.${KUBE_VERSION#v1.}"
  rm -rf "$mod" "$tmp"; mkdir -p "$mod" "$tmp"
  kube_wrapper_gomod ipp-operator.local/kube-apiserver "$KUBE_VERSION" >"$mod/go.mod" || return 1
  log "$(grep -c '=> k8s.io' "$mod/go.mod") staging modules replaced with $staging"
  cat >"$mod/main.go" <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
  (cd "$mod" && go mod tidy >/dev/null \
    && go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)" \
      -o "$tmp/kube-apiserver" .)
  finish "$tmp" "$out" kube-apiserver
}

# A plain `go install` leaves helm's default Kubernetes version at v1.20 (the fallback in its
# pkg/chartutil and pkg/lint/rules), so `helm template`/`lint` without a cluster refuse any chart with
# `kubeVersion: >=1.25`. helm's Makefile sets it with -X from the k8s.io/client-go version in its
# go.mod (v0.M.N → v1.M); we do the same. The ldflags are stamped next to the binary: a binary
# built with other flags (or none, by an older version of this script) is rebuilt in place.
helm_ldflags() {
  local gomod clientgo
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [ -f "$gomod" ] || { log "could not download helm.sh/helm/v3@$HELM_VERSION"; return 1; }
  clientgo="$(sed -nE 's/^[[:space:]]*k8s\.io\/client-go v0\.([0-9]+)\.[0-9]+.*/\1/p' "$gomod" | head -n1)"
  [ -n "$clientgo" ] || { log "no k8s.io/client-go v0.x requirement in $gomod"; return 1; }
  local pkg flags=""
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$clientgo"
  done
  echo "-s -w${flags}"
}

build_helm() {
  local out="$KUBE_DIR/helm-$HELM_VERSION" ldflags
  ldflags="$(helm_ldflags)"
  [ -x "$out/helm" ] && [ "$(cat "$out/ldflags" 2>/dev/null)" = "$ldflags" ] && return 0
  log "building helm $HELM_VERSION (ldflags: $ldflags)"
  local tmp="$out.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  printf '%s\n' "$ldflags" >"$tmp/ldflags"
  finish "$tmp" "$out" helm
}

parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(etcd kube-apiserver helm)
for p in "${parts[@]}"; do
  case "$p" in
    etcd) build_etcd ;;
    kube-apiserver) build_apiserver ;;
    helm) build_helm ;;
    *) log "unknown part: $p"; exit 2 ;;
  esac
done
