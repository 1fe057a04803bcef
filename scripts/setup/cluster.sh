#!/usr/bin/env bash
# A real single-node Kubernetes for the end-to-end tests, from parts this machine reaches:
#   build   the node binaries, CoreDNS and the images (cached outside the clone, below)
#   up      etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet,
#           kube-proxy (iptables mode), a bridge CNI and CoreDNS; writes $CLUSTER_DIR/kubeconfig
#   down    stops everything `up` started, unmounts, deletes iptables chains and the bridge
#   status  says what runs
# Cached in ~/.cache/ipp-operator (IPP_CACHE_DIR):
#   kube/kube-node-<version>-<hash>/kube-node   kubelet, kube-controller-manager, kube-scheduler,
#                                               kube-proxy and kubectl in one multi-call binary
#   kube/coredns-<version>-<hash>/coredns       CoreDNS with the plugins a cluster domain needs
#   images/<name>-<content hash>.tar            OCI archives built by scripts/setup/images.sh
# etcd and kube-apiserver come from scripts/setup/kube.sh.
# Usage: cluster.sh [build|up|down|status]   (default: build)
# shellcheck source=scripts/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_VERSION="$(sed -nE 's/^KUBE_VERSION="\$\{KUBE_VERSION:-(v[^}]+)\}"/\1/p' "$REPO_ROOT/scripts/setup/kube.sh")"
KUBE_VERSION="${KUBE_VERSION_OVERRIDE:-$KUBE_VERSION}"
ETCD_VERSION="$(sed -nE 's/^ETCD_VERSION="\$\{ETCD_VERSION:-(v[^}]+)\}"/\1/p' "$REPO_ROOT/scripts/setup/kube.sh")"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
KUBE_DIR="$CACHE_DIR/kube"
mkdir -p "$KUBE_DIR"

# The multi-call binary: one link instead of five, dispatching on the name it is called by
# (symlinks) or on its first argument.
NODE_MAIN='package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	name := filepath.Base(os.Args[0])
	if name == "kube-node" && len(os.Args) > 1 {
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	var command *cobra.Command
	switch name {
	case "kubelet":
		command = kubelet.NewKubeletCommand(context.Background())
	case "kube-controller-manager":
		command = controllermanager.NewControllerManagerCommand()
	case "kube-scheduler":
		command = scheduler.NewSchedulerCommand()
	case "kube-proxy":
		command = proxy.NewProxyCommand()
	case "kubectl":
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			util.CheckErr(err)
		}
		return
	default:
		fmt.Fprintln(os.Stderr, "usage: kube-node kubelet|kube-controller-manager|kube-scheduler|kube-proxy|kubectl ...")
		os.Exit(2)
	}
	os.Exit(cli.Run(command))
}
'

# CoreDNS built with only the plugins a cluster domain needs (the way CoreDNS documents
# trimming plugin.cfg): the full build pulls every cloud provider's SDK.
COREDNS_MAIN='package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes", "forward"}
}

func main() { coremain.Run() }
'

node_dir() { echo "$KUBE_DIR/kube-node-$KUBE_VERSION-$(printf '%s' "$NODE_MAIN" | sha256sum | cut -c1-12)"; }
coredns_dir() { echo "$KUBE_DIR/coredns-$COREDNS_VERSION-$(printf '%s' "$COREDNS_MAIN" | sha256sum | cut -c1-12)"; }

build_node() {
  local out; out="$(node_dir)"
  [ -x "$out/kube-node" ] && return 0
  command -v go >/dev/null || { log "go is required"; return 1; }
  log "building kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl $KUBE_VERSION (one binary)"
  local mod="$KUBE_DIR/src/kube-node-$KUBE_VERSION" tmp="$out.tmp"
  rm -rf "$mod" "$tmp"; mkdir -p "$mod" "$tmp"
  kube_wrapper_gomod ipp-operator.local/kube-node "$KUBE_VERSION" >"$mod/go.mod" || return 1
  printf '%s' "$NODE_MAIN" >"$mod/main.go"
  (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go mod tidy >/dev/null \
    && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)" \
      -o "$tmp/kube-node" .) || return 1
  local c; for c in kubelet kube-controller-manager kube-scheduler kube-proxy kubectl; do ln -sf kube-node "$tmp/$c"; done
  "$tmp/kubelet" --version >/dev/null || { log "kube-node built but does not run"; return 1; }
  rm -rf "$out"; mv "$tmp" "$out"; log "kube-node ready: $out"
}

