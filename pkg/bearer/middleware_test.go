package bearer_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

const metadataPath = "/.well-known/oauth-protected-resource/mcp"

type rsFixture struct {
	kp       keyPair
	jwks     *jwksServer
	handler  http.Handler
	next     chan *http.Request
	fellBack chan struct{}
}

func newRSFixture(t *testing.T, scopes []string, trusted []string, mods ...func(*bearer.ResourceOptions)) *rsFixture {
	t.Helper()
	f := &rsFixture{kp: newRSAKey(t, "k1"), next: make(chan *http.Request, 1), fellBack: make(chan struct{}, 1)}
	f.jwks = newJWKSServer(t, f.kp.pub)
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, JWKSURL: f.jwks.URL, Audiences: []string{testResource}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := forwarded.NewResolver(forwarded.Options{TrustedProxies: trusted})
	if err != nil {
		t.Fatal(err)
	}
	base := res.BaseURL
	opts := bearer.ResourceOptions{
		Validator:           v,
		RequiredScopes:      scopes,
		ResourceMetadataURL: func(r *http.Request) string { return base(r) + metadataPath },
	}
	for _, mod := range mods {
		mod(&opts)
	}
	rs := bearer.NewResourceServer(opts)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.next <- r
		w.WriteHeader(http.StatusNoContent)
	})
	// The fallback stands in for the cookie authenticator, which answers
	// unauthenticated requests with the resource server's challenge.
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.fellBack <- struct{}{}
		rs.Challenge(w, r)
	})
	f.handler = rs.Wrap(next, fallback)
	return f
}

func (f *rsFixture) do(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return rec
}

func mcpRequest(auth string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "http://proxy.internal:15080/mcp", strings.NewReader("{}"))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Message == "" {
		t.Fatalf("body %q is not the JSON error shape (%v)", rec.Body, err)
	}
	return body.Error.Code
}

func TestResourceServerAcceptsValidToken(t *testing.T) {
	f := newRSFixture(t, []string{"mcp:tools"}, nil)
	raw := sign(t, f.kp, claimsAt(time.Now()))
	rec := f.do(mcpRequest("bearer " + raw))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status = %d: %s", rec.Code, rec.Body)
	}
	r := <-f.next
	id := identity.FromContext(r.Context())
	if id == nil || id.Subject != "user-1" || id.Method != "bearer" || id.Email != "u@example.com" {
		t.Fatalf("identity = %+v", id)
	}
	if tok := bearer.FromContext(r.Context()); tok == nil || tok.ClientID != "client-1" {
		t.Fatalf("token in context = %+v", tok)
	}
	if got, ok := bearer.RawFromContext(r.Context()); ok || got != "" {
		t.Fatalf("RawFromContext without KeepRawToken = %q, %v; want nothing", got, ok)
	}
	if r.Header.Get("Authorization") != "" {
		t.Fatal("the client's token would be forwarded upstream")
	}
}

// With KeepRawToken the handler behind the resource server can read the
// validated token (token exchange's subject token), still without the
// Authorization header.
func TestResourceServerKeepsRawToken(t *testing.T) {
	f := newRSFixture(t, nil, nil, func(o *bearer.ResourceOptions) { o.KeepRawToken = true })
	raw := sign(t, f.kp, claimsAt(time.Now()))
	rec := f.do(mcpRequest("Bearer " + raw))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status = %d: %s", rec.Code, rec.Body)
	}
	r := <-f.next
	if got, ok := bearer.RawFromContext(r.Context()); !ok || got != raw {
		t.Fatalf("RawFromContext = %q, %v; want the validated token", got, ok)
	}
	if got, ok := bearer.RawFromContext(context.Background()); ok || got != "" {
		t.Fatalf("RawFromContext of a bare context = %q, %v; want nothing", got, ok)
	}
	if r.Header.Get("Authorization") != "" {
		t.Fatal("the client's token would be forwarded upstream")
	}
}

