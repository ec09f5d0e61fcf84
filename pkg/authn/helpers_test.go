package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
)

// testSecret is a fixed cookie secret for tests.
var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// authCall is what AuthCodeURL received for one state.
type authCall struct{ nonce, verifier, redirect string }

// fakeRP is a RelyingParty for error branches the real provider cannot be
// made to produce on demand. Codes are "code:<state>"; Exchange checks that
// the verifier, nonce and redirect URL are the ones the login started with.
type fakeRP struct {
	mu       sync.Mutex
	calls    map[string]authCall
	tokens   oidc.Tokens
	refresh  func(ctx context.Context, rt string) (*oidc.Tokens, error)
	refreshN atomic.Int32
	endURL   string
	// unreachable, when set, is what Reachable returns and what Exchange
	// fails with.
	unreachable error
}

var _ RelyingParty = (*fakeRP)(nil)

func newFakeRP(now func() time.Time) *fakeRP {
	return &fakeRP{
		calls: map[string]authCall{},
		tokens: oidc.Tokens{
			AccessToken:  "at-1",
			RefreshToken: "rt-1",
			IDToken:      "idt-1",
			Expiry:       now().Add(time.Hour),
			Identity: identity.Identity{
				Subject: "user-1", Email: "u1@example.com", Name: "User One",
				Username: "u1", Groups: []string{"a", "b"},
			},
		},
	}
}

func (f *fakeRP) AuthCodeURL(state, nonce, verifier, redirectURL string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[state] = authCall{nonce, verifier, redirectURL}
	return "https://idp.example/authorize?" + url.Values{"state": {state}, "redirect_uri": {redirectURL}}.Encode(), nil
}

func (f *fakeRP) Exchange(_ context.Context, code, verifier, nonce, redirectURL string) (*oidc.Tokens, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unreachable != nil {
		return nil, f.unreachable
	}
	state, ok := strings.CutPrefix(code, "code:")
	c, known := f.calls[state]
	if !ok || !known || c.verifier != verifier || c.nonce != nonce || c.redirect != redirectURL || verifier == "" || nonce == "" {
		return nil, fmt.Errorf("fake exchange: %w", oidc.ErrInvalidGrant)
	}
	t := f.tokens
	return &t, nil
}

func (f *fakeRP) Refresh(ctx context.Context, rt string) (*oidc.Tokens, error) {
	f.refreshN.Add(1)
	if f.refresh == nil {
		return nil, errors.New("fake: no refresh configured")
	}
	return f.refresh(ctx, rt)
}

func (f *fakeRP) Reachable(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unreachable
}

func (f *fakeRP) EndSessionURL(idTokenHint, post, state string) (string, bool) {
	if f.endURL == "" {
		return "", false
	}
	return f.endURL + "?" + url.Values{"id_token_hint": {idTokenHint}, "post_logout_redirect_uri": {post}}.Encode(), true
}

// env is one Authenticator over a memory store with a fake provider.
type env struct {
	a     *Authenticator
	store session.Store
	codec *session.Codec
	rp    *fakeRP
	clock *fakeclock.Clock
	h     http.Handler
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	clk := fakeclock.New(time.Now())
	mem := session.NewMemory(session.MemoryOptions{Now: clk.Now})
	t.Cleanup(func() { _ = mem.Close() })
	return newEnvWith(t, mem, clk, mod)
}

func newEnvWith(t *testing.T, store session.Store, clk *fakeclock.Clock, mod func(*Options)) *env {
	t.Helper()
	codec, err := session.NewCodec(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	rp := newFakeRP(clk.Now)
	opts := Options{
		Sessions:     store,
		States:       store,
		Locks:        store,
		Codec:        codec,
		RelyingParty: rp,
		Logger:       zaptest.NewLogger(t),
		Now:          clk.Now,
		RedirectURL:  func(*http.Request) string { return "https://app.example/oauth2/callback" },
	}
	if mod != nil {
		mod(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{a: a, store: store, codec: codec, rp: rp, clock: clk, h: newTestHandler(a)}
}

// newTestHandler serves the authn endpoints plus a protected "/" that
// echoes the identity.
func newTestHandler(a *Authenticator) http.Handler {
	mux := http.NewServeMux()
	a.Register(mux)
	mux.Handle("/", a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := identity.FromContext(r.Context())
		if id == nil {
			http.Error(w, "no identity", http.StatusInternalServerError)
			return
		}
		_, _ = fmt.Fprintf(w, "hello %s via %s", id.Subject, id.Method)
	})))
	return mux
}

// do serves one request against h.
func do(h http.Handler, method, target string, header http.Header, cookies ...*http.Cookie) *http.Response {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// doAs is do with a fresh request ID in the context, so a store wrapper can
// tell concurrent requests apart.
func doAs(h http.Handler, method, target string, header http.Header, cookies ...*http.Cookie) *http.Response {
	return do(requestid.Middleware(h), method, target, header, cookies...)
}

var navHeader = http.Header{"Sec-Fetch-Mode": {"navigate"}, "Accept": {"text/html"}}

// logoutNavHeader is a click on a logout link of the proxy's own pages.
var logoutNavHeader = http.Header{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Site": {"same-origin"}, "Accept": {"text/html"}}

// startLogin runs GET /oauth2/start and returns the state and state cookie.
func startLogin(t *testing.T, h http.Handler, a *Authenticator, rd string) (string, *http.Cookie) {
	t.Helper()
	resp := do(h, http.MethodGet, StartPath+"?rd="+url.QueryEscape(rd), navHeader)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start: status %d", resp.StatusCode)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	state := loc.Query().Get("state")
	sc := cookieNamed(resp, a.stateCk)
	if state == "" || sc == nil {
		t.Fatalf("start: state %q, state cookie %v", state, sc)
	}
	return state, sc
}

// login runs a full login with the fake provider and returns the callback
// response.
func (e *env) login(t *testing.T, rd string, extra ...*http.Cookie) *http.Response {
	t.Helper()
	state, sc := startLogin(t, e.h, e.a, rd)
	q := url.Values{"state": {state}, "code": {"code:" + state}}
	return do(e.h, http.MethodGet, DefaultCallbackPath+"?"+q.Encode(), navHeader, append([]*http.Cookie{sc}, extra...)...)
}

// sessionCookie logs in and returns the session cookie.
func (e *env) sessionCookie(t *testing.T) *http.Cookie {
	t.Helper()
	resp := e.login(t, "/")
	c := cookieNamed(resp, e.a.CookieName())
	if resp.StatusCode != http.StatusFound || c == nil || c.Value == "" {
		t.Fatalf("login: status %d, cookie %v", resp.StatusCode, c)
	}
	return c
}

// storedPayload decrypts the session behind cookie.
func (e *env) storedPayload(t *testing.T, c *http.Cookie) (session.Record, payload) {
	t.Helper()
	tk, err := e.codec.Decode(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := e.a.load(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	return cur.rec, cur.payload
}

// setTokenExpiry rewrites the stored session's access token expiry, to put
// it at the edge of a refresh.
func setTokenExpiry(t *testing.T, a *Authenticator, store session.Store, codec *session.Codec, c *http.Cookie, expiry time.Time) {
	t.Helper()
	tk, err := codec.Decode(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := a.load(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	cur.payload.Expiry = expiry
	data, err := seal(tk, cur.payload)
	if err != nil {
		t.Fatal(err)
	}
	cur.rec.Data = data
	if err := store.UpdateSession(context.Background(), cur.rec); err != nil {
		t.Fatal(err)
	}
}
