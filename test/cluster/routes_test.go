package cluster

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// serviceEndpointIPs reads the pod IPs kube-proxy routes the Service
// ns/name to from its nftables rules (mode nftables, hack/cluster): the
// addresses its service chain's load-balancing map translates to, as
// kube-proxy v1.36 writes it,
//
//	chain service-2QRHZV4L-ns/name/tcp/http {
//		meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 198.18.0.14 . 8080, 1 : 198.18.0.15 . 8080 }
//	}
//
// or, with per-endpoint chains (session affinity, older versions), the
// endpoint chains it jumps to ("goto endpoint-...__198.18.0.14/8080").
//
// This is what new connections to the ClusterIP actually reach, which the
// EndpointSlices say only once kube-proxy has synced them.
func serviceEndpointIPs(ctx context.Context, ns, name string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "nft", "list", "table", "ip", "kube-proxy").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("nft list table ip kube-proxy: %w: %s", err, out)
	}
	return endpointIPsIn(string(out), ns, name), nil
}

// endpointIPsIn parses `nft list table ip kube-proxy` (serviceEndpointIPs).
func endpointIPsIn(table, ns, name string) []string {
	prefix := "-" + ns + "/" + name + "/tcp/"
	dest := regexp.MustCompile(`goto endpoint-[^ ,}]*__([0-9.]+)/[0-9]+|[0-9]+ : ([0-9.]+) \. [0-9]+`)
	var ips []string
	inService := false
	for line := range strings.Lines(table) {
		line = strings.TrimSpace(line)
		if chain, ok := strings.CutPrefix(line, "chain "); ok {
			inService = strings.HasPrefix(chain, "service-") && strings.Contains(chain, prefix)
			continue
		}
		if !inService {
			continue
		}
		for _, m := range dest.FindAllStringSubmatch(line, -1) {
			ip := m[1] + m[2]
			if !slices.Contains(ips, ip) {
				ips = append(ips, ip)
			}
		}
	}
	slices.Sort(ips)
	return ips
}

// waitServiceRouted waits until kube-proxy sends new connections to the
// Service only to the current pods: after a rollout the endpoints of the
// old pods leave the EndpointSlices first and kube-proxy's rules up to a
// second later, and a connection made in between reaches a pod that is
// gone (a reset through the ingress).
func (s *suite) waitServiceRouted(t *testing.T) {
	t.Helper()
	var want []string
	for _, p := range s.app.pods {
		want = append(want, p.Status.PodIP)
	}
	slices.Sort(want)
	eventually(t, serviceTimeout, fmt.Sprintf("kube-proxy to route the Service %s/mcp-server to exactly %v", s.appNS, want), func() error {
		ctx, cancel := apiCtx()
		defer cancel()
		got, err := serviceEndpointIPs(ctx, s.appNS, "mcp-server")
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("kube-proxy routes it to %v", got)
		}
		return nil
	})
}

func TestEndpointIPsIn(t *testing.T) {
	table := `table ip kube-proxy {
	chain service-ULMVA6XW-apps/mcp-server/tcp/http {
		ip daddr 198.19.86.43 tcp dport 80 ip saddr != 198.18.0.0/24 jump mark-for-masquerade
		numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-apps/mcp-server/tcp/http__198.18.0.14/8080, 1 : goto endpoint-7BZQ3YHM-apps/mcp-server/tcp/http__198.18.0.15/8080 }
	}
	chain service-AAAAAAAA-apps/mcp-server-other/tcp/http {
		numgen random mod 1 vmap { 0 : goto endpoint-BBBBBBBB-apps/mcp-server-other/tcp/http__198.18.0.99/8080 }
	}
	chain endpoint-5OJB2KTY-apps/mcp-server/tcp/http__198.18.0.14/8080 {
		ip saddr 198.18.0.14 jump mark-for-masquerade
		meta l4proto tcp dnat to 198.18.0.14:8080
	}
	chain endpoint-CCCCCCCC-apps/mcp-server/tcp/http__198.18.0.13/8080 {
		meta l4proto tcp dnat to 198.18.0.13:8080
	}
}
`
	if got := endpointIPsIn(table, "apps", "mcp-server"); !slices.Equal(got, []string{"198.18.0.14", "198.18.0.15"}) {
		t.Fatalf("endpointIPsIn = %v, want the two the service chain jumps to (not a leftover endpoint chain, not another Service's)", got)
	}
	// kube-proxy v1.36 (hack/cluster): the service chain translates itself.
	table = `table ip kube-proxy {
	map service-ips {
		elements = { 198.19.86.43 . tcp . 80 : goto service-2QRHZV4L-apps/mcp-server/tcp/http }
	}
	chain service-2QRHZV4L-apps/mcp-server/tcp/http {
		ip daddr 198.19.86.43 tcp dport 80 ip saddr != 198.18.0.0/24 jump mark-for-masquerade
		meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 198.18.0.15 . 8080, 1 : 198.18.0.14 . 8080 }
	}
	chain service-AAAAAAAA-apps/mcp-server-other/tcp/http {
		meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 198.18.0.99 . 8080 }
	}
}
`
	if got := endpointIPsIn(table, "apps", "mcp-server"); !slices.Equal(got, []string{"198.18.0.14", "198.18.0.15"}) {
		t.Fatalf("endpointIPsIn = %v, want the two the service chain translates to", got)
	}
	if got := endpointIPsIn(table, "apps", "none"); len(got) != 0 {
		t.Fatalf("endpointIPsIn of an unknown Service = %v", got)
	}
}
