package publicpath_test

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/publicpath"
)

// FuzzPublicPaths checks the paths that skip authentication. A path is
// matched only if it is clean (no dot segments, "//", backslash, ";", "%"
// or control character) and under a configured public path, and it stays
// under it however an upstream normalises or decodes it once more.
func FuzzPublicPaths(f *testing.F) {
	for _, s := range []string{
		"/public/a", "/public/../mcp", "/public/%2e%2e/mcp", "/public/..;/mcp", "/public%2f..%2fmcp",
		"//public/a", "/public//a", "/public\\..\\mcp", "/public/\x00", "/health", "/health/", "/PUBLIC/a",
		"/public/a/", "/public", "/public/.", "/healthz",
	} {
		f.Add(s)
	}
	p := publicpath.New([]string{"/public/*", "/health"})
	f.Fuzz(func(t *testing.T, raw string) {
		if !p.Match(raw) {
			return
		}
		if strings.ContainsAny(raw, "\\;%") || strings.Contains(raw, "//") ||
			strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("public path %q holds a character an upstream may read differently", raw)
		}
		for _, seg := range strings.Split(raw, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("public path %q has a dot segment", raw)
			}
		}
		dec, err := url.PathUnescape(raw)
		if err != nil {
			t.Fatalf("public path %q does not decode: %v", raw, err)
		}
		for _, form := range []string{raw, path.Clean(raw), dec, path.Clean(dec)} {
			if form != "/health" && !strings.HasPrefix(form, "/public/") && form != "/public" {
				t.Fatalf("public path %q reads as %q, outside the public paths", raw, form)
			}
		}
	})
}
