#!/usr/bin/env bash
# Builds the kube-apiserver and etcd binaries that controller-runtime's envtest
# starts, from their Go modules (the only place this project may fetch code
# from), into bin/. The first run takes several minutes on 2 cores; later runs
# return at once while bin/.envtest-versions says the wanted versions are there.
#
#   export KUBEBUILDER_ASSETS="$(hack/envtest-bins.sh)"
#
# stdout carries only the KUBEBUILDER_ASSETS directory; progress goes to stderr.
#
# Settings (environment):
#   ENVTEST_KUBE_VERSION  k8s.io/kubernetes version            (default v1.36.3)
#   ENVTEST_ETCD_VERSION  go.etcd.io/etcd/server/v3 version    (default v3.6.16)
#   ENVTEST_BIN_DIR       where the binaries go                (default <repo>/bin)
#   GOPROXY, GOFLAGS, GOTOOLCHAIN, GOCACHE, GOMODCACHE are used as they are.
# Flags:
#   --force   rebuild even when the stamp file says the binaries are current
set -euo pipefail

KUBE_VERSION=${ENVTEST_KUBE_VERSION:-v1.36.3}
ETCD_VERSION=${ENVTEST_ETCD_VERSION:-v3.6.16}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=${ENVTEST_BIN_DIR:-$repo_root/bin}
STAMP=$BIN_DIR/.envtest-versions
# Bump when the way the binaries are built changes, so old builds are redone.
RECIPE=1

log() { echo "envtest-bins: $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

force=0
for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	-h | --help)
		sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
		exit 0
		;;
	*) die "unknown argument: $arg (try --help)" ;;
	esac
done