build_coredns() {
  local out; out="$(coredns_dir)"
  [ -x "$out/coredns" ] && return 0
  command -v go >/dev/null || { log "go is required"; return 1; }
  log "building coredns $COREDNS_VERSION"
  local mod="$KUBE_DIR/src/coredns-$COREDNS_VERSION" tmp="$out.tmp"
  rm -rf "$mod" "$tmp"; mkdir -p "$mod" "$tmp"
  printf '%s' "$COREDNS_MAIN" >"$mod/main.go"
  (cd "$mod" && go mod init ipp-operator.local/coredns >/dev/null 2>&1 \
    && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null \
    && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go mod tidy >/dev/null \
    && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$tmp/coredns" .) || return 1
  "$tmp/coredns" -version >/dev/null || { log "coredns built but does not run"; return 1; }
  rm -rf "$out"; mv "$tmp" "$out"; log "coredns ready: $out"
}

cmd_build() {
  apt_install containerd runc containernetworking-plugins iptables conntrack mmdebstrap umoci skopeo openssl
  bash "$REPO_ROOT/scripts/setup/kube.sh" etcd kube-apiserver helm
  build_node
  build_coredns
  bash "$REPO_ROOT/scripts/setup/images.sh"
}

# ---- the running cluster ------------------------------------------------------------------------
# One cluster per machine: state in $CLUSTER_DIR (root-owned, wiped by `down` except containerd's
# image store), runtime files in $RUN_DIR. Addresses: the node is the bridge's gateway address,
# where the API server, the kubelet and CoreDNS listen, so pods reach all three.
CLUSTER_DIR="${IPP_CLUSTER_DIR:-/var/tmp/ipp-cluster}"
RUN_DIR=/run/ipp-cluster
BRIDGE=ippbr0
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/24
API_PORT="${IPP_CLUSTER_API_PORT:-16443}"
NODE_NAME=ipp-node
CLUSTER_DOMAIN=cluster.local
SOCK="$RUN_DIR/containerd.sock"
KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns)

