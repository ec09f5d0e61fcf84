package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

func facadeServer(t *testing.T, upstream string) *Server {
	t.Helper()
	return facadeServerWith(t, upstream,
		"--allowed-hosts", "10.0.0.7", // the pod IP, as the injector allows it
		"--oauth-identity-assertion", "--oauth-identity-assertion-audience", "https://mcp.example.com/mcp")
}

// facadeServerWith builds a façade-mode server for https://mcp.example.com
// in front of upstream, configured by flags as the binary is, plus extra.
func facadeServerWith(t *testing.T, upstream string, extra ...string) *Server {
	t.Helper()
	args := append([]string{
		"--upstream", upstream, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:1",
		// Never contacted: New does no network I/O and façade tokens are
		// validated from local keys.
		"--oidc-discovery-url", "http://127.0.0.1:9/", "--oidc-client-id", "proxy",
		"--external-url", "https://mcp.example.com",
		"--session-cookie-secret", strings.Repeat("k", 32),
	}, extra...)
	loaded, err := config.Load(config.Source{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(context.Background(), loaded.Config, Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// The identity assertion is signed with the façade's key for the upstream.
// Even when an operator sets its audience to the resource URL, it must not
// work as an access token at the MCP endpoint.
func TestIdentityAssertionIsNotAnAccessToken(t *testing.T) {
	reached := false
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }))
	defer upstream.Close()
	srv := facadeServer(t, upstream.URL)

	now := time.Now()
	assertion, err := srv.mcp.oauth.Signer().Sign(map[string]any{
		"iss": "https://mcp.example.com", "aud": "https://mcp.example.com/mcp", "sub": "mallory",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "x",
	})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+assertion)
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || reached {
		t.Fatalf("assertion as bearer: status %d, upstream reached %v; want 401 and not reached", rec.Code, reached)
	}
	if h := rec.Header().Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate = %q, want invalid_token", h)
	}
}

// Unauthenticated API callers get the MCP authorization spec's challenge
// pointing at the path-inserted metadata on the external URL.
func TestChallengeAndMetadataUseTheExternalURL(t *testing.T) {
	srv := facadeServer(t, "http://127.0.0.1:9")
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "http://10.0.0.7:15080/mcp", strings.NewReader(`{}`)))
	want := `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") != want {
		t.Fatalf("status %d, WWW-Authenticate %q; want 401 with %s", rec.Code, rec.Header().Get("WWW-Authenticate"), want)
	}
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://10.0.0.7:15080"+path, nil))
		var doc struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		if doc.Resource != "https://mcp.example.com/mcp" || len(doc.AuthorizationServers) != 1 || doc.AuthorizationServers[0] != "https://mcp.example.com" {
			t.Fatalf("%s: %+v, want the external resource and the façade as authorization server", path, doc)
		}
	}
}

// The expectation built once per base URL never answers one host with
// another's: requests alternating between hosts each expect their own
// issuer and audience.
func TestExpectFollowsTheBaseURL(t *testing.T) {
	a := &mcpAuth{base: func(r *http.Request) string { return "https://" + r.Host }, mcpPath: "/mcp"}
	for i, host := range []string{"a.example", "a.example", "b.example", "a.example", "b.example", "b.example"} {
		r := httptest.NewRequest(http.MethodGet, "https://"+host+"/mcp", nil)
		want := bearer.Expectation{Issuer: "https://" + host, Audience: "https://" + host + "/mcp"}
		if got := a.expect(r); got != want {
			t.Fatalf("request %d to %s expects %+v, want %+v", i, host, got, want)
		}
	}
}
