package mcppath_test

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppath"
)

// FuzzMatch checks Match on arbitrary paths: it never panics, and a path a
// lenient router resolves to the MCP endpoint (path.Clean, lower case, no
// trailing slash; or the same after dropping each segment's ";parameters",
// as servlet containers do) always matches, whether it arrives decoded
// (Path) or as sent (RawPath), so no spelling reaches the MCP server
// undecided.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{
		"/mcp", "/MCP/", "//mcp", "/a/../mcp", "/./mcp/.", "/mcp;x=1", "/x;y/../mcp", "/%6dcp",
		"/mcp%2f", "/%2e%2e/mcp", "/\\mcp", "mcp", "/mcpx", "/mcp/x", "/K", "/mcp\x00", "/m%zzcp",
	} {
		f.Add(s, "/mcp")
	}
	f.Add("/api/mcp", "/api/MCP/")
	f.Fuzz(func(t *testing.T, p, configured string) {
		if !strings.HasPrefix(configured, "/") {
			return
		}
		m := mcppath.New(configured)
		u := &url.URL{Path: p}
		got := m.Match(u)
		if raw := u.EscapedPath(); raw != p {
			u.RawPath = raw
			got = got && m.Match(u)
		}
		want := strings.TrimSuffix(strings.ToLower(path.Clean(configured)), "/")
		if want == "" {
			want = "/"
		}
		for _, spelling := range []string{p, dropParams(p)} {
			resolved := strings.ToLower(path.Clean(spelling))
			if resolved != "/" {
				resolved = strings.TrimSuffix(resolved, "/")
			}
			if resolved == want && !got {
				t.Fatalf("New(%q).Match(%q) = false; a router resolving %q reaches %q", configured, p, spelling, resolved)
			}
		}
	})
}

// dropParams removes the ";parameters" of every segment.
func dropParams(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	return strings.Join(segs, "/")
}