pidfile() { echo "$RUN_DIR/$1.pid"; }
running() { local p; p="$(cat "$(pidfile "$1")" 2>/dev/null)" && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start() { # start <name> <command...>: in the background, logged, its pid recorded
  local name="$1"; shift
  if running "$name"; then return 0; fi
  setsid "$@" >"$CLUSTER_DIR/log/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

wait_for() { # wait_for <what> <seconds> <command...>
  local what="$1" secs="$2" deadline; shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then log "$what not ready after ${secs}s"; return 1; fi
    sleep 0.5
  done
}

kubectl_() { "$(node_dir)/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

write_pki() { # a CA, the API server's serving certificate, the API server's client certificate for kubelets, SA keys
  local pki="$CLUSTER_DIR/pki"
  [ -f "$pki/apiserver.crt" ] && return 0
  mkdir -p "$pki"
  (
    cd "$pki" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=ipp-cluster-ca" 2>/dev/null
    cat >san.cnf <<CNF
[req]
distinguished_name = dn
[dn]
[ext]
subjectAltName = DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:${SERVICE_CIDR%.*}.1
keyUsage = digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
[client]
keyUsage = digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
CNF
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile san.cnf -extensions ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out kubelet-client.crt -days 3650 -extfile san.cnf -extensions client 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    printf '%s,admin,admin-uid,"system:masters"\n' "$(openssl rand -hex 24)" >tokens.csv
  ) || return 1
}

write_configs() {
  local token; token="$(cut -d, -f1 "$CLUSTER_DIR/pki/tokens.csv")"
  cat >"$KUBECONFIG_PATH" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: ipp
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority: $CLUSTER_DIR/pki/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: ipp
  context: { cluster: ipp, user: admin, namespace: default }
current-context: ipp
YAML
  chmod 600 "$KUBECONFIG_PATH"
  mkdir -p "$CLUSTER_DIR/containerd" "$CLUSTER_DIR/cni/net.d" "$CLUSTER_DIR/cni/ipam"
  cat >"$CLUSTER_DIR/containerd/config.toml" <<TOML
version = 2
root = "$CLUSTER_DIR/containerd/root"
state = "$RUN_DIR/containerd"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$(bash "$REPO_ROOT/scripts/setup/images.sh" --ref pause)"
  # Root here lacks CAP_SYS_RESOURCE (a VM's sandbox), so no process may lower its oom_score_adj:
  # the sandboxes' -998 fails in runc ("failed to update /proc/self/oom_score_adj: Permission
  # denied"). This clamps every container's to containerd's own (0).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
TOML
  cat >"$CLUSTER_DIR/cni/net.d/10-ipp.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "ipp",
  "plugins": [
    { "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "dataDir": "$CLUSTER_DIR/cni/ipam",
                "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$NODE_IP" }]],
                "routes": [{ "dst": "0.0.0.0/0" }] } },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
  cat >"$CLUSTER_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
clusterDNS: [$NODE_IP]
clusterDomain: $CLUSTER_DOMAIN
podCIDR: $POD_CIDR
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: false }
  x509: { clientCAFile: $CLUSTER_DIR/pki/ca.crt }
authorization: { mode: AlwaysAllow }
failSwapOn: false
failCgroupV1: false
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
evictionHard: { memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%" }
serializeImagePulls: false
maxPods: 60
YAML
  cat >"$CLUSTER_DIR/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:18053
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_PATH
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 5
}
COREFILE
}

setup_network() {
  as_root sysctl -qw net.ipv4.ip_forward=1
  as_root sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    as_root ip link add "$BRIDGE" type bridge
  fi
  ip -4 addr show dev "$BRIDGE" | grep -q "inet $NODE_IP/" || as_root ip addr add "$NODE_IP/24" dev "$BRIDGE"
  as_root ip link set "$BRIDGE" up
}

import_images() { # the images the cluster runs, into containerd's k8s.io namespace, when missing or changed
  local name ref path
  for name in ${IPP_CLUSTER_IMAGES:-pause engine controller}; do
    ref="$(bash "$REPO_ROOT/scripts/setup/images.sh" --ref "$name")"
    path="$(bash "$REPO_ROOT/scripts/setup/images.sh" --path "$name")" || return 1
    if ! ctr -a "$SOCK" -n k8s.io images ls -q | grep -qxF "$ref" \
      || [ "$(cat "$CLUSTER_DIR/containerd/$name.imported" 2>/dev/null)" != "$path" ]; then
      log "importing $ref"
      ctr -a "$SOCK" -n k8s.io images import --no-unpack=false "$path" >/dev/null || return 1
      echo "$path" >"$CLUSTER_DIR/containerd/$name.imported"
    fi
  done
}

