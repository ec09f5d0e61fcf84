# shellcheck shell=bash
# Sourced by hack/envtest-bins.sh and hack/helm-bin.sh: what every "build a
# tool from its Go module into bin/, cached by a stamp file" script shares.
# The sourcing script sets TOOL (the log prefix), BIN_DIR and STAMP first.

log() { echo "$TOOL: $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# parse_flags ARGS...: sets force=1 for --force; --help prints the calling
# script's header comment.
parse_flags() {
	force=0
	local arg
	for arg in "$@"; do
		case $arg in
		--force) force=1 ;;
		-h | --help)
			sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0" >&2
			exit 0
			;;
		*) die "unknown argument: $arg (try --help)" ;;
		esac
	done
}

# current NAME WANT: bin/NAME exists and the stamp records the wanted build.
current() {
	[[ $force -eq 0 && -x $BIN_DIR/$1 && -f $STAMP ]] && grep -qxF "$2" "$STAMP"
}

# set_stamp NAME LINE: replace NAME's line in the stamp file atomically.
set_stamp() {
	local tmp
	tmp=$(mktemp "$STAMP.XXXXXX")
	{
		if [[ -f $STAMP ]]; then grep -v "^$1 " "$STAMP" || true; fi
		echo "$2"
	} >"$tmp"
	chmod 644 "$tmp"
	mv -f "$tmp" "$STAMP"
}

# prepare_build LOCKNAME: checks for go, creates BIN_DIR, and serialises
# concurrent runs (two make targets, two shells) on BIN_DIR/LOCKNAME; the
# caller re-checks what is current afterwards, since a run it waited for may
# have built it. Then sets up the environment every build here uses.
prepare_build() {
	command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go 1.26 or newer"
	mkdir -p "$BIN_DIR"
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$BIN_DIR/$1"
		if ! flock -n 9; then
			log "another $TOOL run is building; waiting for it"
			flock 9
		fi
	fi
	# The build modules live outside any go.work and must not pick one up.
	export GOWORK=off
	# Static binaries need no C compiler on the machine; upstream builds them so too.
	export CGO_ENABLED=0
	BUILD_ROOT=$BIN_DIR/.build
	mkdir -p "$BUILD_ROOT"
}
