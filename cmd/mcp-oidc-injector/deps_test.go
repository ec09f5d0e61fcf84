package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestInjectorLinksOnlyTheProbeEncoding keeps the sidecar's probe replay
// (and gRPC, which only the replay needs) out of the injector: the injector
// encodes probes, it never runs them.
func TestInjectorLinksOnlyTheProbeEncoding(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test runs `go list`; put the Go toolchain on PATH: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
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
