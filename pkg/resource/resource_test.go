package resource_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/resource"
)

func newMetadata(t *testing.T, external string) *resource.Metadata {
	t.Helper()
	res, err := forwarded.NewResolver(forwarded.Options{ExternalURL: external})
	if err != nil {
		t.Fatal(err)
	}
	base := res.BaseURL
	m, err := resource.NewMetadata(resource.MetadataOptions{
		BaseURL: base, MCPPath: "/mcp", AuthorizationServers: []string{"https://idp.example.com"},
		ScopesSupported: []string{"openid", "mcp:tools"}, ResourceName: "Demo MCP",
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMetadataAtBothPaths(t *testing.T) {
	mux := http.NewServeMux()
	newMetadata(t, "").Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, p := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: status %d, err %v, headers %v", p, resp.StatusCode, err, resp.Header)
		}
		// The document is built from Host / X-Forwarded-*: shared caches
		// must key on them.
		if v := resp.Header.Get("Vary"); !strings.Contains(v, "Host") || !strings.Contains(v, "X-Forwarded-Host") || !strings.Contains(v, "X-Forwarded-Proto") {
			t.Fatalf("%s: Vary = %q", p, v)
		}
		if doc["resource"] != srv.URL+"/mcp" || doc["resource_name"] != "Demo MCP" {
			t.Fatalf("%s: doc = %v", p, doc)
		}
		if as, _ := doc["authorization_servers"].([]any); len(as) != 1 || as[0] != "https://idp.example.com" {
			t.Fatalf("authorization_servers = %v", doc["authorization_servers"])
		}
		if bm, _ := doc["bearer_methods_supported"].([]any); len(bm) != 1 || bm[0] != "header" {
			t.Fatalf("bearer_methods_supported = %v", doc["bearer_methods_supported"])
		}
	}
	// Preflight, unauthenticated.
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/.well-known/oauth-protected-resource/mcp", nil)
	req.Header.Set("Origin", "https://inspector.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Mcp-Session-Id") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestMetadataSelfAuthorizationServer(t *testing.T) {
	res, _ := forwarded.NewResolver(forwarded.Options{ExternalURL: "https://mcp.example.com"})
	base := res.BaseURL
	m, err := resource.NewMetadata(resource.MetadataOptions{BaseURL: base, MCPPath: "/mcp", SelfAuthorizationServer: true})
	if err != nil {
		t.Fatal(err)
	}
	doc := m.Document(httptest.NewRequest("GET", "/", nil))
	if len(doc.AuthorizationServers) != 1 || doc.AuthorizationServers[0] != "https://mcp.example.com" {
		t.Fatalf("doc = %+v", doc)
	}
	if _, err := resource.NewMetadata(resource.MetadataOptions{BaseURL: base, MCPPath: "mcp"}); err == nil {
		t.Fatal("bad options accepted")
	}
}

// checkResourceAllowed is the TypeScript SDK's check (src/shared/auth-utils.ts)
// transcribed: the metadata's resource (configured) must have the origin of
// the URL the user typed (requested), and its path, with a trailing slash
// added, must prefix the requested path with a trailing slash added.
func checkResourceAllowed(requested, configured string) bool {
	r, err1 := url.Parse(requested)
	c, err2 := url.Parse(configured)
	if err1 != nil || err2 != nil {
		return false
	}
	origin := func(u *url.URL) string {
		port := u.Port()
		if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
			port = ""
		}
		h := strings.ToLower(u.Hostname())
		if port != "" {
			h += ":" + port
		}
		return strings.ToLower(u.Scheme) + "://" + h
	}
	if origin(r) != origin(c) {
		return false
	}
	pathname := func(u *url.URL) string {
		if u.EscapedPath() == "" {
			return "/"
		}
		return u.EscapedPath()
	}
	rp, cp := pathname(r), pathname(c)
	if len(rp) < len(cp) {
		return false
	}
	if !strings.HasSuffix(rp, "/") {
		rp += "/"
	}
	if !strings.HasSuffix(cp, "/") {
		cp += "/"
	}
	return strings.HasPrefix(rp, cp)
}

// resourceURLFromServerURL is the TS SDK's resourceUrlFromServerUrl.
func resourceURLFromServerURL(u string) string {
	before, _, _ := strings.Cut(u, "#")
	return before
}

func TestCheckResourceAllowedTranscription(t *testing.T) {
	tests := []struct {
		requested, configured string
		want                  bool
	}{
		{"https://a.example/mcp", "https://a.example/mcp", true},
		{"https://a.example/mcp/", "https://a.example/mcp", true},
		{"https://a.example/mcp", "https://a.example/mcp/", false},
		{"https://a.example/mcp/sub", "https://a.example/mcp", true},
		{"https://a.example/mcp123", "https://a.example/mcp", false},
		{"https://a.example/mcp", "https://a.example", true},
		{"https://a.example:443/mcp", "https://a.example/mcp", true},
		{"https://a.example:8443/mcp", "https://a.example/mcp", false},
		{"http://a.example/mcp", "https://a.example/mcp", false},
	}
	for _, tt := range tests {
		if got := checkResourceAllowed(tt.requested, tt.configured); got != tt.want {
			t.Errorf("checkResourceAllowed(%s, %s) = %v", tt.requested, tt.configured, got)
		}
	}
}

// TestResourcePassesSDKChecks: the resource in our metadata passes the
// TypeScript SDK's check for the URLs users type, and the Go SDK's exact
// check when fetched through oauthex for the path-inserted URL the
// challenge advertises.
func TestResourcePassesSDKChecks(t *testing.T) {
	mux := http.NewServeMux()
	m := newMetadata(t, "")
	m.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	typed := []string{srv.URL + "/mcp", srv.URL + "/mcp/", srv.URL + "/mcp#frag", srv.URL + "/mcp?x=1"}
	for _, p := range m.Paths() {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		var doc resource.Document
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		for _, u := range typed {
			if !checkResourceAllowed(resourceURLFromServerURL(u), doc.Resource) {
				t.Errorf("TS SDK rejects resource %q (from %s) for %q", doc.Resource, p, u)
			}
		}
	}
	// Go SDK: the challenge's resource_metadata URL with the server URL.
	req := httptest.NewRequest("GET", srv.URL+"/mcp", nil)
	req.Host = strings.TrimPrefix(srv.URL, "http://")
	prm, err := oauthex.GetProtectedResourceMetadata(context.Background(), m.URL(req), srv.URL+"/mcp", srv.Client())
	if err != nil {
		t.Fatalf("Go SDK: %v", err)
	}
	if prm.Resource != srv.URL+"/mcp" {
		t.Fatalf("Go SDK resource = %q", prm.Resource)
	}
	if !strings.HasSuffix(m.URL(req), "/.well-known/oauth-protected-resource/mcp") {
		t.Fatalf("advertised metadata URL = %q", m.URL(req))
	}
}

func guardHandler(t *testing.T, allowed ...string) (http.Handler, *int) {
	t.Helper()
	res, _ := forwarded.NewResolver(forwarded.Options{ExternalURL: "https://mcp.example.com"})
	base := res.BaseURL
	g := resource.NewOriginGuard(resource.OriginOptions{AllowedOrigins: allowed, BaseURL: base})
	calls := new(int)
	return g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*calls++
		w.WriteHeader(http.StatusUnauthorized) // stands in for authentication
	})), calls
}

