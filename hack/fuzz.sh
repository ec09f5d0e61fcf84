#!/usr/bin/env bash
# Runs every go test -fuzz target of the project, one after another, each for
# FUZZTIME (go test -fuzz takes one package and one target per run). The
# targets are listed here, in one place; their seed corpora (f.Add and
# testdata/fuzz/<Target>/) also run as ordinary tests in `go test`.
#
#   hack/fuzz.sh                 every target for FUZZTIME (default 10s)
#   FUZZTIME=60s hack/fuzz.sh    what `make fuzz FUZZTIME=60s` runs
#   hack/fuzz.sh FuzzValidate    only the named targets
#
# Settings (environment):
#   FUZZTIME      how long each target runs (go test -fuzztime)   (default 10s)
#   FUZZPARALLEL  fuzzing workers per target (go test -parallel)  (default 2)
#   FUZZMINIMIZE  bound on minimizing a failing input             (default 500x)
#                 (go test -fuzzminimizetime; unbounded, a minimization still
#                 running when FUZZTIME ends can hide the failure)
#   GO            the go command                                  (default go)
# A finding stops the run with go test's failure; the failing input is
# written to testdata/fuzz/<Target>/ of its package, where it becomes a
# regression seed once the bug is fixed.
set -euo pipefail

FUZZTIME=${FUZZTIME:-10s}
FUZZPARALLEL=${FUZZPARALLEL:-2}
FUZZMINIMIZE=${FUZZMINIMIZE:-500x}
GO=${GO:-go}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# package target
targets=(
	"./pkg/session FuzzCodecDecode"
	"./pkg/session FuzzTicketRoundTrip"
	"./pkg/session FuzzTicketOpen"
	"./pkg/returnurl FuzzValidate"
	"./pkg/inject FuzzMutate"
	"./pkg/inject FuzzAnnotations"
	"./pkg/probe FuzzDecode"
	"./pkg/probereplay FuzzPathRoundTrip"
	"./pkg/probereplay FuzzReplayStaysOnLoopback"
	"./pkg/bearer FuzzJWTValidate"
	"./pkg/bearer FuzzChallenge"
	"./pkg/forwarded FuzzBaseURL"
	"./pkg/bearer FuzzAuthorizationHeader"
	"./pkg/proxy FuzzForwardedHeaders"
	"./pkg/oauth FuzzRedirectURI"
	"./pkg/oauth FuzzCIMDURL"
	"./pkg/publicpath FuzzPublicPaths"
	"./pkg/mcpguard FuzzParseBody"
	"./pkg/mcpguard FuzzSSEFilter"
	"./pkg/mcpguard FuzzJSONListFilter"
	"./pkg/mcppolicy FuzzCompile"
	"./pkg/mcppath FuzzMatch"
	"./pkg/mcpsession FuzzOpen"
)

selected() {
	local want
	for want in "${@:2}"; do
		[[ $want == "$1" ]] && return 0
	done
	return 1
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
ran=0
for entry in "${targets[@]}"; do
	read -r pkg name <<<"$entry"
	if [[ $# -gt 0 ]] && ! selected "$name" "$@"; then
		continue
	fi
	echo "== $name ($pkg) for $FUZZTIME" >&2
	"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" -parallel "$FUZZPARALLEL" "$pkg" 2>&1 | tee "$log"
	# go test passes when the package has no such target: a stale entry
	# here would fuzz nothing, silently.
	if grep -q 'no fuzz tests to fuzz' "$log"; then
		echo "fuzz.sh: $pkg has no fuzz target $name; fix the list in hack/fuzz.sh" >&2
		exit 1
	fi
	ran=$((ran + 1))
done
if [[ $ran -eq 0 ]]; then
	echo "fuzz.sh: no target named $*" >&2
	exit 1
fi
