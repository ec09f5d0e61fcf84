#!/usr/bin/env bash
# Stops the one-node cluster that hack/cluster/up.sh started and removes what
# it left on the machine: stops exactly the recorded pids (kube-proxy,
# kube-scheduler, kube-controller-manager, kubelet), kills every pod container
# through this cluster's containerd, stops containerd, kube-apiserver and etcd,
# unmounts everything under the state directory and the pods' network
# namespaces, deletes kube-proxy's nftables tables, the bridge mcpbr0 and the
# CNI state, and restores the two sysctls up.sh set. Logs stay in
# $MCP_CLUSTER_DIR/logs. Running it twice, or without an up, is fine.
#
#   hack/cluster/down.sh     # or: make cluster-down
#
# Settings (environment):
#   MCP_CLUSTER_DIR   state directory (default /var/lib/mcp-oidc-cluster)
set -euo pipefail

TOOL=cluster-down
# shellcheck source=hack/cluster/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_args "$@"
require_root

if [[ ! -d $STATE ]]; then
	log "nothing to do ($STATE does not exist)"
	STATE_MISSING=1
fi
if [[ -z ${STATE_MISSING-} && -z ${MCP_CLUSTER_LOCKED-} ]]; then
	exec 8>"$STATE/lock"
	flock 8
fi

