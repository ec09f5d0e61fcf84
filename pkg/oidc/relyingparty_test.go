package oidc_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

const (
	clientID     = "proxy"
	clientSecret = "proxy-secret"
	redirectURL  = "http://127.0.0.1:8080/oauth2/callback"
	logoutURL    = "http://127.0.0.1:8080/"
)

func startOP(t *testing.T, opts oidcprovider.Options) *oidcprovider.Provider {
	t.Helper()
	if opts.Clients == nil {
		opts.Clients = []oidcprovider.Client{
			{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURL}, PostLogoutRedirectURIs: []string{logoutURL}},
			{ID: "public", RedirectURIs: []string{redirectURL}},
		}
	}
	return oidcprovider.Start(t, opts)
}

func newRP(t *testing.T, opts oidc.Options) *oidc.RelyingParty {
	t.Helper()
	if opts.ClientID == "" {
		opts.ClientID, opts.ClientSecret = clientID, clientSecret
	}
	if opts.Scopes == nil {
		opts.Scopes = []string{"openid", "profile", "email", "offline_access"}
	}
	rp, err := oidc.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return rp
}

func discovered(t *testing.T, op *oidcprovider.Provider, opts oidc.Options) *oidc.RelyingParty {
	t.Helper()
	if opts.Issuer == "" {
		opts.Issuer = op.Issuer()
	}
	rp := newRP(t, opts)
	if err := rp.Discover(context.Background()); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return rp
}

// authorize runs the front channel (AuthCodeURL, scripted login) and
// returns the code from the callback.
func authorize(t *testing.T, op *oidcprovider.Provider, rp *oidc.RelyingParty, verifier, nonce string) string {
	t.Helper()
	authURL, err := rp.AuthCodeURL("state-1", nonce, verifier, redirectURL)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	cb, err := op.Login(context.Background(), nil, authURL)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if cb.Query().Get("state") != "state-1" || cb.Query().Get("code") == "" {
		t.Fatalf("callback %v has no code or wrong state", cb)
	}
	return cb.Query().Get("code")
}

func login(t *testing.T, op *oidcprovider.Provider, rp *oidc.RelyingParty) *oidc.Tokens {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	code := authorize(t, op, rp, verifier, "nonce-1")
	tok, err := rp.Exchange(context.Background(), code, verifier, "nonce-1", redirectURL)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return tok
}

func demoIdentity() identity.Identity {
	return identity.Identity{
		Subject:       oidcprovider.DemoUserID,
		Email:         oidcprovider.DemoEmail,
		EmailVerified: true,
		Name:          "Demo User",
		Username:      oidcprovider.DemoUsername,
		Groups:        oidcprovider.DemoGroups(),
	}
}

func equalIdentity(a, b identity.Identity) bool {
	return a.Subject == b.Subject && a.Email == b.Email && a.EmailVerified == b.EmailVerified &&
		a.Name == b.Name && a.Username == b.Username && slices.Equal(a.Groups, b.Groups) && a.Method == b.Method
}

