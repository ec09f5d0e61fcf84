// Package godeps lists what a package links, for tests that keep a binary
// free of dependencies it must not carry (the sidecar of Kubernetes
// packages, the injector of the probe replay).
package godeps

import (
	"os/exec"
	"strings"
	"testing"
)

// Of returns `go list -deps pkg`, run from the test's directory.
func Of(t testing.TB, pkg string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test runs `go list`; put the Go toolchain on PATH: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}