cmd_up() {
  [ "$(id -u)" = 0 ] || { log "cluster.sh up needs root (containerd, kubelet, iptables)"; return 1; }
  # IPP_CLUSTER_NO_BUILD=1: use what is built (a part missing is an error); IPP_CLUSTER_IMAGES:
  # the images to import (default: all three).
  [ "${IPP_CLUSTER_NO_BUILD:-0}" = 1 ] || cmd_build || return 1
  local nd; nd="$(node_dir)"
  local etcd_bin="$KUBE_DIR/etcd-$ETCD_VERSION/etcd"
  local api_bin="$KUBE_DIR/kube-apiserver-$KUBE_VERSION/kube-apiserver"
  mkdir -p "$CLUSTER_DIR/log" "$RUN_DIR"
  write_pki && write_configs || return 1
  setup_network
  local t0=$SECONDS
  start containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
  start etcd "$etcd_bin" --name=ipp --data-dir="$CLUSTER_DIR/etcd" \
    --listen-client-urls=http://127.0.0.1:12379 --advertise-client-urls=http://127.0.0.1:12379 \
    --listen-peer-urls=http://127.0.0.1:12380 --initial-advertise-peer-urls=http://127.0.0.1:12380 \
    --initial-cluster=ipp=http://127.0.0.1:12380 --unsafe-no-fsync=true --log-level=warn
  wait_for containerd 30 ctr -a "$SOCK" version || return 1
  if ! import_images; then
    # containerd's kept image store can lose a layer's snapshot (seen after a teardown with pods
    # running: "parent snapshot ... does not exist"); start it from an empty store and import again
    log "image import failed; importing into a fresh containerd store"
    stop_pid containerd
    rm -rf "$CLUSTER_DIR/containerd/root" "$CLUSTER_DIR"/containerd/*.imported
    start containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
    wait_for containerd 30 ctr -a "$SOCK" version || return 1
    import_images || return 1
  fi
  wait_for etcd 30 curl -sf http://127.0.0.1:12379/health || return 1
  local pki="$CLUSTER_DIR/pki"
  start kube-apiserver "$api_bin" --etcd-servers=http://127.0.0.1:12379 \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" --client-ca-file="$pki/ca.crt" \
    --kubelet-client-certificate="$pki/kubelet-client.crt" --kubelet-client-key="$pki/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --token-auth-file="$pki/tokens.csv" --authorization-mode=Node,RBAC --v=1
  wait_for kube-apiserver 120 kubectl_ get --raw /readyz || { tail -20 "$CLUSTER_DIR/log/kube-apiserver.log" >&2; return 1; }
  start kube-controller-manager "$nd/kube-controller-manager" --kubeconfig="$KUBECONFIG_PATH" \
    --authentication-kubeconfig="$KUBECONFIG_PATH" --authorization-kubeconfig="$KUBECONFIG_PATH" \
    --leader-elect=false --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SERVICE_CIDR" \
    --bind-address=127.0.0.1 --secure-port=10257 --v=1
  start kube-scheduler "$nd/kube-scheduler" --kubeconfig="$KUBECONFIG_PATH" \
    --authentication-kubeconfig="$KUBECONFIG_PATH" --authorization-kubeconfig="$KUBECONFIG_PATH" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=10259 --v=1
  start kubelet "$nd/kubelet" --config="$CLUSTER_DIR/kubelet.yaml" --kubeconfig="$KUBECONFIG_PATH" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --root-dir="$CLUSTER_DIR/kubelet" \
    --cert-dir="$CLUSTER_DIR/kubelet/pki" --v=1
  start kube-proxy "$nd/kube-proxy" --kubeconfig="$KUBECONFIG_PATH" --proxy-mode=iptables \
    --cluster-cidr="$POD_CIDR" --hostname-override="$NODE_NAME" --conntrack-max-per-core=0 \
    --bind-address=127.0.0.1 --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 --v=1
  start coredns "$(coredns_dir)/coredns" -conf "$CLUSTER_DIR/Corefile"
  wait_for "node $NODE_NAME Ready" 120 node_ready || { tail -20 "$CLUSTER_DIR/log/kubelet.log" >&2; return 1; }
  wait_for coredns 30 curl -sf http://127.0.0.1:18053/health || { tail -20 "$CLUSTER_DIR/log/coredns.log" >&2; return 1; }
  wait_for "the default ServiceAccount" 60 kubectl_ get serviceaccount default || return 1
  log "cluster up in $((SECONDS - t0))s: export KUBECONFIG=$KUBECONFIG_PATH (kubectl: $nd/kubectl)"
}

node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

stop_pid() { # stop_pid <name>: SIGTERM, then SIGKILL after 10 s
  local p; p="$(cat "$(pidfile "$1")" 2>/dev/null)" || return 0
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null
    local _; for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$1")"
}

cmd_down() {
  [ "$(id -u)" = 0 ] || { log "cluster.sh down needs root"; return 1; }
  local name
  # The node first, so nothing restarts the pods being removed.
  for name in kubelet kube-proxy coredns kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_pid "$name"; done
  # Every container of ours (pods' and sandboxes'), through our containerd, then containerd itself.
  if running containerd; then
    local ids id
    ids="$(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null)"
    for id in $ids; do ctr -a "$SOCK" -n k8s.io tasks kill -a -s KILL "$id" >/dev/null 2>&1 || true; done
    for id in $ids; do
      local _; for _ in $(seq 1 20); do ctr -a "$SOCK" -n k8s.io tasks delete "$id" >/dev/null 2>&1 && break; sleep 0.5; done
    done
    for id in $(ctr -a "$SOCK" -n k8s.io containers ls -q 2>/dev/null); do ctr -a "$SOCK" -n k8s.io containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop_pid containerd
  # Shims outlive containerd; ours name our socket.
  local p
  for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $SOCK" || true); do kill -KILL "$p" 2>/dev/null || true; done
  # Mounts under our folders (pods' volumes, rootfs overlays, sandboxes' shm), deepest first.
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(awk '{print $2}' /proc/mounts | grep -E "^($CLUSTER_DIR|$RUN_DIR)/" | sort -r)
  # Pods' network namespaces (containerd names them cni-<uuid>), the bridge, and the iptables
  # chains kube-proxy and the bridge plugin's masquerading added.
  for m in /var/run/netns/cni-*; do
    [ -e "$m" ] || continue
    umount "$m" 2>/dev/null || true; rm -f "$m"
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  local table chain rule
  for table in filter nat mangle; do
    # the built-in chains' jumps into ours, then our chains (emptied first: they jump to each other)
    while IFS= read -r rule; do
      eval "iptables -t $table -D ${rule#-A }" 2>/dev/null || true
    done < <(iptables-save -t "$table" 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE|CNI)-')
    for chain in $(iptables-save -t "$table" 2>/dev/null | sed -nE 's/^:((KUBE|CNI)-[^ ]+) .*/\1/p'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables-save -t "$table" 2>/dev/null | sed -nE 's/^:((KUBE|CNI)-[^ ]+) .*/\1/p'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
  rm -rf "$CLUSTER_DIR/etcd" "$CLUSTER_DIR/kubelet" "$CLUSTER_DIR/cni/ipam" "$RUN_DIR"
  log "cluster down"
}

