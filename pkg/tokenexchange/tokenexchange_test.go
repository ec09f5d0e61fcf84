package tokenexchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

const (
	clientID      = "proxy"
	clientSecret  = "proxy-secret-for-exchange"
	redirectURL   = "http://127.0.0.1:8080/oauth2/callback"
	ordersAPI     = "https://orders.example"
	payrollAPI    = "https://payroll.example"
	ordersScope   = "orders.read"
	cookieSecret  = "0123456789abcdef0123456789abcdef"
	downstreamHdr = "X-Downstream-Token"
)

// env is a real provider that allows exchanges for ordersAPI only, the
// proxy's relying party discovered at it, and a logged-in demo user.
type env struct {
	op      *oidcprovider.Provider
	rp      *oidc.RelyingParty
	subject Subject
	logs    *observer.ObservedLogs
	log     *zap.Logger
	codec   *session.Codec
}

func newEnv(t *testing.T, accessTokenLifetime time.Duration) *env {
	t.Helper()
	op := oidcprovider.Start(t, oidcprovider.Options{
		Clients:                []oidcprovider.Client{{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURL}}},
		TokenExchangeAudiences: []string{ordersAPI},
		AccessTokenLifetime:    accessTokenLifetime,
	})
	rp, err := oidc.New(oidc.Options{Issuer: op.Issuer(), ClientID: clientID, ClientSecret: clientSecret})
	if err != nil {
		t.Fatal(err)
	}
	if err := rp.Discover(context.Background()); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	verifier := oauth2.GenerateVerifier()
	authURL, err := rp.AuthCodeURL("state-1", "nonce-1", verifier, redirectURL)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := op.Login(context.Background(), nil, authURL)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	toks, err := rp.Exchange(context.Background(), cb.Query().Get("code"), verifier, "nonce-1", redirectURL)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	if toks.AccessToken == "" {
		t.Fatal("the provider issued no access token")
	}
	core, logs := observer.New(zapcore.DebugLevel)
	codec, err := session.NewCodec([]byte(cookieSecret))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		op: op, rp: rp, logs: logs, log: zap.New(core), codec: codec,
		subject: Subject{Issuer: op.Issuer(), Subject: toks.Identity.Subject, Token: toks.AccessToken, TokenType: TokenTypeAccessToken},
	}
	t.Cleanup(func() { e.assertNoSecretsLogged(t) })
	return e
}

// options are the Exchanger options of a proxy replica using store and
// clock; the subject source hands out e.subject.
func (e *env) options(store session.Store, clk *fakeclock.Clock) Options {
	return Options{
		Endpoint:       e.rp.TokenEndpoint,
		ClientID:       clientID,
		ClientSecret:   clientSecret,
		Audience:       ordersAPI,
		Scopes:         []string{ordersScope},
		Header:         downstreamHdr,
		Subject:        func(*http.Request) (Subject, error) { return e.subject, nil },
		ExpiryMargin:   30 * time.Second,
		FailureBackoff: 5 * time.Second,
		Cache:          store,
		Sealer:         e.codec,
		Logger:         e.log,
		Now:            clk.Now,
	}
}

func (e *env) exchanger(t *testing.T, opts Options) *Exchanger {
	t.Helper()
	x, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return x
}

func memoryStore(t *testing.T, clk *fakeclock.Clock) session.Store {
	t.Helper()
	st := session.NewMemory(session.MemoryOptions{Now: clk.Now})
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// assertNoSecretsLogged fails if any log line, message or field, holds the
// subject token, an exchanged token or the client secret.
func (e *env) assertNoSecretsLogged(t *testing.T) {
	t.Helper()
	secrets := append([]string{e.subject.Token, clientSecret}, e.issuedTokens()...)
	for _, entry := range e.logs.All() {
		line := entry.Message + " " + fmt.Sprint(entry.ContextMap())
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("log line %q holds a secret", entry.Message)
			}
		}
	}
}

// issued remembers every exchanged token a test saw, for the log check.
var issued sync.Map

func (e *env) issuedTokens() []string {
	var out []string
	issued.Range(func(k, _ any) bool { out = append(out, k.(string)); return true })
	return out
}

