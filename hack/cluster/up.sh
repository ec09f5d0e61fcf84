#!/usr/bin/env bash
# Starts the one-node Kubernetes cluster the end-to-end tests (test/cluster)
# run against, on this machine, as root: bridge mcpbr0 (198.18.0.1/24), etcd,
# kube-apiserver (https://198.18.0.1:6443), containerd with its own socket,
# kube-controller-manager, kube-scheduler, kubelet and kube-proxy (nftables),
# with a throwaway PKI. Imports every bin/images/*.tar into containerd and
# waits until the node is Ready and the default ServiceAccount exists.
# Idempotent: when the cluster already runs it only re-imports the images.
#
#   export KUBECONFIG="$(hack/cluster/up.sh)"     # or: make cluster-up
#
# stdout carries only the admin kubeconfig's path; progress goes to stderr.
# Component logs: $MCP_CLUSTER_DIR/logs/<component>.log. Stop with down.sh.
#
# Settings (environment):
#   MCP_CLUSTER_DIR      state directory (default /var/lib/mcp-oidc-cluster)
#   MCP_CLUSTER_BIN      the kube binaries and etcd (default <repo>/bin)
#   MCP_CLUSTER_IMAGES   directory of OCI/docker tarballs to import (default <repo>/bin/images)
#   MCP_CLUSTER_TIMEOUT  seconds to wait for the node and its ServiceAccount (default 180)
set -euo pipefail

TOOL=cluster-up
# shellcheck source=hack/cluster/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=hack/cluster/pki.sh
. "$cluster_src/pki.sh"
IMAGES=${MCP_CLUSTER_IMAGES:-$repo_root/bin/images}
TIMEOUT=${MCP_CLUSTER_TIMEOUT:-180}
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "MCP_CLUSTER_TIMEOUT must be a number of seconds, got '$TIMEOUT'"
parse_args "$@"

require_root
for tool in containerd containerd-shim-runc-v2 runc ctr nft ip openssl curl mount umount; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is missing; run hack/ensure-test-deps.sh as root"
done
[[ -x $CNI_BIN_DIR/bridge && -x $CNI_BIN_DIR/host-local && -x $CNI_BIN_DIR/loopback ]] ||
	die "CNI plugins missing in $CNI_BIN_DIR; run hack/ensure-test-deps.sh as root (Debian containernetworking-plugins)"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
	[[ -x $BIN/$b ]] || die "$BIN/$b is missing; build it with hack/envtest-bins.sh (etcd, kube-apiserver) and hack/kube-bins.sh (the rest)"
done

mkdir -p "$STATE"
exec 8>"$STATE/lock"
flock 8
export MCP_CLUSTER_LOCKED=1

# wait_for WHAT SECONDS CMD...: polls CMD every half second until it
# succeeds; on timeout prints the component logs and fails.
wait_for() {
	local what=$1 secs=$2 deadline
	shift 2
	deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			tail_logs
			die "$what not reached within ${secs}s (component logs above, all in $LOGS)"
		fi
		sleep 0.5
	done
}

# alive NAMES...: every named component runs.
alive() {
	local c
	for c in "$@"; do [[ -n $(pid_of "$c") ]] || return 1; done
}

import_images() {
	local tar n=0
	shopt -s nullglob
	for tar in "$IMAGES"/*.tar; do
		ctr_k8s images import --snapshotter "$(<"$STATE/snapshotter")" "$tar" >/dev/null ||
			die "importing $tar into containerd failed"
		n=$((n + 1))
	done
	shopt -u nullglob
	if ((n == 0)); then
		log "no image tarballs in $IMAGES (make images writes them); pods need at least $SANDBOX_IMAGE"
	else
		log "imported $n image tarball(s) from $IMAGES"
	fi
	[[ $(ctr_k8s images check "name==$SANDBOX_IMAGE" 2>/dev/null) == *"$SANDBOX_IMAGE"* ]] ||
		log "WARNING: the sandbox image $SANDBOX_IMAGE is not in containerd; no pod can start (run make images)"
}

node_ready() {
	[[ $(kubectl_admin get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

finish() {
	log "cluster is up; use: export KUBECONFIG=$KUBECONFIG_ADMIN"
	echo "$KUBECONFIG_ADMIN"
}

if alive "${COMPONENTS[@]}" && kubectl_admin get --raw /readyz >/dev/null 2>&1; then
	log "already running (state in $STATE)"
	import_images
	finish
	exit 0
fi
# Anything but the logs left from an earlier run (some components still
# running, or the state of a crash or reboot) is taken down and removed first,
# so every start begins from nothing.
shopt -s nullglob
for entry in "$STATE"/*; do
	case ${entry##*/} in logs | logs.prev | lock) continue ;; esac
	log "an earlier run left $entry; running down.sh first"
	"$cluster_src/down.sh"
	break
done
shopt -u nullglob

start_time=$SECONDS
rm -rf "$LOGS.prev"
[[ ! -d $LOGS ]] || mv "$LOGS" "$LOGS.prev"
mkdir -p "$PIDS" "$LOGS" "$CONTAINERD_DIR" "$KUBELET_DIR" "$CNI_CONF_DIR" "$CNI_DATA_DIR" "$STATE/etcd"
chmod 700 "$STATE/etcd"

