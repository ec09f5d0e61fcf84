package oauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/ratelimit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
)

const (
	issuer   = "https://mcp.example.com"
	resource = "https://mcp.example.com/mcp"
	loopCB   = "http://127.0.0.1:45123/callback"
)

// testUserWrapper stands in for the cookie login (authn.Middleware): it puts
// the identity named by X-Test-User into the context.
func testUserWrapper(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sub := r.Header.Get("X-Test-User"); sub != "" {
			r = r.WithContext(identity.NewContext(r.Context(), &identity.Identity{
				Subject: sub, Email: sub + "@example.com", EmailVerified: true, Name: "User " + sub,
				Username: sub, Groups: []string{"staff"}, Method: "cookie",
			}))
		}
		next.ServeHTTP(w, r)
	})
}

func pemKeys(t *testing.T) [][]byte {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rDER, err := x509.MarshalPKCS8PrivateKey(rk)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rDER}),
	}
}

// env is one or more Server instances sharing a store, each behind its own
// httptest server, all answering as the same issuer (like replicas behind
// one load balancer).
type env struct {
	t     *testing.T
	clock *fakeclock.Clock
	store session.Store
	srvs  []*oauth.Server
	urls  []string
	next  int
}

type envOpt func(*oauth.Options)

func newEnv(t *testing.T, store session.Store, replicas int, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, clock: fakeclock.New(time.Now()), store: store}
	keys := pemKeys(t)
	for range replicas {
		o := oauth.Options{
			Store:       store,
			BaseURL:     func(*http.Request) string { return issuer },
			Resources:   func(*http.Request) []string { return []string{resource} },
			Scopes:      []string{"mcp:tools", "mcp:resources"},
			SigningKeys: keys,
			Now:         e.clock.Now,
		}
		for _, f := range opts {
			f(&o)
		}
		s, err := oauth.New(o)
		if err != nil {
			t.Fatalf("oauth.New: %v", err)
		}
		mux := http.NewServeMux()
		s.Register(mux, testUserWrapper)
		hs := httptest.NewServer(mux)
		t.Cleanup(hs.Close)
		e.srvs = append(e.srvs, s)
		e.urls = append(e.urls, hs.URL)
	}
	return e
}

func newMemEnv(t *testing.T, opts ...envOpt) *env {
	m := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = m.Close() })
	return newEnv(t, m, 1, opts...)
}

// url returns the next replica's base URL (round robin), so consecutive
// steps land on different instances.
func (e *env) url() string {
	u := e.urls[e.next%len(e.urls)]
	e.next++
	return u
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (e *env) do(req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

func (e *env) register(body any) (*http.Response, map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.url()+oauth.PathRegister, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	resp, rb := e.do(req)
	var m map[string]any
	_ = json.Unmarshal(rb, &m)
	return resp, m
}

// registerPublic registers a public client with loopCB and returns its id.
func (e *env) registerPublic() string {
	e.t.Helper()
	resp, m := e.register(map[string]any{"redirect_uris": []string{loopCB}, "token_endpoint_auth_method": "none", "client_name": "Test Client"})
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("register: %d %v", resp.StatusCode, m)
	}
	return m["client_id"].(string)
}

func authParams(clientID, verifier string) url.Values {
	return url.Values{
		"client_id": {clientID}, "redirect_uri": {loopCB}, "response_type": {"code"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
		"state": {"st-123"}, "resource": {resource}, "scope": {"mcp:tools"},
	}
}

func (e *env) authorize(q url.Values) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url()+oauth.PathAuthorize+"?"+q.Encode(), nil)
	return e.do(req)
}

// local rewrites an absolute issuer URL onto a replica.
func (e *env) local(abs string) string {
	return e.url() + strings.TrimPrefix(abs, issuer)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// consentPage opens the consent step as user and returns the response and
// the CSRF token when a page was rendered.
func (e *env) consentPage(location, user string) (*http.Response, string, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.local(location), nil)
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	resp, b := e.do(req)
	m := csrfRE.FindSubmatch(b)
	if m == nil {
		return resp, "", string(b)
	}
	return resp, string(m[1]), string(b)
}

