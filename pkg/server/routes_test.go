package server

import (
	"crypto/tls"
	"net/http"
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

func TestExternalBase(t *testing.T) {
	plain := httptest.NewRequest("GET", "http://pod:15080/x", nil)
	secure := httptest.NewRequest("GET", "https://mcp.example.com/x", nil)
	secure.TLS = &tls.ConnectionState{}
	tests := []struct {
		name, configured string
		req              *http.Request
		want             string
	}{
		{"configured wins", "https://mcp.example.com/", plain, "https://mcp.example.com"},
		{"configured with path", "https://gw.example.com/team/mcp/", plain, "https://gw.example.com/team/mcp"},
		{"from plain request", "", plain, "http://pod:15080"},
		{"from TLS request", "", secure, "https://mcp.example.com"},
	}
	for _, tt := range tests {
		if got := externalBase(tt.configured, tt.req); got != tt.want {
			t.Errorf("%s: externalBase = %q, want %q", tt.name, got, tt.want)
		}
	}
}