func token(t *testing.T, x *Exchanger, ctx context.Context, s Subject) string {
	t.Helper()
	tok, err := x.Token(ctx, s)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	issued.Store(tok, true)
	return tok
}

// TestExchangeAndCache: the exchanged token is the provider's JWT for the
// audience and the user; the second request is served from the cache.
func TestExchangeAndCache(t *testing.T) {
	e := newEnv(t, 0)
	clk := fakeclock.New(time.Now())
	x := e.exchanger(t, e.options(memoryStore(t, clk), clk))

	tok := token(t, x, context.Background(), e.subject)
	c := oidcprovider.TokenClaims(t, tok)
	if aud, _ := c["aud"].([]any); len(aud) != 1 || aud[0] != ordersAPI {
		t.Fatalf("aud = %v, want [%s]", c["aud"], ordersAPI)
	}
	if c["sub"] != oidcprovider.DemoUserID || c["iss"] != e.op.Issuer() || c["scope"] != ordersScope {
		t.Fatalf("claims = %v", c)
	}
	if tok == e.subject.Token {
		t.Fatal("the subject token came back instead of an exchanged one")
	}
	if n := e.op.TokenExchangeRequests(); n != 1 {
		t.Fatalf("exchanges at the provider = %d, want 1", n)
	}
	if again := token(t, x, context.Background(), e.subject); again != tok {
		t.Fatal("second call returned another token; want the cached one")
	}
	if n := e.op.TokenExchangeRequests(); n != 1 {
		t.Fatalf("exchanges after the second call = %d, want 1 (cached)", n)
	}
}

// gate holds token exchange requests on their way to the provider until
// released, so a test can pile up concurrent requests behind one exchange.
type gate struct {
	release chan struct{}
	proxy   *httputil.ReverseProxy
}

func newGate(t *testing.T, tokenURL string) (*gate, string) {
	t.Helper()
	target, err := url.Parse(tokenURL)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{release: make(chan struct{}), proxy: httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-g.release:
		case <-time.After(10 * time.Second):
			http.Error(w, "gate never released", http.StatusServiceUnavailable)
			return
		}
		g.proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return g, srv.URL + target.Path
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, 10*time.Second, what, cond)
}

// waiting returns how many callers share the exchange under way for key.
func (f *flights) waiting(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.calls[key]; ok {
		return c.waiters
	}
	return 0
}