func TestNewValidatesWithoutNetwork(t *testing.T) {
	tests := []struct {
		name       string
		opts       oidc.Options
		wantIssuer string
		wantErr    bool
	}{
		{"issuer", oidc.Options{Issuer: "https://idp.example.com", ClientID: "c"}, "https://idp.example.com", false},
		{"discovery URL", oidc.Options{Issuer: "https://idp.example.com/realms/x/.well-known/openid-configuration", ClientID: "c"}, "https://idp.example.com/realms/x", false},
		{"trailing slash kept", oidc.Options{Issuer: "https://tenant.auth0.com/", ClientID: "c"}, "https://tenant.auth0.com/", false},
		{"missing issuer", oidc.Options{ClientID: "c"}, "", true},
		{"relative issuer", oidc.Options{Issuer: "idp.example.com", ClientID: "c"}, "", true},
		{"ftp issuer", oidc.Options{Issuer: "ftp://idp.example.com", ClientID: "c"}, "", true},
		{"issuer with query", oidc.Options{Issuer: "https://idp.example.com?x=1", ClientID: "c"}, "", true},
		{"missing client ID", oidc.Options{Issuer: "https://idp.example.com"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp, err := oidc.New(tt.opts)
			if tt.wantErr {
				if err == nil {
					t.Fatal("New succeeded, want error")
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if rp.Issuer() != tt.wantIssuer {
				t.Fatalf("Issuer() = %q, want %q", rp.Issuer(), tt.wantIssuer)
			}
			if !errors.Is(rp.Ready(), oidc.ErrNotReady) {
				t.Fatalf("Ready() = %v before discovery, want ErrNotReady", rp.Ready())
			}
		})
	}
}

func TestReadyAndDiscoveryURLForms(t *testing.T) {
	op := startOP(t, oidcprovider.Options{})
	tests := []struct {
		name   string
		issuer string
	}{
		{"issuer", op.Issuer()},
		{"discovery URL", op.DiscoveryURL()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := newRP(t, oidc.Options{Issuer: tt.issuer})
			if err := rp.Ready(); !errors.Is(err, oidc.ErrNotReady) {
				t.Fatalf("Ready before Discover = %v", err)
			}
			if _, err := rp.AuthCodeURL("s", "n", oauth2.GenerateVerifier(), redirectURL); !errors.Is(err, oidc.ErrNotReady) {
				t.Fatalf("AuthCodeURL before Discover = %v", err)
			}
			if _, err := rp.Refresh(context.Background(), "rt"); !errors.Is(err, oidc.ErrNotReady) {
				t.Fatalf("Refresh before Discover = %v", err)
			}
			if _, ok := rp.EndSessionURL("", "", ""); ok {
				t.Fatal("EndSessionURL before Discover reported ok")
			}
			if _, err := rp.TokenEndpoint(); !errors.Is(err, oidc.ErrNotReady) {
				t.Fatalf("TokenEndpoint before Discover = %v", err)
			}
			if err := rp.Discover(context.Background()); err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if ep, err := rp.TokenEndpoint(); err != nil || ep.TokenURL != op.Issuer()+"/oauth/token" || ep.AuthStyle != oauth2.AuthStyleInHeader || ep.AuthURL != "" {
				t.Fatalf("TokenEndpoint = %+v, %v; want %s/oauth/token with client_secret_basic", ep, err, op.Issuer())
			}
			if err := rp.Ready(); err != nil {
				t.Fatalf("Ready after Discover = %v", err)
			}
			if got := login(t, op, rp).Identity; !equalIdentity(got, demoIdentity()) {
				t.Fatalf("identity = %+v", got)
			}
		})
	}
}

func TestDiscoverFailsOnIssuerMismatch(t *testing.T) {
	op := startOP(t, oidcprovider.Options{})
	// Same server, different spelling: the discovery document names
	// 127.0.0.1, the configuration localhost.
	alias := strings.Replace(op.Issuer(), "127.0.0.1", "localhost", 1)
	rp := newRP(t, oidc.Options{Issuer: alias})
	if err := rp.Discover(context.Background()); err == nil {
		t.Fatal("Discover accepted a discovery document naming another issuer")
	}
	if !errors.Is(rp.Ready(), oidc.ErrNotReady) {
		t.Fatal("failed discovery made the relying party ready")
	}

	rp = newRP(t, oidc.Options{Issuer: alias, SkipIssuerCheck: true})
	if err := rp.Discover(context.Background()); err != nil {
		t.Fatalf("Discover with SkipIssuerCheck: %v", err)
	}
	// ID tokens are checked against the discovered issuer, so login works.
	if got := login(t, op, rp).Identity; got.Subject != oidcprovider.DemoUserID {
		t.Fatalf("identity = %+v", got)
	}
}

func TestCodeFlowIdentity(t *testing.T) {
	onlySub := identity.Identity{Subject: oidcprovider.DemoUserID}
	tests := []struct {
		name         string
		minimal      bool
		opts         oidc.Options
		want         identity.Identity
		wantUserinfo int
	}{
		{"claims in ID token", false, oidc.Options{}, demoIdentity(), 0},
		{"claims in ID token plus userinfo", false, oidc.Options{UseUserInfo: true}, demoIdentity(), 1},
		{"minimal ID token with userinfo", true, oidc.Options{UseUserInfo: true}, demoIdentity(), 1},
		{"minimal ID token without userinfo", true, oidc.Options{}, onlySub, 0},
		{"public client", false, oidc.Options{ClientID: "public"}, demoIdentity(), 0},
		{"custom groups claim absent", false, oidc.Options{GroupsClaim: "roles"}, func() identity.Identity {
			id := demoIdentity()
			id.Groups = nil
			return id
		}(), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := startOP(t, oidcprovider.Options{MinimalIDToken: tt.minimal})
			rp := discovered(t, op, tt.opts)
			tok := login(t, op, rp)
			if !equalIdentity(tok.Identity, tt.want) {
				t.Fatalf("identity = %+v, want %+v", tok.Identity, tt.want)
			}
			if tok.AccessToken == "" || tok.RefreshToken == "" || tok.IDToken == "" {
				t.Fatalf("missing tokens: access=%t refresh=%t id=%t", tok.AccessToken != "", tok.RefreshToken != "", tok.IDToken != "")
			}
			if op.UserinfoRequests() != tt.wantUserinfo {
				t.Fatalf("userinfo requests = %d, want %d", op.UserinfoRequests(), tt.wantUserinfo)
			}
		})
	}
}

