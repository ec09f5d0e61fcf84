package oauth_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/authn"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/authz"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
)

// facadeStack is the façade as the server wires it: the real browser login
// (authn over a real OP) in front of consent, the same relying party for
// upstream rechecks, and real Redis for sessions and grants.
type facadeStack struct {
	t     *testing.T
	op    *oidcprovider.Provider
	srv   *oauth.Server
	base  string
	clock *fakeclock.Clock
	auth  *authn.Authenticator
}

func newFacadeStack(t *testing.T, listed []string, opts ...envOpt) *facadeStack {
	t.Helper()
	op := oidcprovider.Start(t, oidcprovider.Options{Users: []oidcprovider.User{{
		ID: oidcprovider.DemoUserID, Username: oidcprovider.DemoUsername, Password: oidcprovider.DemoPassword,
		Email: oidcprovider.DemoEmail, EmailVerified: true, Groups: oidcprovider.DemoGroups(),
		// A provider claim named like a façade claim: it must not reach
		// the token's top level.
		Claims: map[string]any{"department": "research", "client_id": "evil", "unlisted": "x"},
	}}})
	rs := redisserver.Start(t)
	store, err := session.NewRedis(session.RedisOptions{URL: rs.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	codec, err := session.NewCodec([]byte("0123456789abcdef0123456789abcdef-claims"))
	if err != nil {
		t.Fatal(err)
	}
	rp, err := oidc.New(oidc.Options{
		Issuer: op.Issuer(), ClientID: oidcprovider.DefaultClientID, ClientSecret: oidcprovider.DefaultClientSecret,
		Scopes: []string{"openid", "profile", "email", "offline_access"}, ExtraClaims: listed, Logger: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rp.Discover(ctx); err != nil {
		t.Fatal(err)
	}

	fs := &facadeStack{t: t, op: op, clock: fakeclock.New(time.Now())}
	mux := http.NewServeMux()
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	fs.base = hs.URL
	fs.auth, err = authn.New(authn.Options{
		Sessions: store, States: store, Locks: store, Codec: codec, RelyingParty: rp,
		Logger: zaptest.NewLogger(t), InsecureCookies: true,
		RedirectURL: func(*http.Request) string { return fs.base + authn.DefaultCallbackPath },
	})
	if err != nil {
		t.Fatal(err)
	}
	o := oauth.Options{
		Store:       store,
		BaseURL:     func(*http.Request) string { return fs.base },
		Resources:   func(*http.Request) []string { return []string{fs.base + "/mcp"} },
		Scopes:      []string{"mcp:tools"},
		SigningKeys: pemKeys(t),
		Logins:      fs.auth,
		Upstream:    rp,
		Codec:       codec,
		Logger:      zaptest.NewLogger(t),
		Now:         fs.clock.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	if fs.srv, err = oauth.New(o); err != nil {
		t.Fatal(err)
	}
	fs.auth.Register(mux)
	fs.srv.Register(mux, fs.auth.Middleware)
	return fs
}

func (fs *facadeStack) do(method, u string, body url.Values, cookies ...*http.Cookie) (*http.Response, []byte) {
	fs.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		fs.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		fs.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func cookieOf(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// browserLogin logs the demo user in at the OP through the proxy's login
// and returns the session cookie.
func (fs *facadeStack) browserLogin() *http.Cookie {
	fs.t.Helper()
	start, _ := fs.do(http.MethodGet, fs.base+authn.StartPath+"?rd=/", nil)
	if start.StatusCode != http.StatusFound {
		fs.t.Fatalf("login start: %d", start.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cb, err := fs.op.Login(ctx, nil, start.Header.Get("Location"))
	if err != nil {
		fs.t.Fatal(err)
	}
	resp, body := fs.do(http.MethodGet, fs.base+cb.RequestURI(), nil, cookieOf(start, fs.auth.CookieNames()[1]))
	ck := cookieOf(resp, fs.auth.CookieName())
	if resp.StatusCode != http.StatusFound || ck == nil {
		fs.t.Fatalf("login callback: %d %s", resp.StatusCode, body)
	}
	return ck
}

// tokens registers a client, has the logged-in user approve it and
// redeems the code.
func (fs *facadeStack) tokens(ck *http.Cookie) (clientID string, m map[string]any) {
	fs.t.Helper()
	reg, _ := json.Marshal(map[string]any{"redirect_uris": []string{loopCB}, "token_endpoint_auth_method": "none"})
	req, _ := http.NewRequest(http.MethodPost, fs.base+oauth.PathRegister, strings.NewReader(string(reg)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := noRedirect.Do(req)
	if err != nil {
		fs.t.Fatal(err)
	}
	var client map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&client)
	_ = resp.Body.Close()
	clientID, _ = client["client_id"].(string)
	if resp.StatusCode != http.StatusCreated || clientID == "" {
		fs.t.Fatalf("register: %d %v", resp.StatusCode, client)
	}
	verifier := oauth2.GenerateVerifier()
	q := authParams(clientID, verifier)
	q.Set("resource", fs.base+"/mcp")
	resp, body := fs.do(http.MethodGet, fs.base+oauth.PathAuthorize+"?"+q.Encode(), nil)
	if resp.StatusCode != http.StatusFound {
		fs.t.Fatalf("authorize: %d %s", resp.StatusCode, body)
	}
	consent := resp.Header.Get("Location")
	resp, body = fs.do(http.MethodGet, consent, nil, ck)
	csrf := csrfRE.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || csrf == nil {
		fs.t.Fatalf("consent page: %d %s", resp.StatusCode, body)
	}
	cu, _ := url.Parse(consent)
	resp, _ = fs.do(http.MethodPost, fs.base+oauth.PathConsent,
		url.Values{"request": {cu.Query().Get("request")}, "csrf": {string(csrf[1])}, "action": {"approve"}}, ck)
	code := callback(fs.t, resp).Get("code")
	form := codeForm(clientID, code, verifier)
	form.Set("resource", fs.base+"/mcp")
	return clientID, fs.token(form)
}

func (fs *facadeStack) token(form url.Values) map[string]any {
	fs.t.Helper()
	resp, body := fs.do(http.MethodPost, fs.base+oauth.PathToken, form)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	if resp.StatusCode != http.StatusOK {
		fs.t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	return m
}

// validate runs the resource server's validator on an access token.
func (fs *facadeStack) validate(at string) *bearer.Token {
	fs.t.Helper()
	v, err := fs.srv.AccessTokenValidator(oauth.AccessTokenOptions{})
	if err != nil {
		fs.t.Fatal(err)
	}
	tok, err := v.Validate(fs.t.Context(), at, bearer.Expectation{Issuer: fs.base, Audience: fs.base + "/mcp"})
	if err != nil {
		fs.t.Fatalf("validate: %v", err)
	}
	return tok
}

// TestFacadeTokensCarryKeptClaims: the façade's access token carries the
// claims the browser login kept under "ext" (never at the top level), the
// validator hands them to rules in Identity.Claims as a cookie session
// does, and an upstream recheck renews them.
func TestFacadeTokensCarryKeptClaims(t *testing.T) {
	fs := newFacadeStack(t, []string{"department", "client_id"})
	ck := fs.browserLogin()
	clientID, m := fs.tokens(ck)
	at := m["access_token"].(string)

	raw := oidcprovider.TokenClaims(t, at)
	if ext, _ := raw["ext"].(map[string]any); !reflect.DeepEqual(ext, map[string]any{"department": "research"}) {
		t.Fatalf("ext = %v, want the kept department only (client_id is reserved)", raw["ext"])
	}
	if _, ok := raw["department"]; ok || raw["client_id"] != clientID {
		t.Fatalf("top level: department %v, client_id %v (want none and %s)", raw["department"], raw["client_id"], clientID)
	}

	tok := fs.validate(at)
	if tok.Identity.Claims["department"] != "research" || tok.ClientID != clientID || tok.Identity.Claims["client_id"] != clientID {
		t.Fatalf("bearer identity claims %v, client %q", tok.Identity.Claims, tok.ClientID)
	}
	if _, ok := tok.Identity.Claims["ext"]; ok {
		t.Fatalf("the ext object itself is in the identity's claims: %v", tok.Identity.Claims)
	}

	// The provider moves the user; the next refresh past the recheck
	// interval renews the upstream login and with it the claims.
	fs.op.SetClaims(oidcprovider.DemoUserID, map[string]any{"department": "sales"})
	fs.clock.Advance(oauth.DefaultUpstreamRecheck)
	before := fs.op.RefreshRequests()
	m = fs.token(refreshForm(clientID, m["refresh_token"].(string)))
	if fs.op.RefreshRequests() != before+1 {
		t.Fatalf("upstream refreshes: %d, want %d", fs.op.RefreshRequests(), before+1)
	}
	if got := fs.validate(m["access_token"].(string)).Identity.Claims["department"]; got != "sales" {
		t.Fatalf("department after the recheck = %v, want sales", got)
	}
	// Within the interval the grant's claims carry over.
	m = fs.token(refreshForm(clientID, m["refresh_token"].(string)))
	if got := fs.validate(m["access_token"].(string)).Identity.Claims["department"]; got != "sales" {
		t.Fatalf("department on the next refresh = %v, want sales", got)
	}
	// The provider stops sending it: the recheck drops it (fail closed).
	fs.op.SetClaims(oidcprovider.DemoUserID, nil)
	fs.clock.Advance(oauth.DefaultUpstreamRecheck)
	m = fs.token(refreshForm(clientID, m["refresh_token"].(string)))
	if raw := oidcprovider.TokenClaims(t, m["access_token"].(string)); raw["ext"] != nil {
		t.Fatalf("ext after the provider dropped the claim: %v", raw["ext"])
	}
}

// TestFacadeRefreshAuthorizesOnKeptClaims: a required claim that is kept
// (listed in policy.claims) is met by a façade grant as by its cookie
// session, and once the provider changes it the upstream recheck ends the
// family.
func TestFacadeRefreshAuthorizesOnKeptClaims(t *testing.T) {
	rules := authz.New(authz.Rules{RequiredClaims: map[string]string{"department": "research"}})
	fs := newFacadeStack(t, []string{"department"}, func(o *oauth.Options) { o.Authorizer = rules })
	clientID, m := fs.tokens(fs.browserLogin())
	m = fs.token(refreshForm(clientID, m["refresh_token"].(string)))

	fs.op.SetClaims(oidcprovider.DemoUserID, map[string]any{"department": "sales"})
	fs.clock.Advance(oauth.DefaultUpstreamRecheck)
	resp, body := fs.do(http.MethodPost, fs.base+oauth.PathToken, refreshForm(clientID, m["refresh_token"].(string)))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_grant"`) || !strings.Contains(string(body), "department") {
		t.Fatalf("refresh after the department changed: %d %s, want invalid_grant naming the claim", resp.StatusCode, body)
	}
}