// TestConcurrentRequestsShareOneExchange: requests of one user that arrive
// while an exchange is under way wait for it instead of starting their own.
func TestConcurrentRequestsShareOneExchange(t *testing.T) {
	e := newEnv(t, 0)
	clk := fakeclock.New(time.Now())
	ep, err := e.rp.TokenEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	g, gated := newGate(t, ep.TokenURL)
	opts := e.options(memoryStore(t, clk), clk)
	opts.TokenURL = gated
	x := e.exchanger(t, opts)

	const callers = 20
	results := make(chan string, callers)
	errs := make(chan error, callers)
	for range callers {
		go func() {
			tok, err := x.Token(context.Background(), e.subject)
			if err != nil {
				errs <- err
				return
			}
			issued.Store(tok, true)
			results <- tok
		}()
	}
	key := x.cacheKey(e.subject)
	waitFor(t, "every caller to join the exchange", func() bool { return x.flights.waiting(key) == callers })
	close(g.release)
	var first string
	for range callers {
		select {
		case err := <-errs:
			t.Fatalf("Token: %v", err)
		case tok := <-results:
			if first == "" {
				first = tok
			}
			if tok != first {
				t.Fatal("concurrent callers got different tokens")
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a caller never got its token")
		}
	}
	if n := e.op.TokenExchangeRequests(); n != 1 {
		t.Fatalf("exchanges at the provider = %d, want 1", n)
	}
}

// TestRenewalBeforeExpiry: a cached token is used until ExpiryMargin before
// it expires, then exchanged again.
func TestRenewalBeforeExpiry(t *testing.T) {
	e := newEnv(t, 2*time.Minute)
	clk := fakeclock.New(time.Now())
	x := e.exchanger(t, e.options(memoryStore(t, clk), clk))

	first := token(t, x, context.Background(), e.subject)
	exp, _ := oidcprovider.TokenClaims(t, first)["exp"].(float64)
	// The provider reports expires_in from real time; the exchanger counts
	// from its own (fake) clock, which reads the same at the start.
	// expires_in is 119s (the provider rounds down); with the 30s margin
	// each token is handed out for 89s after its exchange.
	tests := []struct {
		advance   time.Duration
		exchanges int
		same      bool
	}{
		{advance: 60 * time.Second, exchanges: 1, same: true},  // 60s: cached
		{advance: 25 * time.Second, exchanges: 1, same: true},  // 85s: more than 30s left
		{advance: 10 * time.Second, exchanges: 2, same: false}, // 95s: within the margin, renewed
		{advance: 0, exchanges: 2, same: true},                 // the renewed token is cached
		{advance: 2 * time.Minute, exchanges: 3, same: false},  // 215s: it expired, renewed
		{advance: 80 * time.Second, exchanges: 3, same: true},  // 295s: 80s after its exchange
		{advance: 10 * time.Second, exchanges: 4, same: false}, // 305s: 90s after, renewed
	}
	if exp == 0 {
		t.Fatal("exchanged token has no exp")
	}
	prev := first
	for i, tt := range tests {
		clk.Advance(tt.advance)
		tok := token(t, x, context.Background(), e.subject)
		if got := e.op.TokenExchangeRequests(); got != tt.exchanges {
			t.Fatalf("step %d: exchanges = %d, want %d", i, got, tt.exchanges)
		}
		if (tok == prev) != tt.same {
			t.Fatalf("step %d: same token = %v, want %v", i, tok == prev, tt.same)
		}
		prev = tok
	}
}

// decodeError reads the JSON error body.
func decodeError(t *testing.T, rec *httptest.ResponseRecorder) apierror.Body {
	t.Helper()
	var b apierror.Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q is not the JSON error shape: %v", rec.Body, err)
	}
	return b
}

// TestRefusedExchange: the provider refuses the audience; the request gets
// 502 token_exchange_failed, and within the backoff the same user's
// requests get the same answer without another exchange.
func TestRefusedExchange(t *testing.T) {
	e := newEnv(t, 0)
	clk := fakeclock.New(time.Now())
	opts := e.options(memoryStore(t, clk), clk)
	opts.Audience = payrollAPI
	x := e.exchanger(t, opts)
	h := x.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("a request without a downstream token reached the MCP server")
	}))
	serve := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader("{}")))
		return rec
	}
	tests := []struct {
		name      string
		advance   time.Duration
		exchanges int
	}{
		{name: "first request asks the provider", exchanges: 1},
		{name: "within the backoff: fails fast", advance: 2 * time.Second, exchanges: 1},
		{name: "still within the backoff", advance: 2 * time.Second, exchanges: 1},
		{name: "after the backoff: asks again", advance: 2 * time.Second, exchanges: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.Advance(tt.advance)
			rec := serve()
			if rec.Code != http.StatusBadGateway {
				t.Fatalf("status %d, want 502", rec.Code)
			}
			b := decodeError(t, rec)
			if b.Error.Code != apierror.CodeTokenExchangeFailed ||
				!strings.Contains(b.Error.Message, "token exchange at the identity provider") ||
				!strings.Contains(b.Error.Message, "invalid_target") ||
				!strings.Contains(b.Error.Message, payrollAPI) {
				t.Fatalf("error = %+v", b.Error)
			}
			if rec.Header().Get("Retry-After") != "5" {
				t.Fatalf("Retry-After = %q, want 5", rec.Header().Get("Retry-After"))
			}
			if n := e.op.TokenExchangeRequests(); n != tt.exchanges {
				t.Fatalf("exchanges = %d, want %d", n, tt.exchanges)
			}
		})
	}
	_, err := x.Token(context.Background(), e.subject)
	var pe *ProviderError
	if !errors.Is(err, ErrExchangeFailed) || !errors.As(err, &pe) || pe.Code != "invalid_target" || pe.Status != http.StatusBadRequest {
		t.Fatalf("Token error = %v, want ErrExchangeFailed with the provider's invalid_target", err)
	}
	if e.logs.FilterMessageSnippet("token exchange failed").FilterField(zap.String("provider_error", "invalid_target")).Len() == 0 {
		t.Fatal("the failure was not logged with the provider's error code")
	}
}

