package main

import (
	"os"
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

// TestSidecarExecutesNoTemplates keeps template execution out of the
// sidecar. Executing a text/template or html/template looks methods up by
// names known only at run time, and once a binary can do that the linker
// must keep every exported method of every type: 9.5 MB of the 33 MB the
// sidecar weighed with it (its target is 30 MB). The proxy's pages are
// built in pkg/oauth/page.go; grpc's golang.org/x/net/trace (debug pages
// on http.DefaultServeMux) is left out by the grpcnotrace build tag that
// every sidecar build uses. cel-go imports text/template for a prompt
// helper the sidecar never calls, and is the one importer allowed.
func TestSidecarExecutesNoTemplates(t *testing.T) {
	tags := makefileVar(t, "SIDECAR_TAGS")
	if !strings.Contains(","+tags+",", ",grpcnotrace,") {
		t.Fatalf("the Makefile's SIDECAR_TAGS is %q; without grpcnotrace grpc links golang.org/x/net/trace and its templates", tags)
	}
	importers := godeps.Importers(t, ".", "-tags", tags)
	for _, pkg := range []string{"html/template", "golang.org/x/net/trace"} {
		if by := importers[pkg]; len(by) > 0 {
			t.Errorf("the sidecar links %s (imported by %q)", pkg, by)
		}
	}
	allowed := map[string]bool{"github.com/google/cel-go/cel": true, "html/template": true}
	for _, by := range importers["text/template"] {
		if !allowed[by] {
			t.Errorf("%s imports text/template into the sidecar", by)
		}
	}
	// Guards the guard: without the tag, grpc does link x/net/trace.
	if len(godeps.Importers(t, ".")["golang.org/x/net/trace"]) == 0 {
		t.Error("without build tags the sidecar does not link golang.org/x/net/trace; is grpcnotrace still needed, and is this listing right?")
	}
}

// makefileVar reads `NAME := value` from the repository's Makefile.
func makefileVar(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, name+" :="); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("the Makefile sets no %s", name)
	return ""
}
