package mcppath_test

import (
	"net/url"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppath"
)

func TestMatch(t *testing.T) {
	m := mcppath.New("/mcp")
	for _, tc := range []struct {
		target string
		want   bool
	}{
		{"/mcp", true},
		{"/mcp/", true},
		{"/MCP", true},
		{"//mcp", true},
		{"/./mcp", true},
		{"/x/../mcp", true},
		{"/%6dcp", true},
		{"/%256dcp", true},
		{"/mcp;jsessionid=1", true},
		{"/mcp?x=1", true},
		{"/\\mcp", true},
		{"/mcp%00", true},
		{"/mcp%00x", true},
		{"/mcp%20", true},
		{"/mcp%09", true},
		{"/mcp%0d%0a", true},
		{"/mcp.", true},
		{"/mcp%2e%2e", true},
		{"/MCP/%20.", true},
		{"/mcp%3fx=1", true},
		{"/mcp%23x", true},
		{"/mcp%253fx", true},
		{"/mcp%3bx", true},
		{"/mcpx", false},
		{"/mcp.json", false},
		{"/mcp%20x", false},
		{"/x%00/mcp", false},
		{"/mcp/x", false},
		{"/", false},
		{"/other", false},
	} {
		u, err := url.ParseRequestURI(tc.target)
		if err != nil {
			t.Fatalf("%q: %v", tc.target, err)
		}
		if got := m.Match(u); got != tc.want {
			t.Errorf("Match(%q) = %v, want %v", tc.target, got, tc.want)
		}
	}
	if !mcppath.New("/api/MCP/").Match(&url.URL{Path: "/api/mcp"}) {
		t.Error("a configured path with a trailing slash and capitals does not match its plain spelling")
	}
}