netns=()
ids=()
if [[ -z ${STATE_MISSING-} ]]; then
	for c in kube-proxy kube-scheduler kube-controller-manager kubelet; do stop "$c"; done

	# The sandboxes' network namespaces and the container ids, from
	# containerd's metadata (readable also when containerd died): every
	# string there that looks like one, since the removed ones do no harm.
	meta=$CONTAINERD_DIR/root/io.containerd.metadata.v1.bolt/meta.db
	if [[ -f $meta ]]; then
		mapfile -t netns < <(grep -aoh '/var/run/netns/cni-[0-9a-f-]*' "$meta" | sort -u || true)
		mapfile -t ids < <(grep -aoh '[0-9a-f]\{64\}' "$meta" | sort -u || true)
	fi
	if [[ -n $(pid_of containerd) ]]; then
		mapfile -t live < <(ctr_k8s containers list -q 2>/dev/null || true)
		ids+=("${live[@]}")
		# Kill every container task, then remove them; the kubelet is gone, so
		# nothing restarts them.
		for id in "${live[@]}"; do ctr_k8s tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
		for id in "${live[@]}"; do
			for ((i = 0; i < 50; i++)); do
				status=$(ctr_k8s tasks list 2>/dev/null | awk -v id="$id" '$1 == id { print $3 }')
				[[ -n $status && $status != STOPPED ]] || break
				sleep 0.1
			done
			ctr_k8s tasks delete -f "$id" >/dev/null 2>&1 || true
		done
		((${#live[@]} == 0)) || log "killed ${#live[@]} pod container(s)"
	fi
	stop containerd
	# Shims of this containerd (their command line names its socket) that
	# outlived it, e.g. after a crash.
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		if [[ $cmd == *containerd-shim*"-address $CONTAINERD_SOCK "* ]]; then
			kill -KILL "${p#/proc/}" 2>/dev/null && log "killed leftover shim ${p#/proc/}" || true
		fi
	done
	# Pod processes that outlived their shims (after a containerd crash):
	# whatever is still in the kubelet's cgroup tree. Then the empty cgroups
	# the kubelet (kubepods) and containerd (k8s.io) made go, deepest first;
	# rmdir leaves any cgroup that is still in use.
	kube_cgroups() {
		find /sys/fs/cgroup -depth -type d \( -name kubepods -o -path '*/kubepods/*' -o \
			-name k8s.io -o -path '*/k8s.io/*' \) 2>/dev/null || true
	}
	pod_procs() {
		kube_cgroups | grep '/kubepods' | sed 's|$|/cgroup.procs|' | xargs -r cat 2>/dev/null | sort -u || true
	}
	mapfile -t orphans < <(pod_procs)
	if ((${#orphans[@]} > 0)); then
		kill -KILL "${orphans[@]}" 2>/dev/null || true
		log "killed ${#orphans[@]} leftover pod process(es)"
		for ((i = 0; i < 50; i++)); do
			[[ -n $(pod_procs) ]] || break
			sleep 0.1
		done
	fi
	kube_cgroups | xargs -r rmdir 2>/dev/null || true
	stop kube-apiserver
	stop etcd
fi

# Unmount everything under the state directory (volumes, sandbox shm,
# snapshots), deepest first.
unmount_under() {
	local prefix=$1 m i
	for ((i = 0; i < 5; i++)); do
		mapfile -t mounts < <(awk -v p="$prefix/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
		((${#mounts[@]} > 0)) || return 0
		for m in "${mounts[@]}"; do
			m=$(printf '%b' "$m") # mountinfo escapes spaces as \040
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
	done
	log "WARNING: mounts remain under $prefix"
}
unmount_under "$STATE"
for ns in "${netns[@]}"; do
	umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
	rm -f "$ns"
done
# containerd makes /run/netns a shared bind mount of itself; undo that when
# up.sh saw none and nothing else has a namespace there.
if [[ -f $STATE/netns-unmounted ]] && mountpoint -q /run/netns && [[ -z $(ls -A /run/netns) ]]; then
	umount /run/netns 2>/dev/null || true
fi

for family in ip ip6; do
	nft delete table "$family" kube-proxy 2>/dev/null || true
done
# The kubelet's iptables chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
# KUBE-IPTABLES-HINT): the jumps to them, then the chains; then the tables
# iptables-nft made for them when nothing else is left in them.
for ipt in iptables ip6tables; do
	command -v "$ipt" >/dev/null 2>&1 || continue
	family=ip
	[[ $ipt == iptables ]] || family=ip6
	for table in filter nat mangle; do
		"$ipt" -w 5 -t "$table" -S >/dev/null 2>&1 || continue
		for chain in $("$ipt" -w 5 -t "$table" -S | awk '$1 == "-P" { print $2 }'); do
			for num in $("$ipt" -w 5 -t "$table" -L "$chain" -n --line-numbers | awk '$2 ~ /^KUBE-/ { print $1 }' | sort -rn); do
				"$ipt" -w 5 -t "$table" -D "$chain" "$num"
			done
		done
		kube_chains=$("$ipt" -w 5 -t "$table" -S | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }')
		for chain in $kube_chains; do "$ipt" -w 5 -t "$table" -F "$chain"; done
		for chain in $kube_chains; do "$ipt" -w 5 -t "$table" -X "$chain"; done
		# The rules are read whole before grep looks at them: grep -q quits
		# at its first match, and a writer still writing then dies of
		# SIGPIPE, which pipefail would turn into the opposite answer.
		rules=$("$ipt" -w 5 -t "$table" -S 2>/dev/null) || rules=
		if [[ $("$ipt" -V) == *nf_tables* ]] &&
			! grep -qv '^-P [A-Z]* ACCEPT$' <<<"$rules"; then
			nft delete table "$family" "$table" 2>/dev/null || true
		fi
	done
done
if ip link show "$BRIDGE" >/dev/null 2>&1; then
	ip link delete "$BRIDGE"
	log "deleted bridge $BRIDGE"
fi
# libcni's result cache for this network and the sandboxes' loopback, and
# its directories when empty.
rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
for id in "${ids[@]}"; do rm -f /var/lib/cni/results/*-"$id"-* 2>/dev/null || true; done
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true

if [[ -z ${STATE_MISSING-} ]]; then
	if [[ -f $STATE/sysctl.orig ]]; then
		while IFS='=' read -r key value; do
			f=/proc/sys/${key//.//}
			[[ ! -f $f ]] || echo "$value" >"$f"
		done <"$STATE/sysctl.orig"
	fi
	# Everything but the logs (and the lock this run holds).
	for entry in "$STATE"/* "$STATE"/.[!.]*; do
		[[ -e $entry ]] || continue
		case ${entry##*/} in logs | logs.prev | lock) continue ;; esac
		rm -rf "$entry"
	done
	log "cluster is down; logs of the last run stay in $LOGS"
fi
