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
		{"/mcpx", false},
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
