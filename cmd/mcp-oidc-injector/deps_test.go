package main

import (
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/godeps"
)

// TestInjectorLinksOnlyTheProbeEncoding keeps the sidecar's probe replay
// (and gRPC, which only the replay needs) out of the injector: the injector
// encodes probes, it never runs them.
func TestInjectorLinksOnlyTheProbeEncoding(t *testing.T) {
	deps := godeps.Of(t, ".")
	const module = "github.com/mcp-oidc-proxy/mcp-oidc-proxy/"
	var sawEncoding bool
	for _, d := range deps {
		switch {
		case d == module+"pkg/probe":
			sawEncoding = true
		case d == module+"pkg/probereplay",
			d == "google.golang.org/grpc" || strings.HasPrefix(d, "google.golang.org/grpc/"):
			t.Errorf("the injector links %s", d)
		}
	}
	// Guards the guard: the listing is the injector's, which does encode
	// probes.
	if !sawEncoding {
		t.Errorf("the injector does not link %spkg/probe; is this listing right? %d packages", module, len(deps))
	}
}
