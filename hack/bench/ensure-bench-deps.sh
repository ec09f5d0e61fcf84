#!/usr/bin/env bash
# Installs what `make bench` needs beyond the test dependencies, or says
# exactly what to install. Kept apart from hack/ensure-test-deps.sh because
# the tests never need a load generator (hack/bench's smoke test uses its Go
# closed loop). oauth2-proxy, the other thing make bench needs, is built by
# hack/oauth2-proxy-bin.sh.
#   wrk  the closed-loop HTTP load generator hack/bench drives (Debian package wrk)
set -euo pipefail

if ! command -v wrk >/dev/null 2>&1; then
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		echo "ensure-bench-deps: installing wrk from Debian packages"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends wrk >/dev/null
	else
		echo "ensure-bench-deps: missing wrk (the HTTP load generator hack/bench runs)." >&2
		echo "  install with: sudo apt-get install -y wrk" >&2
		exit 1
	fi
fi
echo "ensure-bench-deps: $(wrk --version 2>&1 | head -n1)"