func TestOriginGuard(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		origin    string
		preflight bool
		status    int
		acao      string
		reached   bool
	}{
		{"no Origin: non-browser client", "POST", "", false, 401, "", true},
		{"allowed origin", "POST", "https://app.example.com", false, 401, "https://app.example.com", true},
		{"allowed origin, default port", "POST", "https://app.example.com:443", false, 401, "https://app.example.com:443", true},
		{"own origin always allowed", "POST", "https://mcp.example.com", false, 401, "https://mcp.example.com", true},
		{"foreign origin", "POST", "https://evil.example", false, 403, "", false},
		{"rebinding: other port", "POST", "https://app.example.com:8443", false, 403, "", false},
		{"null origin", "POST", "null", false, 403, "", false},
		{"preflight allowed, no auth", "OPTIONS", "https://app.example.com", true, 204, "https://app.example.com", false},
		{"preflight foreign", "OPTIONS", "https://evil.example", true, 403, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, calls := guardHandler(t, "https://app.example.com")
			req := httptest.NewRequest(tt.method, "https://mcp.example.com/mcp", nil)
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.preflight {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization, mcp-session-id")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || rec.Header().Get("Access-Control-Allow-Origin") != tt.acao || (*calls == 1) != tt.reached {
				t.Fatalf("status %d, ACAO %q, reached %v: %s", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"), *calls == 1, rec.Body)
			}
			if tt.status == 403 && !strings.Contains(rec.Body.String(), "origin not allowed") {
				t.Fatalf("body = %s", rec.Body)
			}
			if tt.acao != "" {
				for _, h := range []string{"WWW-Authenticate", "Mcp-Session-Id", "MCP-Protocol-Version"} {
					if !strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), h) {
						t.Fatalf("%s not exposed: %v", h, rec.Header())
					}
				}
			}
			if tt.preflight && tt.status == 204 {
				for _, h := range []string{"Authorization", "Content-Type", "Mcp-Session-Id", "MCP-Protocol-Version", "Last-Event-ID"} {
					if !strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), h) {
						t.Fatalf("%s not allowed: %v", h, rec.Header())
					}
				}
			}
		})
	}
}

