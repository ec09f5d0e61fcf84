package publicpath_test

import (
	"net/http/httptest"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/publicpath"
)

func TestPublicPathsRejectPathTricks(t *testing.T) {
	p := publicpath.New([]string{"/public/*", "/status"})
	tests := []struct {
		path string
		want bool
	}{
		{"/status", true},
		{"/status/", false},
		{"/statusx", false},
		{"/public/a", true},
		{"/public/a/b.css", true},
		{"/public/", true},
		{"/public", false},
		{"/publicity", false},
		{"/public/../mcp", false},
		{"/public/./a", false},
		{"/public//mcp", false},
		{"/public/a/../../mcp", false},
		{"//public/a", false},
		{"/public\\..\\mcp", false},
		{"/public/..;/mcp", false},
		{"/public/a;jsessionid=x", false},
		{"/public/%2e%2e/mcp", false},
		{"/public/a\x00", false},
		{"/public/a\r\nb", false},
		{"/mcp", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := p.Match(tt.path); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestPublicPathsMatchDecodedPathOnly(t *testing.T) {
	// The router sees r.URL.Path, which net/http has already decoded, so
	// "/public/%2e%2e/mcp" arrives as "/public/../mcp" and must not match.
	p := publicpath.New([]string{"/public/*"})
	r := httptest.NewRequest("GET", "/public/%2e%2e/mcp", nil)
	if p.Match(r.URL.Path) {
		t.Fatalf("encoded dot-dot %q matched a public prefix", r.URL.Path)
	}
}