// TestMiddlewareReplacesClientHeaders: the client's Authorization and every
// copy of the downstream header it sent, in any spelling, are removed; the
// MCP server sees only the exchanged token.
func TestMiddlewareReplacesClientHeaders(t *testing.T) {
	e := newEnv(t, 0)
	clk := fakeclock.New(time.Now())
	store := memoryStore(t, clk)
	tests := []struct {
		name   string
		header string
		want   func(tok string) http.Header
	}{
		{name: "custom header", header: downstreamHdr, want: func(tok string) http.Header {
			return http.Header{downstreamHdr: {tok}}
		}},
		{name: "Authorization", header: "authorization", want: func(tok string) http.Header {
			// Another header than the configured one is the client's own.
			return http.Header{
				"Authorization":      {"Bearer " + tok},
				downstreamHdr:        {"injected-1", "injected-2"},
				"x-downstream-token": {"injected-3"},
				"X-Downstream_Token": {"injected-4"},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := e.options(store, clk)
			opts.Header = tt.header
			x := e.exchanger(t, opts)
			var seen http.Header
			h := x.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = r.Header.Clone()
				w.WriteHeader(http.StatusNoContent)
			}))
			req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader("{}"))
			req.Header.Set("Authorization", "Bearer client-token")
			req.Header.Add(downstreamHdr, "injected-1")
			req.Header.Add(downstreamHdr, "injected-2")
			req.Header["x-downstream-token"] = []string{"injected-3"}
			req.Header["X-Downstream_Token"] = []string{"injected-4"}
			req.Header["AUTHORIZATION"] = []string{"Bearer client-token-2"}
			req.Header["Authorization_"] = []string{"kept: another name"}
			req.Header.Set("Mcp-Session-Id", "s-1")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNoContent || seen == nil {
				t.Fatalf("status %d (%s), next called: %v", rec.Code, rec.Body, seen != nil)
			}
			tok := ""
			if v := seen.Get(tt.header); v != "" {
				tok = strings.TrimPrefix(v, "Bearer ")
				issued.Store(tok, true)
			}
			if aud, _ := oidcprovider.TokenClaims(t, tok)["aud"].([]any); len(aud) != 1 || aud[0] != ordersAPI {
				t.Fatalf("forwarded token's aud = %v", aud)
			}
			want := tt.want(tok)
			want.Set("Mcp-Session-Id", "s-1")
			want["Authorization_"] = []string{"kept: another name"}
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Fatalf("headers reaching the MCP server:\n got %v\nwant %v", seen, want)
			}
		})
	}
}

// TestNoSubjectToken: without a subject token nothing is asked of the
// provider and the caller learns why; a façade caller is told which
// callers can use the MCP server.
func TestNoSubjectToken(t *testing.T) {
	e := newEnv(t, 0)
	clk := fakeclock.New(time.Now())
	tests := []struct {
		name    string
		err     error
		message string
	}{
		{name: "no token", err: ErrNoSubjectToken, message: "carries no identity provider token"},
		{name: "façade caller", err: ErrFacadeCaller, message: "oauth.mode=external"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := e.options(memoryStore(t, clk), clk)
			opts.Subject = func(*http.Request) (Subject, error) { return Subject{}, tt.err }
			x := e.exchanger(t, opts)
			h := x.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("next called") }))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp", nil))
			b := decodeError(t, rec)
			if rec.Code != http.StatusBadGateway || b.Error.Code != apierror.CodeTokenExchangeFailed || !strings.Contains(b.Error.Message, tt.message) {
				t.Fatalf("answer %d %+v", rec.Code, b.Error)
			}
		})
	}
	x := e.exchanger(t, e.options(memoryStore(t, clk), clk))
	if _, err := x.Token(context.Background(), Subject{Issuer: e.op.Issuer(), Subject: "u"}); !errors.Is(err, ErrNoSubjectToken) {
		t.Fatalf("Token without a token = %v, want ErrNoSubjectToken", err)
	}
	if n := e.op.TokenExchangeRequests(); n != 0 {
		t.Fatalf("exchanges = %d, want 0", n)
	}
}

