package server

import (
	"net/http/httptest"
	"testing"
)

func TestPublicPathsRejectPathTricks(t *testing.T) {
	p := newPublicPaths([]string{"/public/*", "/status"})
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
		{"/mcp", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := p.match(tt.path); got != tt.want {
			t.Errorf("match(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestPublicPathsMatchDecodedPathOnly(t *testing.T) {
	// The router sees r.URL.Path, which net/http has already decoded, so
	// "/public/%2e%2e/mcp" arrives as "/public/../mcp" and must not match.
	p := newPublicPaths([]string{"/public/*"})
	r := httptest.NewRequest("GET", "/public/%2e%2e/mcp", nil)
	if p.match(r.URL.Path) {
		t.Fatalf("encoded dot-dot %q matched a public prefix", r.URL.Path)
	}
}

func TestRulesFromParsesRequiredClaims(t *testing.T) {
	cfg := bypassConfig(t, "http://127.0.0.1:1", "--authz-required-claims", "tenant=acme, roles = mcp")
	got := rulesFrom(cfg).RequiredClaims
	if len(got) != 2 || got["tenant"] != "acme" || got["roles"] != "mcp" {
		t.Fatalf("RequiredClaims = %v, want tenant=acme and roles=mcp", got)
	}
}
