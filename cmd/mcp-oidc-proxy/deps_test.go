package main

import (
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/godeps"
)

// TestSidecarLinksNoKubernetesPackages keeps client-go, controller-runtime
// and the Kubernetes API types out of the sidecar, which runs next to every
// MCP server replica: they cost it megabytes of binary and of memory at
// start-up for nothing it uses. Its TLS reload is pkg/certreload, and the
// probe hand-over (pkg/probe) has its own Kubernetes-compatible types.
func TestSidecarLinksNoKubernetesPackages(t *testing.T) {
	deps := godeps.Of(t, ".")
	const module = "github.com/mcp-oidc-proxy/mcp-oidc-proxy/"
	forbidden := []string{
		"k8s.io/client-go", "sigs.k8s.io/controller-runtime", "k8s.io/api", "k8s.io/apimachinery",
		// What those pull in; none is needed on its own either.
		"k8s.io/klog", "k8s.io/utils", "k8s.io/kube-openapi", "sigs.k8s.io/",
	}
	seen := map[string]bool{}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("the sidecar links %s", d)
			}
		}
		seen[d] = true
	}
	// Guards the guard: the listing is the sidecar's, which reloads its
	// certificate and replays probes.
	for _, want := range []string{module + "pkg/certreload", module + "pkg/probereplay", module + "pkg/server"} {
		if !seen[want] {
			t.Errorf("the sidecar does not link %s; is this listing right? %d packages", want, len(deps))
		}
	}
}