// brokenStore fails every read: the store is down.
type brokenStore struct{ session.Store }

func (brokenStore) Get(context.Context, string) ([]byte, error) {
	return nil, errors.New("dial tcp: connection refused")
}

// TestStoreDown: when the cache cannot be read the request gets 503
// session_store_unavailable (a temporary outage), not a 502.
func TestStoreDown(t *testing.T) {
	e := newEnv(t, 0)
	clk := fakeclock.New(time.Now())
	x := e.exchanger(t, e.options(brokenStore{memoryStore(t, clk)}, clk))
	h := x.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("next called") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp", nil))
	if b := decodeError(t, rec); rec.Code != http.StatusServiceUnavailable || b.Error.Code != apierror.CodeSessionStoreDown {
		t.Fatalf("answer %d %+v", rec.Code, b.Error)
	}
	if _, err := x.Token(context.Background(), e.subject); !errors.Is(err, ErrCacheUnavailable) {
		t.Fatalf("Token = %v, want ErrCacheUnavailable", err)
	}
}

// TestProviderAnswers covers answers a real provider rarely gives: each is
// ErrExchangeFailed, and a usable one is parsed.
func TestProviderAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		ctype   string
		body    string
		wantErr string
		wantExp time.Duration
	}{
		{name: "string expires_in", status: 200, ctype: "application/json", body: `{"access_token":"a","token_type":"bearer","expires_in":"60","issued_token_type":"urn:ietf:params:oauth:token-type:jwt"}`, wantExp: time.Minute},
		{name: "no expires_in", status: 200, ctype: "application/json; charset=utf-8", body: `{"access_token":"a"}`},
		{name: "no access token", status: 200, ctype: "application/json", body: `{"token_type":"Bearer"}`, wantErr: "no access_token"},
		{name: "refresh token issued", status: 200, ctype: "application/json", body: `{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token"}`, wantErr: "not an access token"},
		{name: "DPoP token", status: 200, ctype: "application/json", body: `{"access_token":"a","token_type":"DPoP"}`, wantErr: "not Bearer"},
		{name: "HTML", status: 200, ctype: "text/html", body: `<html>`, wantErr: "not JSON"},
		{name: "OAuth error", status: 401, ctype: "application/json", body: `{"error":"invalid_client","error_description":"bad secret"}`, wantErr: "HTTP 401 invalid_client"},
		{name: "gateway error", status: 502, ctype: "text/plain", body: `bad gateway`, wantErr: "HTTP 502"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var form url.Values
			var user, pass string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				form, _ = url.ParseQuery(string(body))
				user, pass, _ = r.BasicAuth()
				w.Header().Set("Content-Type", tt.ctype)
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			clk := fakeclock.New(time.Now())
			codec, _ := session.NewCodec([]byte(cookieSecret))
			x, err := New(Options{
				TokenURL: srv.URL, ClientID: "c:1", ClientSecret: "s&2", Audience: ordersAPI, Scopes: []string{"a", "b"},
				Header: downstreamHdr, Subject: func(*http.Request) (Subject, error) { return Subject{}, nil },
				Cache: memoryStore(t, clk), Sealer: codec, Now: clk.Now,
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := x.exchange(context.Background(), Subject{Token: "subj", TokenType: TokenTypeAccessToken})
			if form.Get("grant_type") != GrantType || form.Get("subject_token") != "subj" || form.Get("audience") != ordersAPI ||
				form.Get("scope") != "a b" || form.Get("requested_token_type") != TokenTypeAccessToken || form.Get("client_secret") != "" {
				t.Fatalf("request form = %v", form)
			}
			if user != url.QueryEscape("c:1") || pass != url.QueryEscape("s&2") {
				t.Fatalf("basic auth = %q/%q, want form-encoded client credentials", user, pass)
			}
			if tt.wantErr != "" {
				if !errors.Is(err, ErrExchangeFailed) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want ErrExchangeFailed containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || res.token != "a" {
				t.Fatalf("exchange = %+v, %v", res, err)
			}
			if want := clk.Now().Add(tt.wantExp); tt.wantExp != 0 && !res.expiry.Equal(want) || tt.wantExp == 0 && !res.expiry.IsZero() {
				t.Fatalf("expiry = %v, want %v from now", res.expiry, tt.wantExp)
			}
		})
	}
}

// TestClientSecretPost: a provider that only takes client_secret_post gets
// the credentials in the form.
func TestClientSecretPost(t *testing.T) {
	var form url.Values
	var hasBasic bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ = url.ParseQuery(string(body))
		_, _, hasBasic = r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"a","token_type":"Bearer","expires_in":60}`)
	}))
	defer srv.Close()
	clk := fakeclock.New(time.Now())
	codec, _ := session.NewCodec([]byte(cookieSecret))
	x, err := New(Options{
		Endpoint: func() (oauth2.Endpoint, error) {
			return oauth2.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInParams}, nil
		},
		ClientID: "c", ClientSecret: "s", Audience: ordersAPI, Header: downstreamHdr,
		Subject: func(*http.Request) (Subject, error) { return Subject{}, nil },
		Cache:   memoryStore(t, clk), Sealer: codec, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.exchange(context.Background(), Subject{Token: "subj", TokenType: TokenTypeAccessToken}); err != nil {
		t.Fatal(err)
	}
	if hasBasic || form.Get("client_id") != "c" || form.Get("client_secret") != "s" || form.Has("scope") {
		t.Fatalf("basic %v, form %v", hasBasic, form)
	}
}

func TestNewValidates(t *testing.T) {
	clk := fakeclock.New(time.Now())
	codec, _ := session.NewCodec([]byte(cookieSecret))
	valid := func() Options {
		return Options{
			TokenURL: "https://idp.example/token", ClientID: "c", Audience: ordersAPI, Header: downstreamHdr,
			Subject: func(*http.Request) (Subject, error) { return Subject{}, nil },
			Cache:   memoryStore(t, clk), Sealer: codec,
		}
	}
	tests := []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{name: "valid", mod: func(*Options) {}},
		{name: "no endpoint", mod: func(o *Options) { o.TokenURL = "" }, wantErr: "Endpoint or TokenURL"},
		{name: "no audience or header", mod: func(o *Options) { o.Audience, o.Header = "", "" }, wantErr: "Audience, Header"},
		{name: "no cache", mod: func(o *Options) { o.Cache, o.Sealer = nil, nil }, wantErr: "Cache, Sealer"},
		{name: "negative backoff", mod: func(o *Options) { o.FailureBackoff = -time.Second }, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.mod(&o)
			_, err := New(o)
			if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestErrorFieldsScrubTheSubjectToken: a provider that echoes the subject
// token in its error description does not get it into the log.
func TestErrorFieldsScrubTheSubjectToken(t *testing.T) {
	const subject = "eyJsubject.token.value"
	err := fmt.Errorf("%w: %w", ErrExchangeFailed, &ProviderError{
		Status: 400, Code: "invalid_request", Description: "subject_token " + subject + " is invalid " + strings.Repeat("x", 400),
	})
	core, logs := observer.New(zapcore.DebugLevel)
	zap.New(core).Warn("token exchange failed", errorFields(err, subject)...)
	fields := logs.All()[0].ContextMap()
	desc, _ := fields["provider_error_description"].(string)
	if strings.Contains(fmt.Sprint(fields), subject) || !strings.Contains(desc, "[REDACTED]") || len(desc) > maxLoggedDescription+len("…") {
		t.Fatalf("logged fields = %v", fields)
	}
	if fields["provider_error"] != "invalid_request" || fields["provider_status"] != int64(400) {
		t.Fatalf("logged fields = %v", fields)
	}
}