func TestAuthCodeURLParameters(t *testing.T) {
	op := startOP(t, oidcprovider.Options{})
	tests := []struct {
		name       string
		scopes     []string
		wantScopes string
	}{
		{"default scopes", []string{}, "openid profile email"},
		{"openid added and deduplicated", []string{"email", "offline_access", "email"}, "openid email offline_access"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := discovered(t, op, oidc.Options{Scopes: tt.scopes})
			verifier := oauth2.GenerateVerifier()
			raw, err := rp.AuthCodeURL("st", "nn", verifier, redirectURL)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			want := map[string]string{
				"scope": tt.wantScopes, "state": "st", "nonce": "nn", "response_type": "code",
				"client_id": clientID, "redirect_uri": redirectURL, "code_challenge_method": "S256",
				"code_challenge": oauth2.S256ChallengeFromVerifier(verifier),
			}
			for k, v := range want {
				if q.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, q.Get(k), v)
				}
			}
		})
	}
	rp := discovered(t, op, oidc.Options{})
	if _, err := rp.AuthCodeURL("", "n", "v", redirectURL); err == nil {
		t.Fatal("AuthCodeURL accepted an empty state")
	}
}

func TestExchangeRejects(t *testing.T) {
	op := startOP(t, oidcprovider.Options{})
	rp := discovered(t, op, oidc.Options{})
	ctx := context.Background()

	tests := []struct {
		name    string
		run     func(t *testing.T) error
		wantErr error
	}{
		{"wrong nonce", func(t *testing.T) error {
			v := oauth2.GenerateVerifier()
			code := authorize(t, op, rp, v, "nonce-1")
			_, err := rp.Exchange(ctx, code, v, "nonce-2", redirectURL)
			return err
		}, oidc.ErrVerification},
		{"wrong PKCE verifier", func(t *testing.T) error {
			code := authorize(t, op, rp, oauth2.GenerateVerifier(), "n")
			_, err := rp.Exchange(ctx, code, oauth2.GenerateVerifier(), "n", redirectURL)
			return err
		}, oidc.ErrInvalidGrant},
		{"replayed code", func(t *testing.T) error {
			v := oauth2.GenerateVerifier()
			code := authorize(t, op, rp, v, "n")
			if _, err := rp.Exchange(ctx, code, v, "n", redirectURL); err != nil {
				t.Fatalf("first exchange: %v", err)
			}
			_, err := rp.Exchange(ctx, code, v, "n", redirectURL)
			return err
		}, oidc.ErrInvalidGrant},
		{"forged code", func(t *testing.T) error {
			_, err := rp.Exchange(ctx, "not-a-code", oauth2.GenerateVerifier(), "n", redirectURL)
			return err
		}, oidc.ErrInvalidGrant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(t); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestRefreshRotatesAndFailsWithInvalidGrant(t *testing.T) {
	op := startOP(t, oidcprovider.Options{AccessTokenLifetime: 30 * time.Second})
	// A frozen clock makes the expiry exact. ID token expiry is checked
	// against it too, so it starts at the real time.
	now := time.Now()
	clock := func() time.Time { return now }
	rp := discovered(t, op, oidc.Options{Now: clock})
	ctx := context.Background()

	first := login(t, op, rp)
	// expires_in is whole seconds, rounded down by the provider.
	if got := first.Expiry.Sub(now); got < 28*time.Second || got > 30*time.Second || got%time.Second != 0 {
		t.Fatalf("expiry = now+%v, want the clock plus expires_in (about 30s)", got)
	}
	before := op.RefreshRequests()
	second, err := rp.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if n := op.RefreshRequests() - before; n != 1 {
		t.Fatalf("one Refresh sent %d refresh requests", n)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh token was not rotated")
	}
	if second.AccessToken == "" || second.AccessToken == first.AccessToken {
		t.Fatal("no new access token")
	}
	if second.IDToken == "" || !equalIdentity(second.Identity, demoIdentity()) {
		t.Fatalf("refreshed identity = %+v", second.Identity)
	}

	// The rotated-out token is dead: reuse is invalid_grant, sent once.
	before = op.RefreshRequests()
	if _, err := rp.Refresh(ctx, first.RefreshToken); !errors.Is(err, oidc.ErrInvalidGrant) {
		t.Fatalf("reuse of rotated refresh token: %v, want ErrInvalidGrant", err)
	}
	if n := op.RefreshRequests() - before; n != 1 {
		t.Fatalf("failed Refresh sent %d refresh requests, want 1", n)
	}

	third, err := rp.Refresh(ctx, second.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh with rotated token: %v", err)
	}
	op.RevokeRefreshTokens()
	if _, err := rp.Refresh(ctx, third.RefreshToken); !errors.Is(err, oidc.ErrInvalidGrant) {
		t.Fatalf("refresh after revocation: %v, want ErrInvalidGrant", err)
	}
}

func TestRefreshProviderDownIsTemporary(t *testing.T) {
	op := startOP(t, oidcprovider.Options{})
	rp := discovered(t, op, oidc.Options{})
	tok := login(t, op, rp)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := rp.Refresh(ctx, tok.RefreshToken)
	if err == nil || errors.Is(err, oidc.ErrInvalidGrant) {
		t.Fatalf("refresh with cancelled context: %v, want a temporary error", err)
	}
	// The token is still good afterwards.
	if _, err := rp.Refresh(context.Background(), tok.RefreshToken); err != nil {
		t.Fatalf("refresh after temporary failure: %v", err)
	}
}

func TestEndSessionURL(t *testing.T) {
	op := startOP(t, oidcprovider.Options{})
	rp := discovered(t, op, oidc.Options{})
	tok := login(t, op, rp)

	raw, ok := rp.EndSessionURL(tok.IDToken, logoutURL, "bye")
	if !ok {
		t.Fatal("EndSessionURL not available")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(raw, op.Issuer()) || u.Query().Get("id_token_hint") != tok.IDToken ||
		u.Query().Get("post_logout_redirect_uri") != logoutURL || u.Query().Get("state") != "bye" ||
		u.Query().Get("client_id") != clientID {
		t.Fatalf("end session URL %s", raw)
	}

	// The real provider accepts it and sends the browser back.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(raw)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("end session: status %d, no redirect: %v", resp.StatusCode, err)
	}
	if loc.Query().Get("state") != "bye" || !strings.HasPrefix(loc.String(), logoutURL) {
		t.Fatalf("post-logout redirect to %s", loc)
	}
}

func TestRunRetriesUntilProviderIsUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	op, err := oidcprovider.New(l, oidcprovider.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	var refused atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			refused.Add(1)
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		op.Handler().ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	rp := newRP(t, oidc.Options{Issuer: op.Issuer(), ClientID: oidcprovider.DefaultClientID, ClientSecret: oidcprovider.DefaultClientSecret})
	oidc.SetBackoff(rp, time.Millisecond, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rp.Run(ctx) }()

	waitFor(t, func() bool { return refused.Load() >= 3 })
	if !errors.Is(rp.Ready(), oidc.ErrNotReady) {
		t.Fatal("ready while the provider refuses discovery")
	}
	up.Store(true)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after the provider came up")
	}
	if err := rp.Ready(); err != nil {
		t.Fatalf("Ready after Run = %v", err)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every attempt fails
	rp := newRP(t, oidc.Options{Issuer: "http://" + addr})
	oidc.SetBackoff(rp, time.Millisecond, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rp.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	if !errors.Is(rp.Ready(), oidc.ErrNotReady) {
		t.Fatal("ready without discovery")
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatal("condition not reached before deadline")
		case <-tick.C:
		}
	}
}
