// Package godeps lists what a package links, for tests that keep a binary
// free of dependencies it must not carry (the sidecar of Kubernetes
// packages and of template execution, the injector of the probe replay).
package godeps

import (
	"os/exec"
	"strings"
	"testing"
)

// Of returns `go list -deps [flags] pkg`, run from the test's directory;
// flags are build flags such as "-tags", "grpcnotrace".
func Of(t testing.TB, pkg string, flags ...string) []string {
	t.Helper()
	var deps []string
	for _, line := range list(t, pkg, "{{.ImportPath}}", flags) {
		deps = append(deps, strings.TrimSpace(line))
	}
	return deps
}

// Importers maps each package pkg links to the packages among them that
// import it directly.
func Importers(t testing.TB, pkg string, flags ...string) map[string][]string {
	t.Helper()
	importers := map[string][]string{}
	for _, line := range list(t, pkg, "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", flags) {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			importers[imp] = append(importers[imp], f[0])
		}
	}
	return importers
}

func list(t testing.TB, pkg, format string, flags []string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test runs `go list`; put the Go toolchain on PATH: %v", err)
	}
	args := append([]string{"list", "-deps", "-f", format}, flags...)
	out, err := exec.Command(goBin, append(args, pkg)...).Output()
	if err != nil {
		t.Fatalf("go %s %s: %v", strings.Join(args, " "), pkg, err)
	}
	var lines []string
	for line := range strings.Lines(string(out)) {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}
