package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// TestClientCannotSendAnIdentityAssertion: X-MCP-Identity-Assertion is the
// proxy's statement of who is calling. A client's one, in any spelling an
// upstream stack may fold onto it ("_" for "-", any case), never reaches
// the MCP server: not on public paths, not from a trusted ingress, not in
// modes that add no assertion.
func TestClientCannotSendAnIdentityAssertion(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, vs := range r.Header {
			if strings.ReplaceAll(strings.ToLower(k), "_", "-") == "x-mcp-identity-assertion" {
				for _, v := range vs {
					w.Header().Add("Seen-Assertion", k+": "+v)
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer upstream.Close()

	facade := func(t *testing.T) *Server {
		return facadeServerWith(t, upstream.URL,
			"--oauth-identity-assertion", "--public-paths", "/public/*", "--trusted-proxies", "127.0.0.1/32")
	}
	bypass := func(t *testing.T) *Server {
		srv, err := New(context.Background(), bypassConfig(t, upstream.URL, "--trusted-proxies", "127.0.0.1/32"),
			Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	spellings := []string{"X-MCP-Identity-Assertion", "X-MCP_Identity-Assertion", "x_mcp_identity_assertion", "X-Mcp-Identity_Assertion"}
	tests := []struct {
		name   string
		server func(*testing.T) *Server
		target string
		peer   string
	}{
		{"assertion mode, public path", facade, "http://mcp.example.com/public/x", "192.0.2.1:4000"},
		{"assertion mode, public path, trusted ingress", facade, "http://mcp.example.com/public/x", "127.0.0.1:4000"},
		{"no assertion mode (bypass), protected path", bypass, "http://localhost/mcp", "192.0.2.1:4000"},
		{"no assertion mode (bypass), trusted ingress", bypass, "http://localhost/mcp", "127.0.0.1:4000"},
	}
	for _, tt := range tests {
		srv := tt.server(t)
		for _, key := range spellings {
			t.Run(tt.name+"/"+key, func(t *testing.T) {
				req := httptest.NewRequest(http.MethodGet, tt.target, nil)
				req.RemoteAddr = tt.peer
				req.Header[key] = []string{"forged"}
				rec := httptest.NewRecorder()
				srv.Handler().ServeHTTP(rec, req)
				if rec.Code != http.StatusNoContent {
					t.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				if seen := rec.Header().Values("Seen-Assertion"); len(seen) != 0 {
					t.Fatalf("the client's assertion reached the upstream: %q", seen)
				}
			})
		}
	}
}
