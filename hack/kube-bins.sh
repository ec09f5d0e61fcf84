#!/usr/bin/env bash
# Builds the node and control-plane commands of the one-node test cluster
# (hack/cluster) from the k8s.io/kubernetes Go module (the only place this
# project may fetch code from), at the same version as the envtest
# kube-apiserver, into bin/: kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy and kubectl, version-stamped so they report v1.Y.Z. The first run
# takes several minutes on 2 cores; later runs return at once while
# bin/.kube-bins-versions says the wanted versions are there.
#
#   hack/kube-bins.sh        # then: make cluster-up
#
# stdout carries only the directory of the binaries; progress goes to stderr.
#
# Settings (environment):
#   KUBE_BINS_VERSION     k8s.io/kubernetes version (default $ENVTEST_KUBE_VERSION, else v1.36.3)
#   KUBE_BINS_DIR         where the binaries go     (default <repo>/bin)
#   GOPROXY, GOFLAGS, GOTOOLCHAIN, GOCACHE, GOMODCACHE are used as they are.
# Flags:
#   --force   rebuild even when the stamp file says the binaries are current
set -euo pipefail

KUBE_VERSION=${KUBE_BINS_VERSION:-${ENVTEST_KUBE_VERSION:-v1.36.3}}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=${KUBE_BINS_DIR:-$repo_root/bin}
STAMP=$BIN_DIR/.kube-bins-versions
# Bump when the way the binaries are built changes, so old builds are redone.
RECIPE=1
TOOL=kube-bins
# shellcheck source=hack/lib/toolbuild.sh
. "$repo_root/hack/lib/toolbuild.sh"
parse_flags "$@"

STAGING_VERSION=$(kube_staging_version "$KUBE_VERSION" KUBE_BINS_VERSION)
COMMANDS=(kubelet kube-proxy kube-scheduler kube-controller-manager kubectl)

# missing: the commands whose binary or stamp line is not the wanted build.
missing() {
	local c
	for c in "${COMMANDS[@]}"; do
		current "$c" "$c $KUBE_VERSION recipe $RECIPE" || echo "$c"
	done
}

if [[ -z $(missing) ]]; then
	log "${COMMANDS[*]} $KUBE_VERSION already in $BIN_DIR"
	echo "$BIN_DIR"
	exit 0
fi

prepare_build .kube-bins.lock
mapfile -t todo < <(missing)
if ((${#todo[@]} == 0)); then
	log "built by the other run: ${COMMANDS[*]} $KUBE_VERSION"
	echo "$BIN_DIR"
	exit 0
fi

log "using $(go version) GOPROXY=$(go env GOPROXY) GOFLAGS=$(go env GOFLAGS)"
log "building ${todo[*]} $KUBE_VERSION (staging modules $STAGING_VERSION); takes several minutes on 2 cores the first time"
dir="$BUILD_ROOT/kube-bins-$KUBE_VERSION"
kube_module "$dir" "$KUBE_VERSION"
for c in "${todo[@]}"; do
	start=$SECONDS
	log "  go build k8s.io/kubernetes/cmd/$c"
	build_kube_command "$dir" "$KUBE_VERSION" "$c"
	set_stamp "$c" "$c $KUBE_VERSION recipe $RECIPE"
	log "  built $BIN_DIR/$c ($KUBE_COMMAND_VERSION) in $(elapsed "$start")"
done
# Only a failed build's module is kept, for looking into.
rm -rf "$BUILD_ROOT"/kube-bins-*
rmdir "$BUILD_ROOT" 2>/dev/null || true
log "done"
echo "$BIN_DIR"