// upstream is an MCP-like server: initialize creates a session; it
// records the session ids it sees.
type upstream struct {
	seen []string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sid := r.Header.Get("Mcp-Session-Id")
	u.seen = append(u.seen, sid)
	switch {
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	case sid == "":
		w.Header().Set("Mcp-Session-Id", "sess-"+r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

func as(r *http.Request, sub string) *http.Request {
	return r.WithContext(identity.NewContext(r.Context(), &identity.Identity{Subject: sub}))
}

// joseSigner is a local go-jose signer standing in for the façade's key
// manager.
type joseSigner struct {
	key *rsa.PrivateKey
	kid string
}

func (s joseSigner) KID() string { return s.kid }

func (s joseSigner) Sign(claims map[string]any) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: s.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		return "", err
	}
	return jwt.Signed(sig).Claims(claims).Serialize()
}

var _ resource.Signer = joseSigner{}

func TestAsserter(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer := joseSigner{key: key, kid: "proxy-1"}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "proxy-1", Algorithm: "RS256", Use: "sig"}}}
	res, _ := forwarded.NewResolver(forwarded.Options{ExternalURL: "https://mcp.example.com"})
	base := res.BaseURL
	a, err := resource.NewAsserter(signer, resource.AsserterOptions{Issuer: base, Audience: "mcp-server"})
	if err != nil {
		t.Fatal(err)
	}
	var got string
	h := a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = identity.AssertionFromContext(r.Context()) }))
	req := httptest.NewRequest("POST", "/mcp", nil)
	req.Header.Set(resource.AssertionHeader, "spoofed")
	req = req.WithContext(identity.NewContext(req.Context(), &identity.Identity{Subject: "alice", Email: "a@example.com", Groups: []string{"dev"}, Method: "bearer"}))
	h.ServeHTTP(httptest.NewRecorder(), req)

	// Verify as the MCP server would: with the public JWKS, via the
	// proxy's own JWT validator.
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: "https://mcp.example.com", Audiences: []string{"mcp-server"},
		KeySet: func(context.Context) (*jose.JSONWebKeySet, error) { return &jwks, nil }})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := v.Validate(context.Background(), got, bearer.Expectation{})
	if err != nil {
		t.Fatalf("assertion %q does not verify: %v", got, err)
	}
	if tok.Subject != "alice" || tok.Identity.Email != "a@example.com" || len(tok.Identity.Groups) != 1 || !tok.Expiry.Before(time.Now().Add(61*time.Second)) {
		t.Fatalf("assertion = %+v", tok)
	}

	// Without identity, nothing is asserted (a client's header is the
	// proxy's to strip: pkg/proxy TestClientForwardingHeaders).
	req = httptest.NewRequest("POST", "/mcp", nil)
	req.Header.Set(resource.AssertionHeader, "spoofed")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if got != "" {
		t.Fatalf("assertion without an identity: %q", got)
	}
}
