# shellcheck shell=bash
# Sourced by hack/cluster/up.sh and down.sh: the one-node cluster's names,
# paths and addresses (shared with the tests, see /work/wt/COMMON.md "Cluster"),
# and the helpers both scripts use. The sourcing script sets TOOL first.
#
# Settings (environment):
#   MCP_CLUSTER_DIR   state directory (default /var/lib/mcp-oidc-cluster)
#   MCP_CLUSTER_BIN   where kubelet, kube-apiserver, etcd, ... are (default <repo>/bin)

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cluster_src=$repo_root/hack/cluster
STATE=${MCP_CLUSTER_DIR:-/var/lib/mcp-oidc-cluster}
BIN=${MCP_CLUSTER_BIN:-$repo_root/bin}

NODE_NAME=mcp-oidc-node
BRIDGE=mcpbr0
NODE_IP=198.18.0.1
POD_CIDR=198.18.0.0/24
SERVICE_CIDR=198.19.0.0/16
KUBERNETES_SERVICE_IP=198.19.0.1
APISERVER_URL=https://$NODE_IP:6443
# etcd listens on loopback ports below the ephemeral range, so the envtest
# etcd instances the unit tests start on random ports never collide with it.
ETCD_CLIENT_URL=http://127.0.0.1:12379
ETCD_PEER_URL=http://127.0.0.1:12380
CNI_BIN_DIR=/usr/lib/cni
CNI_NETWORK=mcp-oidc
SANDBOX_IMAGE=registry.k8s.io/pause:3.10

PKI=$STATE/pki
PIDS=$STATE/pids
LOGS=$STATE/logs
KUBECONFIG_ADMIN=$STATE/kubeconfig
CONTAINERD_DIR=$STATE/containerd
CONTAINERD_SOCK=$CONTAINERD_DIR/containerd.sock
KUBELET_DIR=$STATE/kubelet
CNI_CONF_DIR=$STATE/cni/net.d
CNI_DATA_DIR=$STATE/cni/networks

# Components in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver containerd kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { echo "$TOOL: $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# parse_args ARGS...: the scripts take no arguments; --help prints the
# calling script's header comment.
parse_args() {
	case ${1-} in
	"") ;;
	-h | --help)
		sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0" >&2
		exit 0
		;;
	*) die "unknown argument: $1 (try --help)" ;;
	esac
}

require_root() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (it creates a bridge, nftables rules, mounts and runs containerd and the kubelet); try: sudo make $TOOL"
}

# pid_of NAME: the recorded pid of a component when that process still runs
# the command it was started as; empty otherwise (a stale file from a reboot
# or a reused pid does not count).
pid_of() {
	local f=$PIDS/$1.pid pid
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 0
	[[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"$(<"$PIDS/$1.cmd")"* ]] || return 0
	echo "$pid"
}

# start NAME ARGS...: starts ARGS in its own session with output in
# LOGS/NAME.log, records the pid and the binary path it must still run.
start() {
	local name=$1
	shift
	[[ -x $1 ]] || die "$1 is missing or not executable"
	mkdir -p "$PIDS" "$LOGS"
	: >"$LOGS/$name.log"
	setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 8>&- &
	echo $! >"$PIDS/$name.pid"
	echo "$1" >"$PIDS/$name.cmd"
	log "started $name (pid $!, log $LOGS/$name.log)"
}

# running PID: the process exists and is not a zombie waiting to be reaped
# (a component outlives the up.sh that started it, so init reaps it).
running() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# stop NAME: SIGTERM the recorded pid, SIGKILL after 15 s, forget it.
stop() {
	local name=$1 pid i
	pid=$(pid_of "$name")
	if [[ -n $pid ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 150; i++)); do
			running "$pid" || break
			sleep 0.1
		done
		if running "$pid"; then
			log "$name (pid $pid) ignored SIGTERM for 15s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				running "$pid" || break
				sleep 0.1
			done
		fi
		log "stopped $name (pid $pid)"
	fi
	rm -f "$PIDS/$name.pid" "$PIDS/$name.cmd"
}

# ctr_k8s ARGS...: ctr against this cluster's containerd, CRI namespace.
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# kubectl_admin ARGS...: kubectl with the admin kubeconfig.
kubectl_admin() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# render TEMPLATE OUT: copies hack/cluster/TEMPLATE to OUT with every
# @NAME@ replaced by the shell variable NAME.
render() {
	local text name
	text=$(<"$cluster_src/$1")
	for name in STATE NODE_NAME BRIDGE NODE_IP POD_CIDR SERVICE_CIDR CNI_BIN_DIR CNI_CONF_DIR \
		CNI_DATA_DIR CNI_NETWORK SANDBOX_IMAGE CONTAINERD_DIR CONTAINERD_SOCK KUBELET_DIR PKI \
		SNAPSHOTTER KUBERNETES_SERVICE_IP; do
		text=${text//@$name@/${!name-}}
	done
	[[ $text != *@[A-Z]*@* ]] || die "template $1 has an unknown placeholder: $(grep -o '@[A-Z_]*@' <<<"$text" | head -1)"
	printf '%s\n' "$text" >"$2"
}

# tail_logs: the end of every component log, for a failed start.
tail_logs() {
	local f
	for f in "$LOGS"/*.log; do
		[[ -f $f ]] || continue
		echo "----- last 25 lines of $f" >&2
		tail -n 25 "$f" >&2
	done
}
