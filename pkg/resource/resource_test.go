package resource_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/resource"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
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
	sid := r.Header.Get(resource.SessionHeader)
	u.seen = append(u.seen, sid)
	switch {
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	case sid == "":
		w.Header().Set(resource.SessionHeader, "sess-"+r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

func as(r *http.Request, sub string) *http.Request {
	return r.WithContext(identity.NewContext(r.Context(), &identity.Identity{Subject: sub}))
}

func TestSessionBinding(t *testing.T) {
	store := session.NewMemory(session.MemoryOptions{})
	defer store.Close()
	up := &upstream{}
	h := resource.NewSessionBinder(store, time.Hour).Wrap(up)
	do := func(method, sub, sid, n string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/mcp?n="+n, strings.NewReader("{}"))
		if sid != "" {
			req.Header.Set(resource.SessionHeader, sid)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, as(req, sub))
		return rec
	}
	rec := do("POST", "alice", "", "1")
	if rec.Code != 200 || rec.Header().Get(resource.SessionHeader) != "sess-1" {
		t.Fatalf("initialize: %d %v", rec.Code, rec.Header())
	}
	if rec := do("POST", "alice", "sess-1", ""); rec.Code != http.StatusAccepted {
		t.Fatalf("owner: %d", rec.Code)
	}
	seenBefore := len(up.seen)
	rec = do("POST", "bob", "sess-1", "")
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "MCP session belongs to another user") {
		t.Fatalf("other user: %d %s", rec.Code, rec.Body)
	}
	if rec := do("DELETE", "bob", "sess-1", ""); rec.Code != http.StatusForbidden {
		t.Fatalf("other user's DELETE: %d", rec.Code)
	}
	if len(up.seen) != seenBefore {
		t.Fatal("the upstream saw another user's request for the session")
	}
	// Unknown ids are the upstream's business.
	if rec := do("POST", "bob", "sess-unknown", ""); rec.Code != http.StatusAccepted {
		t.Fatalf("unknown session: %d", rec.Code)
	}
	// The store never holds the id itself.
	if _, err := store.Get(context.Background(), "mcp-session:sess-1"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("raw session id stored: %v", err)
	}
	// DELETE by the owner removes the binding.
	if rec := do("DELETE", "alice", "sess-1", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("owner DELETE: %d", rec.Code)
	}
	if rec := do("POST", "bob", "sess-1", ""); rec.Code != http.StatusAccepted {
		t.Fatalf("after DELETE the binding should be gone: %d", rec.Code)
	}
}

// countingStore records the TTL of every Put into a real memory store.
type countingStore struct {
	resource.BindingStore
	puts []time.Duration
}

func (c *countingStore) Put(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	c.puts = append(c.puts, ttl)
	return c.BindingStore.Put(ctx, k, v, ttl)
}

// TestSessionBindingRenewed: a binding in use is renewed once half its TTL
// has passed, so a long-lived session never becomes unbound while used.
func TestSessionBindingRenewed(t *testing.T) {
	mem := session.NewMemory(session.MemoryOptions{})
	defer mem.Close()
	store := &countingStore{BindingStore: mem}
	now := time.Now()
	h := resource.NewSessionBinder(store, time.Hour).WithClock(func() time.Time { return now }).Wrap(&upstream{})
	do := func(sub, sid string) int {
		req := httptest.NewRequest("POST", "/mcp?n=1", nil)
		if sid != "" {
			req.Header.Set(resource.SessionHeader, sid)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, as(req, sub))
		return rec.Code
	}
	steps := []struct {
		advance  time.Duration
		sub, sid string
		status   int
		puts     int
	}{
		{0, "alice", "", 200, 1},                      // initialize binds
		{20 * time.Minute, "alice", "sess-1", 202, 1}, // young binding: no write
		{20 * time.Minute, "alice", "sess-1", 202, 2}, // past half the TTL: renewed
		{time.Minute, "alice", "sess-1", 202, 2},
		{0, "bob", "sess-1", 403, 2},
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		if got := do(st.sub, st.sid); got != st.status || len(store.puts) != st.puts {
			t.Fatalf("step %d: status %d, %d puts; want %d, %d", i, got, len(store.puts), st.status, st.puts)
		}
	}
	for _, ttl := range store.puts {
		if ttl != time.Hour {
			t.Fatalf("binding stored for %v, want the full TTL", ttl)
		}
	}
}

// TestSessionBindingNeedsIdentity: wired before authentication by mistake,
// the binder refuses rather than binding sessions to nobody.
func TestSessionBindingNeedsIdentity(t *testing.T) {
	store := session.NewMemory(session.MemoryOptions{})
	defer store.Close()
	up := &upstream{}
	rec := httptest.NewRecorder()
	resource.NewSessionBinder(store, time.Hour).Wrap(up).ServeHTTP(rec, httptest.NewRequest("POST", "/mcp?n=1", nil))
	if rec.Code != http.StatusUnauthorized || len(up.seen) != 0 {
		t.Fatalf("no identity: %d, upstream saw %v", rec.Code, up.seen)
	}
}

// failingStore fails every call: a Redis outage, which the memory store
// cannot produce.
type failingStore struct{}

var errDown = errors.New("store down")

func (failingStore) Put(context.Context, string, []byte, time.Duration) error { return errDown }
func (failingStore) Get(context.Context, string) ([]byte, error)              { return nil, errDown }
func (failingStore) Delete(context.Context, string) error                     { return errDown }

func TestSessionBindingStoreDown(t *testing.T) {
	up := &upstream{}
	h := resource.NewSessionBinder(failingStore{}, time.Hour).Wrap(up)
	req := httptest.NewRequest("POST", "/mcp", nil)
	req.Header.Set(resource.SessionHeader, "sess-1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, as(req, "alice"))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "session_store_unavailable") || len(up.seen) != 0 {
		t.Fatalf("lookup with store down: %d %s, upstream saw %v", rec.Code, rec.Body, up.seen)
	}
	// A session that cannot be bound is not handed out.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, as(httptest.NewRequest("POST", "/mcp?n=2", nil), "alice"))
	if rec.Code != 503 || rec.Header().Get(resource.SessionHeader) != "" || strings.Contains(rec.Body.String(), "jsonrpc") {
		t.Fatalf("unbindable session: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}

// outageStore is a working store that fails every call while down is set.
type outageStore struct {
	resource.BindingStore
	down atomic.Bool
}

func (s *outageStore) Put(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if s.down.Load() {
		return errDown
	}
	return s.BindingStore.Put(ctx, k, v, ttl)
}

func (s *outageStore) Get(ctx context.Context, k string) ([]byte, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.BindingStore.Get(ctx, k)
}

// While the store is down, a session this replica bound keeps working for
// its owner and stays refused to others; a session it never saw gets 503.
func TestSessionBindingDuringStoreOutage(t *testing.T) {
	mem := session.NewMemory(session.MemoryOptions{})
	defer mem.Close()
	store := &outageStore{BindingStore: mem}
	up := &upstream{}
	h := resource.NewSessionBinder(store, time.Hour).Wrap(up)
	send := func(sub, sid, n string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/mcp?n="+n, strings.NewReader("{}"))
		if sid != "" {
			req.Header.Set(resource.SessionHeader, sid)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, as(req, sub))
		return rec
	}
	if rec := send("alice", "", "1"); rec.Code != http.StatusOK || rec.Header().Get(resource.SessionHeader) != "sess-1" {
		t.Fatalf("initialize: %d %v", rec.Code, rec.Header())
	}
	store.down.Store(true)
	tests := []struct {
		sub, sid string
		want     int
	}{
		{"alice", "sess-1", http.StatusAccepted},
		{"bob", "sess-1", http.StatusForbidden},
		{"alice", "sess-unknown", http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		if rec := send(tt.sub, tt.sid, "2"); rec.Code != tt.want {
			t.Errorf("store down, %s with %s: %d %s, want %d", tt.sub, tt.sid, rec.Code, rec.Body, tt.want)
		}
	}
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
