#!/usr/bin/env bash
# Installs what the test suites need when it is missing, or says exactly
# what to install. Idempotent and quick when everything is present.
#   redis-server  the shared session store (test/redisserver starts its own);
#                 also the Sentinels of test/fault (redis-server --sentinel:
#                 Debian's redis-sentinel package adds only a service and a
#                 symlink to the same binary, so it is not installed)
#   chromium      Debian's headless browser for test/browser (chromedp)
#   node, npm     the official TypeScript MCP SDK client in test/interop
#   the one-node cluster of hack/cluster (test/cluster):
#     containerd, runc            the container runtime (containerd 1.6 in Debian 12)
#     containernetworking-plugins CNI bridge, host-local and loopback, in /usr/lib/cni
#     nftables, conntrack         kube-proxy's nftables mode
#     iptables                    the kubelet's canary and firewall chains
#     iproute2, openssl, curl     the bridge, the throwaway PKI, health checks in up.sh
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v containerd >/dev/null 2>&1 || need_apt+=(containerd)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
	need_apt+=(containernetworking-plugins)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v conntrack >/dev/null 2>&1 || need_apt+=(conntrack)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)

if ((${#need_apt[@]} > 0)); then
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		echo "ensure-test-deps: installing ${need_apt[*]} from Debian packages"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
		# The redis package starts a system-wide server; the tests start
		# their own on free ports and do not need it.
		if [[ " ${need_apt[*]} " == *" redis-server "* ]] && command -v service >/dev/null 2>&1; then
			service redis-server stop >/dev/null 2>&1 || true
		fi
		# Likewise the containerd package's system service: hack/cluster
		# starts its own containerd with its own socket and state.
		if [[ " ${need_apt[*]} " == *" containerd "* ]] && command -v service >/dev/null 2>&1; then
			service containerd stop >/dev/null 2>&1 || true
		fi
	else
		echo "ensure-test-deps: missing ${need_apt[*]}." >&2
		echo "  install with: sudo apt-get install -y ${need_apt[*]}" >&2
		exit 1
	fi
fi
echo "ensure-test-deps: redis-server $(redis-server --version | awk '{print $3}')"
echo "ensure-test-deps: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium (version unknown)')"
echo "ensure-test-deps: node $(node --version), npm $(npm --version)"
echo "ensure-test-deps: $(containerd --version | awk '{print $1, $3}'), runc $(runc --version | awk 'NR == 1 {print $3}')"
echo "ensure-test-deps: containernetworking-plugins $(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null ||
	echo '(not from a Debian package)') in /usr/lib/cni, $(/usr/lib/cni/bridge --version 2>&1 | grep -m1 'protocol versions')"
echo "ensure-test-deps: $(nft --version), conntrack $(conntrack --version | awk '{print $2}'), $(iptables --version)"