func (e *env) consentPost(requestID, csrf, action, user string) (*http.Response, []byte) {
	e.t.Helper()
	form := url.Values{"request": {requestID}, "csrf": {csrf}, "action": {action}}
	req, _ := http.NewRequest(http.MethodPost, e.url()+oauth.PathConsent, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Test-User", user)
	return e.do(req)
}

// code runs authorize + consent (approve) for clientID as user and returns
// the authorization code.
func (e *env) code(clientID, verifier, user string) string {
	e.t.Helper()
	code, _ := e.codeWith(authParams(clientID, verifier), user)
	return code
}

func (e *env) codeWith(q url.Values, user string) (string, url.Values) {
	e.t.Helper()
	resp, body := e.authorize(q)
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("authorize: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, issuer+oauth.PathConsent) {
		e.t.Fatalf("authorize redirected to %q, want the consent step", loc)
	}
	resp, csrf, _ := e.consentPage(loc, user)
	if resp.StatusCode == http.StatusOK {
		u, _ := url.Parse(loc)
		resp, _ = e.consentPost(u.Query().Get("request"), csrf, "approve", user)
	}
	cb := callback(e.t, resp)
	if cb.Get("code") == "" {
		e.t.Fatalf("no code in callback %v", cb)
	}
	return cb.Get("code"), cb
}

// callback checks resp redirects to the client and returns its query.
func callback(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("want a redirect to the client, got %d", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || u.Scheme+"://"+u.Host+u.Path != loopCB {
		t.Fatalf("redirected to %q, want %s", resp.Header.Get("Location"), loopCB)
	}
	return u.Query()
}

func (e *env) token(form url.Values, basic ...string) (*http.Response, map[string]any) {
	e.t.Helper()
	return e.postForm(oauth.PathToken, form, basic...)
}

func (e *env) postForm(path string, form url.Values, basic ...string) (*http.Response, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url()+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, b := e.do(req)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp, m
}

func codeForm(clientID, code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {loopCB}, "resource": {resource}}
}

func refreshForm(clientID, rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "refresh_token": {rt}}
}

// wantOAuthError asserts an RFC 6749 error response.
func wantOAuthError(t *testing.T, resp *http.Response, body map[string]any, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || body["error"] != code {
		t.Fatalf("got %d %v, want %d error=%s", resp.StatusCode, body, status, code)
	}
}

// verifyAccess checks an access token against the server's published keys.
func verifyAccess(t *testing.T, s *oauth.Server, raw string) oauth.AccessClaims {
	t.Helper()
	keys, err := s.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatalf("parse access token: %v", err)
	}
	if typ := tok.Headers[0].ExtraHeaders["typ"]; typ != "at+jwt" {
		t.Errorf("typ = %v, want at+jwt", typ)
	}
	k := keys.Key(tok.Headers[0].KeyID)
	if len(k) != 1 {
		t.Fatalf("kid %q not in JWKS", tok.Headers[0].KeyID)
	}
	var c oauth.AccessClaims
	if err := tok.Claims(k[0].Key, &c); err != nil {
		t.Fatalf("verify access token: %v", err)
	}
	return c
}

// withRegistrationRate sets the registration limit, on the env's clock.
func withRegistrationRate(rate ratelimit.Rate) envOpt {
	return func(o *oauth.Options) {
		l, err := ratelimit.New(rate, ratelimit.Options{Now: o.Now})
		if err != nil {
			panic(err)
		}
		o.RegistrationLimiter = l
	}
}

// withRequestRate sets the /authorize limit, on the env's clock.
func withRequestRate(rate ratelimit.Rate) envOpt {
	return func(o *oauth.Options) {
		l, err := ratelimit.New(rate, ratelimit.Options{Now: o.Now})
		if err != nil {
			panic(err)
		}
		o.RequestLimiter = l
	}
}