func TestResourceServerChallenges(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name      string
		scopes    []string
		trusted   []string
		remote    string
		forwarded map[string]string
		auth      func(f *rsFixture) string
		status    int
		code      string
		challenge string
		fellBack  bool
	}{
		{
			name: "no credentials: plain challenge", auth: func(*rsFixture) string { return "" },
			status: 401, code: "unauthenticated", fellBack: true,
			challenge: `Bearer resource_metadata="http://proxy.internal:15080` + metadataPath + `"`,
		},
		{
			name: "other scheme falls back", auth: func(*rsFixture) string { return "Basic dTpw" },
			status: 401, code: "unauthenticated", fellBack: true,
			challenge: `Bearer resource_metadata="http://proxy.internal:15080` + metadataPath + `"`,
		},
		{
			name: "no credentials, scopes configured", scopes: []string{"mcp:tools", "mcp:read"}, auth: func(*rsFixture) string { return "" },
			status: 401, code: "unauthenticated", fellBack: true,
			challenge: `Bearer scope="mcp:tools mcp:read", resource_metadata="http://proxy.internal:15080` + metadataPath + `"`,
		},
		{
			name: "trusted proxy sets the external URL", trusted: []string{"10.0.0.0/8"}, remote: "10.1.2.3:5555",
			forwarded: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mcp.example.com"},
			auth:      func(*rsFixture) string { return "" }, status: 401, code: "unauthenticated", fellBack: true,
			challenge: `Bearer resource_metadata="https://mcp.example.com` + metadataPath + `"`,
		},
		{
			name: "untrusted peer cannot spoof the external URL", trusted: []string{"10.0.0.0/8"}, remote: "192.0.2.9:5555",
			forwarded: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
			auth:      func(*rsFixture) string { return "" }, status: 401, code: "unauthenticated", fellBack: true,
			challenge: `Bearer resource_metadata="http://proxy.internal:15080` + metadataPath + `"`,
		},
		{
			name: "expired token", auth: func(f *rsFixture) string {
				c := claimsAt(now)
				c["exp"] = now.Add(-time.Hour).Unix()
				return "Bearer " + sign(t, f.kp, c)
			},
			status: 401, code: "unauthenticated",
			challenge: `Bearer error="invalid_token", error_description="token expired", resource_metadata="http://proxy.internal:15080` + metadataPath + `"`,
		},
		{
			name: "garbage token with scopes", scopes: []string{"mcp:tools"}, auth: func(*rsFixture) string { return "Bearer abc" },
			status: 401, code: "unauthenticated",
			challenge: `Bearer error="invalid_token", error_description="malformed token", scope="mcp:tools", resource_metadata="http://proxy.internal:15080` + metadataPath + `"`,
		},
		{
			name: "empty bearer", auth: func(*rsFixture) string { return "Bearer " }, status: 401, code: "unauthenticated",
			challenge: `Bearer error="invalid_token", error_description="malformed authorization header", resource_metadata="http://proxy.internal:15080` + metadataPath + `"`,
		},
		{
			name: "token with a space", auth: func(*rsFixture) string { return "Bearer abc def" }, status: 401, code: "unauthenticated",
			challenge: `Bearer error="invalid_token", error_description="malformed authorization header", resource_metadata="http://proxy.internal:15080` + metadataPath + `"`,
		},
		{
			name: "missing scope", scopes: []string{"mcp:admin"}, auth: func(f *rsFixture) string { return "Bearer " + sign(t, f.kp, claimsAt(now)) },
			status: 403, code: "forbidden",
			challenge: `Bearer error="insufficient_scope", scope="mcp:admin", resource_metadata="http://proxy.internal:15080` + metadataPath + `"`,
		},
		{
			name: "JWKS outage", auth: func(f *rsFixture) string {
				f.jwks.down.Store(true)
				return "Bearer " + sign(t, f.kp, claimsAt(now))
			},
			status: 503, code: "upstream_unavailable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newRSFixture(t, tt.scopes, tt.trusted)
			req := mcpRequest(tt.auth(f))
			if tt.remote != "" {
				req.RemoteAddr = tt.remote
			}
			for k, v := range tt.forwarded {
				req.Header.Set(k, v)
			}
			rec := f.do(req)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got := errorCode(t, rec); got != tt.code {
				t.Fatalf("code = %q, want %q", got, tt.code)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Fatalf("WWW-Authenticate = %s\n                 want %s", got, tt.challenge)
			}
			if got := len(f.fellBack) == 1; got != tt.fellBack {
				t.Fatalf("fell back to cookie auth = %v, want %v", got, tt.fellBack)
			}
			if len(f.next) != 0 {
				t.Fatal("a rejected request reached the upstream")
			}
		})
	}
}

func TestChallengeQuoting(t *testing.T) {
	got := bearer.Challenge("error_description", `bad "quote" and \ backslash`+"\r\nX-Injected: 1", "scope", "a b")
	want := `Bearer error_description="bad \"quote\" and \\ backslash` + `X-Injected: 1", scope="a b"`
	if got != want {
		t.Fatalf("Challenge = %s\n         want %s", got, want)
	}
}

// TestResourceServerMultipleAuthorization: a request carrying two
// Authorization headers is refused rather than authenticated by whichever
// one the proxy happens to read (or handed to the cookie login).
func TestResourceServerMultipleAuthorization(t *testing.T) {
	valid := func(f *rsFixture) string { return "Bearer " + sign(t, f.kp, claimsAt(time.Now())) }
	tests := []struct {
		name  string
		first func(f *rsFixture) string
		then  func(f *rsFixture) string
	}{
		{"two bearer tokens", valid, valid},
		{"Basic then bearer", func(*rsFixture) string { return "Basic dTpw" }, valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newRSFixture(t, nil, nil)
			req := mcpRequest(tt.first(f))
			req.Header.Add("Authorization", tt.then(f))
			rec := f.do(req)
			if rec.Code != 401 || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("got %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
			}
			if len(f.next) != 0 || len(f.fellBack) != 0 {
				t.Fatal("the request was passed on")
			}
		})
	}
}