# Host networking: the bridge carries the node address before any pod exists,
# since the API server binds to it.
if [[ ! -f $STATE/sysctl.orig ]]; then
	{
		echo "net.ipv4.ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
		[[ ! -f /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
			echo "net.bridge.bridge-nf-call-iptables=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)"
	} >"$STATE/sysctl.orig"
fi
[[ -f /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
echo 1 >/proc/sys/net/ipv4/ip_forward
# Bridged pod-to-pod replies must pass conntrack, or a pod reaching another
# pod through a Service IP sees the reply from the wrong address.
if [[ -f /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
	echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
else
	log "WARNING: br_netfilter is not available; pod-to-Service-to-pod traffic on the bridge may fail"
fi
ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
[[ $(ip addr show dev "$BRIDGE") == *" $NODE_IP/24 "* ]] || ip addr add "$NODE_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
printf 'nameserver %s\noptions ndots:1 timeout:1 attempts:1\n' "$NODE_IP" >"$STATE/resolv.conf"

# overlayfs when this filesystem supports it (fast), else the native snapshotter.
SNAPSHOTTER=native
probe=$CONTAINERD_DIR/overlay-probe
mkdir -p "$probe"/{lower,upper,work,merged}
if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
	umount "$probe/merged"
	SNAPSHOTTER=overlayfs
fi
rm -rf "$probe"
echo "$SNAPSHOTTER" >"$STATE/snapshotter"
log "containerd snapshotter: $SNAPSHOTTER"

render containerd.toml.in "$STATE/containerd.toml"
render cni.conflist.in "$CNI_CONF_DIR/10-$CNI_NETWORK.conflist"
render kubelet.yaml.in "$STATE/kubelet.yaml"
render kube-proxy.yaml.in "$STATE/kube-proxy.yaml"
generate_pki

start etcd "$BIN/etcd" --name mcp-oidc --data-dir "$STATE/etcd" \
	--listen-client-urls "$ETCD_CLIENT_URL" --advertise-client-urls "$ETCD_CLIENT_URL" \
	--listen-peer-urls "$ETCD_PEER_URL" --initial-advertise-peer-urls "$ETCD_PEER_URL" \
	--initial-cluster "mcp-oidc=$ETCD_PEER_URL" --listen-metrics-urls "" \
	--unsafe-no-fsync --quota-backend-bytes 2147483648
wait_for "etcd health" 30 curl -fsS "$ETCD_CLIENT_URL/health"

start kube-apiserver "$BIN/kube-apiserver" \
	--etcd-servers "$ETCD_CLIENT_URL" \
	--advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port 6443 \
	--service-cluster-ip-range "$SERVICE_CIDR" \
	--client-ca-file "$PKI/ca.crt" \
	--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
	--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
	--kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
	--kubelet-certificate-authority "$PKI/ca.crt" \
	--kubelet-preferred-address-types InternalIP \
	--requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
	--requestheader-allowed-names front-proxy-client \
	--requestheader-username-headers X-Remote-User \
	--requestheader-group-headers X-Remote-Group \
	--requestheader-extra-headers-prefix X-Remote-Extra- \
	--proxy-client-cert-file "$PKI/front-proxy-client.crt" \
	--proxy-client-key-file "$PKI/front-proxy-client.key" \
	--authorization-mode Node,RBAC \
	--enable-admission-plugins NodeRestriction \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$PKI/sa.pub" \
	--service-account-signing-key-file "$PKI/sa.key" \
	--allow-privileged=true \
	--profiling=false
wait_for "kube-apiserver /readyz" 90 kubectl_admin get --raw /readyz

# down.sh undoes containerd's /run/netns bind mount only if there was none.
[[ -f $STATE/netns-unmounted ]] || mountpoint -q /run/netns || touch "$STATE/netns-unmounted"
start containerd "$(command -v containerd)" --config "$STATE/containerd.toml"
wait_for "containerd on $CONTAINERD_SOCK" 30 ctr --address "$CONTAINERD_SOCK" version
import_images

start kube-controller-manager "$BIN/kube-controller-manager" \
	--kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
	--authentication-kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
	--authorization-kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
	--bind-address 127.0.0.1 --leader-elect=false \
	--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
	--use-service-account-credentials=true \
	--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
	--service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
	--profiling=false
start kube-scheduler "$BIN/kube-scheduler" \
	--kubeconfig "$STATE/kube-scheduler.kubeconfig" \
	--authentication-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
	--authorization-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --leader-elect=false --profiling=false
start kubelet "$BIN/kubelet" \
	--config "$STATE/kubelet.yaml" \
	--kubeconfig "$STATE/kubelet.kubeconfig" \
	--root-dir "$KUBELET_DIR" --cert-dir "$KUBELET_DIR/pki" \
	--hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"

wait_for "node $NODE_NAME Ready" "$TIMEOUT" node_ready
wait_for "kube-proxy /healthz (Service rules programmed)" "$TIMEOUT" curl -fsS http://127.0.0.1:10256/healthz
wait_for "ServiceAccount default/default" "$TIMEOUT" kubectl_admin -n default get serviceaccount default
wait_for "ConfigMap default/kube-root-ca.crt" "$TIMEOUT" kubectl_admin -n default get configmap kube-root-ca.crt
log "started in $((SECONDS - start_time))s"
finish