cmd_status() {
  local name rc=0
  for name in "${COMPONENTS[@]}"; do
    if running "$name"; then echo "$name: running (pid $(cat "$(pidfile "$name")"))"; else echo "$name: stopped"; rc=1; fi
  done
  [ -f "$KUBECONFIG_PATH" ] && echo "kubeconfig: $KUBECONFIG_PATH"
  echo "kubectl: $(node_dir)/kubectl"
  return $rc
}

case "${1:-build}" in
  build) cmd_build ;;
  build-node) build_node ;;
  build-coredns) build_coredns ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubectl) shift; kubectl_ "$@" ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_PATH PATH=$(node_dir):\$PATH" ;;
  info) # info kubeconfig|kubectl|logs|image <name>: one fact per call, for test/support/cluster.ts
    case "${2:-}" in
      kubeconfig) echo "$KUBECONFIG_PATH" ;;
      kubectl) echo "$(node_dir)/kubectl" ;;
      logs) echo "$CLUSTER_DIR/log" ;;
      image) bash "$REPO_ROOT/scripts/setup/images.sh" --ref "$3" ;;
      *) log "usage: cluster.sh info kubeconfig|kubectl|logs|image <name>"; exit 2 ;;
    esac ;;
  *) log "usage: cluster.sh [build|up|down|status|kubectl ...|env]"; exit 2 ;;
esac