// The resource server passes each request's expectation (here: its host as
// issuer and resource) to the validator, so one validator serves every host
// and a token for one host does not open another; without Expect a
// validator that needs one refuses everything.
func TestResourceServerPassesTheRequestsExpectation(t *testing.T) {
	kp := newECKey(t, "k1")
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{IssuerFromRequest: true, AudienceFromRequest: true,
		KeySet: func(context.Context) (*jose.JSONWebKeySet, error) {
			return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{kp.pub}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	claims := claimsAt(time.Now())
	claims["iss"], claims["aud"] = "https://a.example", "https://a.example/mcp"
	raw := sign(t, kp, claims)
	byHost := func(r *http.Request) bearer.Expectation {
		return bearer.Expectation{Issuer: "https://" + r.Host, Audience: "https://" + r.Host + "/mcp"}
	}
	tests := []struct {
		name   string
		expect func(*http.Request) bearer.Expectation
		host   string
		want   int
	}{
		{"expected host", byHost, "a.example", http.StatusNoContent},
		{"another host", byHost, "b.example", http.StatusUnauthorized},
		{"no expectation", nil, "a.example", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := bearer.NewResourceServer(bearer.ResourceOptions{
				Validator:           v,
				ResourceMetadataURL: func(r *http.Request) string { return "https://" + r.Host + metadataPath },
				Expect:              tt.expect,
			})
			h := rs.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }), http.NotFoundHandler())
			req := mcpRequest("Bearer " + raw)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

// cachedTokenHandler is a ResourceServer in external mode (the provider's
// keys fetched from its JWKS URL, the audience from each request) whose
// token has been validated once, so every later request is a cache hit,
// and a request carrying that token.
func cachedTokenHandler(t testing.TB) (http.Handler, func() *http.Request) {
	t.Helper()
	kp := newRSAKey(t, "k1")
	jwks := newJWKSServer(t, kp.pub)
	v, err := bearer.NewJWTValidator(bearer.JWTOptions{Issuer: testIssuer, JWKSURL: jwks.URL, AudienceFromRequest: true})
	if err != nil {
		t.Fatal(err)
	}
	want := bearer.Expectation{Audience: testResource}
	var served int
	rs := bearer.NewResourceServer(bearer.ResourceOptions{
		Validator:           v,
		ResourceMetadataURL: func(*http.Request) string { return "https://mcp.example.com" + metadataPath },
		Expect:              func(*http.Request) bearer.Expectation { return want },
		RequiredScopes:      []string{"mcp:tools"},
	})
	h := rs.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := identity.FromContext(r.Context()); id == nil || id.Subject != "user-1" || id.Method != bearer.Method {
			t.Fatalf("identity behind the resource server = %+v", id)
		}
		served++
		w.WriteHeader(http.StatusNoContent)
	}), http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Fatal("fell back to the cookie authenticator") }))
	auth := []string{"Bearer " + sign(t, kp, claimsAt(time.Now()))}
	req := httptest.NewRequest(http.MethodGet, testResource, nil)
	// The resource server removes the header (from the map the request
	// copies share), so each request puts it back.
	next := func() *http.Request { req.Header["Authorization"] = auth; return req }
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, next())
	if served != 1 || w.code != http.StatusNoContent {
		t.Fatalf("first request: status %d, served %d", w.code, served)
	}
	return h, next
}

// discardWriter is a ResponseWriter that remembers only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// A request with a token validated before costs the resource server the
// request copy and its two context values (identity and token) and
// nothing else: no copy of the claims or of the identity, no key lookup
// that allocates, no expectation built per request.
func TestResourceServerCachedTokenAllocations(t *testing.T) {
	h, next := cachedTokenHandler(t)
	w := &discardWriter{h: http.Header{}}
	const maxAllocs = 3
	if n := testing.AllocsPerRun(200, func() {
		w.code = 0
		h.ServeHTTP(w, next())
		if w.code != http.StatusNoContent {
			t.Fatalf("status %d, want 204", w.code)
		}
	}); n > maxAllocs {
		t.Fatalf("a request with a cached token allocates %.0f times in the resource server, want at most %d", n, maxAllocs)
	}
}

// BenchmarkResourceServerCachedToken is the resource server's own cost for
// a request whose token was validated before (external mode), the common
// case: hashing the token, the cache and key checks, and the context.
func BenchmarkResourceServerCachedToken(b *testing.B) {
	h, next := cachedTokenHandler(b)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.code = 0
		h.ServeHTTP(w, next())
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d, want 204", w.code)
		}
	}
}
