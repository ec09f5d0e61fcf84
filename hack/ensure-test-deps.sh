#!/usr/bin/env bash
# Installs what the test suites need when it is missing, or says exactly
# what to install. Idempotent and quick when everything is present.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)

if ((${#need_apt[@]} > 0)); then
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		echo "ensure-test-deps: installing ${need_apt[*]} from Debian packages"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
		# The package starts a system-wide server; the tests start their own
		# on free ports and do not need it.
		if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || true; fi
	else
		echo "ensure-test-deps: missing ${need_apt[*]}." >&2
		echo "  install it with: sudo apt-get install -y ${need_apt[*]}" >&2
		exit 1
	fi
fi
echo "ensure-test-deps: redis-server $(redis-server --version | awk '{print $3}')"