[[ $KUBE_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] ||
	die "ENVTEST_KUBE_VERSION must look like v1.36.3, got '$KUBE_VERSION'"
# k8s.io/kubernetes v1.Y.Z publishes its staging modules (k8s.io/api,
# k8s.io/apiserver, ...) as v0.Y.Z.
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
[[ $ETCD_VERSION =~ ^v3\.[0-9]+\.[0-9]+$ ]] ||
	die "ENVTEST_ETCD_VERSION must look like v3.6.16, got '$ETCD_VERSION'"

want_kube="kube-apiserver $KUBE_VERSION recipe $RECIPE"
want_etcd="etcd $ETCD_VERSION recipe $RECIPE"

# current NAME WANT: the binary exists and the stamp records the wanted build.
current() {
	[[ $force -eq 0 && -x $BIN_DIR/$1 && -f $STAMP ]] && grep -qxF "$2" "$STAMP"
}

if current kube-apiserver "$want_kube" && current etcd "$want_etcd"; then
	log "kube-apiserver $KUBE_VERSION and etcd $ETCD_VERSION already in $BIN_DIR"
	echo "$BIN_DIR"
	exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go 1.26 or newer"
mkdir -p "$BIN_DIR"

# Two runs at once (two make targets, two shells) would race on the same
# files; the second waits for the first and then finds the binaries current.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$BIN_DIR/.envtest.lock"
	if ! flock -n 9; then
		log "another envtest-bins.sh is building; waiting for it"
		flock 9
	fi
	if current kube-apiserver "$want_kube" && current etcd "$want_etcd"; then
		log "built by the other run: kube-apiserver $KUBE_VERSION, etcd $ETCD_VERSION"
		echo "$BIN_DIR"
		exit 0
	fi
fi

# The build modules live outside any go.work and must not pick one up.
export GOWORK=off
# Static binaries need no C compiler on the machine; upstream builds them so too.
export CGO_ENABLED=0
BUILD_ROOT=$BIN_DIR/.build
mkdir -p "$BUILD_ROOT"

# set_stamp NAME LINE: replace NAME's line in the stamp file.
set_stamp() {
	local tmp
	tmp=$(mktemp "$BIN_DIR/.envtest-versions.XXXXXX")
	{
		if [[ -f $STAMP ]]; then grep -v "^$1 " "$STAMP" || true; fi
		echo "$2"
	} >"$tmp"
	chmod 644 "$tmp"
	mv -f "$tmp" "$STAMP"
}

# elapsed START: seconds since START, for the log.
elapsed() { echo "$((SECONDS - $1))s"; }

build_kube_apiserver() {
	local start=$SECONDS dir="$BUILD_ROOT/kube-apiserver-$KUBE_VERSION"
	log "building kube-apiserver $KUBE_VERSION (staging modules $STAGING_VERSION); takes about 5 minutes on 2 cores"

	# A module of its own from the start, so no go command here touches the
	# repository's go.mod above it.
	rm -rf "$dir"
	mkdir -p "$dir"
	printf 'module envtest.local/kube-apiserver\n\ngo 1.26.0\n' >"$dir/go.mod"

	log "  fetching k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy"
	local kmod
	kmod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -n $kmod && -f $kmod ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION (is GOPROXY reachable?)"

	# k8s.io/kubernetes replaces its staging modules with ./staging/..., which
	# the published module does not contain, so it cannot be built or
	# installed by itself. A module of our own that requires it and points
	# each required staging module at its published v0.Y.Z can. The list comes
	# from kubernetes' own go.mod so a new staging module is never missed.
	local staging
	staging=$(awk '
		/^replace[[:space:]]*\(/ { inrep = 1; next }
		inrep && /^\)/ { inrep = 0; next }
		inrep && $2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }
		/^replace[[:space:]]/ && $3 == "=>" && $4 ~ /^\.\/staging\// { print $2 }
	' "$kmod" | sort -u)
	[[ -n $staging ]] || die "found no ./staging replace directives in $kmod; the build recipe needs updating"
	local required
	required=$(awk '
		/^require[[:space:]]*\(/ { inreq = 1; next }
		inreq && /^\)/ { inreq = 0; next }
		inreq { print $1 }
		/^require[[:space:]]/ && $2 != "(" { print $2 }
	' "$kmod" | sort -u)
	# Only the staging modules kubernetes requires enter the module graph;
	# some replaced ones (sample-controller, ...) are not published at all.
	local needed
	needed=$(comm -12 <(echo "$staging") <(echo "$required"))

	local goline godebug
	goline=$(grep -m1 -E '^go [0-9]' "$kmod") || die "no go line in $kmod"
	godebug=$(grep -E '^godebug[[:space:]]' "$kmod" || true)

	{
		echo "// Generated by hack/envtest-bins.sh; safe to delete."
		echo "module envtest.local/kube-apiserver"
		echo
		echo "$goline"
		[[ -n $godebug ]] && printf '\n%s\n' "$godebug"
		echo
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		echo
		echo "replace ("
		local m
		for m in $needed; do
			printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"
		done
		echo ")"
	} >"$dir/go.mod"
	log "  wrote $dir/go.mod ($(echo "$needed" | wc -w) staging modules -> $STAGING_VERSION)"

	# The same version stamping as kubernetes' hack/lib/version.sh, so the
	# server reports v1.Y.Z through /version and its compatibility version.
	local major=1 minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	local ldflags="-s -w" pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION"
		ldflags+=" -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		ldflags+=" -X $pkg.gitTreeState=clean"
		ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done

	log "  go build k8s.io/kubernetes/cmd/kube-apiserver (downloads its dependencies first)"
	(cd "$dir" && go build -mod=mod -trimpath -ldflags "$ldflags" \
		-o "$BIN_DIR/kube-apiserver.new" k8s.io/kubernetes/cmd/kube-apiserver) ||
		die "building kube-apiserver $KUBE_VERSION failed (module in $dir)"

	local got
	got=$("$BIN_DIR/kube-apiserver.new" --version 2>&1) || die "kube-apiserver --version failed: $got"
	[[ $got == "Kubernetes $KUBE_VERSION" ]] || die "kube-apiserver reports '$got', want 'Kubernetes $KUBE_VERSION'"
	mv -f "$BIN_DIR/kube-apiserver.new" "$BIN_DIR/kube-apiserver"
	# Only a failed build's module is kept, for looking into.
	rm -rf "$BUILD_ROOT"/kube-apiserver-*
	set_stamp kube-apiserver "$want_kube"
	log "  built $BIN_DIR/kube-apiserver ($got) in $(elapsed "$start")"
}

build_etcd() {
	local start=$SECONDS dir="$BUILD_ROOT/etcd-$ETCD_VERSION"
	log "building etcd $ETCD_VERSION; takes about 1-2 minutes on 2 cores"
	# The etcd command is the main package at the root of
	# go.etcd.io/etcd/server/v3. Its go.mod replaces sibling modules with
	# ../api etc., which `go install module@version` refuses; as a dependency
	# of our own module those replaces are ignored and the published
	# go.etcd.io/etcd/{api,client,pkg}/v3 of the same version are used.
	rm -rf "$dir"
	mkdir -p "$dir"
	{
		echo "// Generated by hack/envtest-bins.sh; safe to delete."
		echo "module envtest.local/etcd"
		echo
		echo "go 1.26.0"
		echo
		echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
	} >"$dir/go.mod"

	log "  go build go.etcd.io/etcd/server/v3 (downloads its dependencies first)"
	(cd "$dir" && go build -mod=mod -trimpath -ldflags "-s -w" \
		-o "$BIN_DIR/etcd.new" go.etcd.io/etcd/server/v3) ||
		die "building etcd $ETCD_VERSION failed (module in $dir)"

	local got
	got=$("$BIN_DIR/etcd.new" --version 2>&1) || die "etcd --version failed: $got"
	grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$got" ||
		die "etcd reports '$(head -1 <<<"$got")', want 'etcd Version: ${ETCD_VERSION#v}'"
	mv -f "$BIN_DIR/etcd.new" "$BIN_DIR/etcd"
	# Only a failed build's module is kept, for looking into.
	rm -rf "$BUILD_ROOT"/etcd-*
	set_stamp etcd "$want_etcd"
	log "  built $BIN_DIR/etcd ($(head -1 <<<"$got")) in $(elapsed "$start")"
}

log "using $(go version) GOPROXY=$(go env GOPROXY) GOFLAGS=$(go env GOFLAGS)"
current etcd "$want_etcd" || build_etcd
current kube-apiserver "$want_kube" || build_kube_apiserver

rmdir "$BUILD_ROOT" 2>/dev/null || true
log "done; use: export KUBEBUILDER_ASSETS=$BIN_DIR"
echo "$BIN_DIR"
