// Package oidcprovider runs a real, certified OpenID Connect provider
// (github.com/zitadel/oidc/v3/pkg/op with its example storage) in-process, so
// tests and `make demo` exercise the proxy against the same protocol
// behaviour as a production IdP: discovery, authorization code + PKCE,
// rotating refresh tokens, userinfo, RP-initiated logout and RFC 8693 token
// exchange. It adds only
// what tests need to observe and steer the provider: request counters,
// revocation, configurable lifetimes and a scripted browser login.
package oidcprovider

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Default demo identity. Stable so that documentation and `make demo` can
// print them.
const (
	DefaultClientID     = "mcp-oidc-proxy"
	DefaultClientSecret = "demo-secret"
	DemoUsername        = "demo@example.com"
	DemoPassword        = "demo-password"
	DemoUserID          = "demo-user"
	DemoEmail           = "demo@example.com"
)

// DemoGroups returns the groups of the default demo user.
func DemoGroups() []string { return []string{"mcp-users", "admins"} }

// Client is an OAuth client registered at the provider.
type Client struct {
	ID string
	// Secret empty makes a public client (token_endpoint_auth_method none,
	// PKCE required).
	Secret string
	// RedirectURIs are exact URIs or doublestar globs such as
	// "http://127.0.0.1:*/oauth2/callback", so a test can register a
	// callback before it knows its port.
	RedirectURIs []string
	// PostLogoutRedirectURIs are exact URIs or path.Match globs.
	PostLogoutRedirectURIs []string
}

// User is a user who can log in at the provider.
type User struct {
	ID            string
	Username      string
	Password      string
	Email         string
	EmailVerified bool
	GivenName     string
	FamilyName    string
	Groups        []string
	// Claims are further claims of the user (say "department"), sent
	// wherever groups are: in ID tokens that carry profile claims, in
	// userinfo and in JWT access tokens.
	Claims map[string]any
}

// Options configure a Provider. The zero value is a usable demo provider.
type Options struct {
	// Issuer defaults to http://<listener address>.
	Issuer string
	// Clients default to one confidential client DefaultClientID /
	// DefaultClientSecret accepting any http(s) .../oauth2/callback.
	Clients []Client
	// Users default to the demo user (DemoUsername / DemoPassword).
	Users []User
	// AccessTokenLifetime is the expires_in reported for access tokens
	// (default 5m). Short lifetimes let tests exercise refresh. Userinfo
	// keeps accepting an access token for at least 5 minutes regardless.
	AccessTokenLifetime time.Duration
	// IDTokenLifetime defaults to 1h.
	IDTokenLifetime time.Duration
	// MinimalIDToken leaves profile, email and groups claims out of the ID
	// token (as OIDC Core 5.4 prescribes when an access token is issued),
	// so they are only available from userinfo.
	MinimalIDToken bool
	// AccessTokenAudience, when set, makes the provider issue JWT access
	// tokens (RFC 9068 style) whose aud is the client ID plus these values,
	// carrying scope, email, name and groups claims: what an IdP configured
	// with an API audience issues for resource servers to validate locally.
	// Empty keeps the default opaque access tokens.
	AccessTokenAudience []string
	// TokenExchangeAudiences, when not nil, are the only audiences a token
	// exchange (RFC 8693) may ask for; any other is refused with
	// invalid_target, as an IdP does for an API the client may not reach.
	// Nil lets any audience through. Exchanged access tokens are always
	// JWTs whose aud is the requested audience and whose sub is the subject
	// token's, carrying the requested scopes in "scope".
	TokenExchangeAudiences []string
}

// Provider is a running OpenID provider.
type Provider struct {
	issuer   string
	users    []User
	clients  []Client
	storage  *opStorage
	op       *op.Provider
	handler  http.Handler
	server   *http.Server
	listener net.Listener

	// serialize makes the example storage safe under -race: it hands out
	// pointers into its maps that concurrent refreshes would otherwise
	// mutate and read at the same time.
	serialize sync.Mutex

	tokenRequests    atomic.Int64
	refreshRequests  atomic.Int64
	exchangeRequests atomic.Int64
	userinfoRequests atomic.Int64
}

// New builds a provider that will serve on l (see Serve). It does not start
// serving, so the caller controls the goroutine.
func New(l net.Listener, opts Options) (*Provider, error) {
	issuer := strings.TrimSuffix(opts.Issuer, "/")
	if issuer == "" {
		issuer = "http://" + l.Addr().String()
	}
	if opts.AccessTokenLifetime <= 0 {
		opts.AccessTokenLifetime = 5 * time.Minute
	}
	if opts.IDTokenLifetime <= 0 {
		opts.IDTokenLifetime = time.Hour
	}
	if len(opts.Users) == 0 {
		opts.Users = []User{{
			ID: DemoUserID, Username: DemoUsername, Password: DemoPassword,
			Email: DemoEmail, EmailVerified: true, GivenName: "Demo", FamilyName: "User",
			Groups: DemoGroups(),
		}}
	}
	if len(opts.Clients) == 0 {
		opts.Clients = []Client{{
			ID: DefaultClientID, Secret: DefaultClientSecret,
			RedirectURIs:           []string{"http://**/oauth2/callback", "https://**/oauth2/callback"},
			PostLogoutRedirectURIs: anyURI(),
		}}
	}

	users := newUserStore(opts.Users)
	exampleClients := map[string]*storage.Client{}
	wrapped := map[string]*client{}
	for _, c := range opts.Clients {
		if c.ID == "" {
			return nil, errors.New("oidcprovider: client without ID")
		}
		ec := storage.WebClient(c.ID, c.Secret, c.RedirectURIs...)
		exampleClients[c.ID] = ec
		wrapped[c.ID] = &client{
			Client:                 ec,
			public:                 c.Secret == "",
			redirectURIs:           append([]string(nil), c.RedirectURIs...),
			postLogoutRedirectURIs: append([]string(nil), c.PostLogoutRedirectURIs...),
			idTokenLifetime:        opts.IDTokenLifetime,
			claimsInIDToken:        !opts.MinimalIDToken,
			jwtAccessTokens:        len(opts.AccessTokenAudience) > 0,
		}
	}
	st := &opStorage{
		Storage:             storage.NewStorageWithClients(users, exampleClients),
		users:               users,
		clients:             wrapped,
		accessTokenLifetime: opts.AccessTokenLifetime,
		accessTokenAudience: slices.Clone(opts.AccessTokenAudience),
		exchangeAudiences:   cloneOrNil(opts.TokenExchangeAudiences),
		now:                 time.Now,
	}

	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("oidcprovider: crypto key: %w", err)
	}
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                key,
		CryptoKeyId:              "key1",
		DefaultLogoutRedirectURI: loggedOutPath,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.English},
		SupportedClaims: []string{
			"sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "at_hash", "azp",
			"name", "given_name", "family_name", "preferred_username", "email", "email_verified", groupsClaim,
		},
	}, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: create provider: %w", err)
	}

	p := &Provider{
		issuer:   issuer,
		users:    opts.Users,
		clients:  opts.Clients,
		storage:  st,
		op:       provider,
		listener: l,
	}
	mux := http.NewServeMux()
	login := &loginUI{
		auth:     st,
		callback: op.AuthCallbackURL(provider),
	}
	interceptor := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	mux.HandleFunc("GET "+loginPath, login.form)
	mux.HandleFunc("POST "+loginPath, interceptor.HandlerFunc(login.submit))
	mux.HandleFunc("GET "+loggedOutPath, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "signed out\n")
	})
	mux.Handle("/", provider)
	p.handler = p.observe(mux)
	p.server = &http.Server{Handler: p.handler, ReadHeaderTimeout: 10 * time.Second}
	return p, nil
}

// Start runs a provider on a free loopback port for the duration of a test.
func Start(t testing.TB, opts Options) *Provider {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oidcprovider: listen: %v", err)
	}
	p, err := New(l, opts)
	if err != nil {
		_ = l.Close()
		t.Fatalf("oidcprovider: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve() }()
	t.Cleanup(func() {
		_ = p.Close()
		if err := <-done; err != nil {
			t.Errorf("oidcprovider: serve: %v", err)
		}
	})
	return p
}

// Serve serves on the listener given to New until Close. It returns nil
// after Close.
func (p *Provider) Serve() error {
	if err := p.server.Serve(p.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("oidcprovider: serve: %w", err)
	}
	return nil
}

// Close stops the server and its connections.
func (p *Provider) Close() error {
	if err := p.server.Close(); err != nil {
		return fmt.Errorf("oidcprovider: close: %w", err)
	}
	return nil
}

// Handler is the provider's HTTP handler, for embedding it elsewhere.
func (p *Provider) Handler() http.Handler { return p.handler }

// Issuer is the issuer URL (no trailing slash); discovery lives at
// Issuer()+"/.well-known/openid-configuration".
func (p *Provider) Issuer() string { return p.issuer }

// DiscoveryURL is the full discovery document URL.
func (p *Provider) DiscoveryURL() string {
	return p.issuer + "/.well-known/openid-configuration"
}

// DemoUser returns the credentials of the first configured user.
func (p *Provider) DemoUser() (username, password string) {
	return p.users[0].Username, p.users[0].Password
}

// TokenRequests counts POSTs to the token endpoint (any grant type,
// successful or not).
func (p *Provider) TokenRequests() int { return int(p.tokenRequests.Load()) }

// RefreshRequests counts token endpoint POSTs with grant_type=refresh_token,
// so tests can assert that exactly one refresh reached the IdP.
func (p *Provider) RefreshRequests() int { return int(p.refreshRequests.Load()) }

// TokenExchangeRequests counts token endpoint POSTs with the RFC 8693
// grant type (successful or refused), so tests can assert how many
// exchanges reached the IdP.
func (p *Provider) TokenExchangeRequests() int { return int(p.exchangeRequests.Load()) }

// UserinfoRequests counts requests to the userinfo endpoint.
func (p *Provider) UserinfoRequests() int { return int(p.userinfoRequests.Load()) }

// RevokeRefreshTokens ends every user's session at every client, so the next
// refresh with any previously issued refresh token fails with invalid_grant
// (and their access tokens stop working at userinfo).
func (p *Provider) RevokeRefreshTokens() {
	p.serialize.Lock()
	defer p.serialize.Unlock()
	for _, u := range p.users {
		for _, c := range p.clients {
			// TerminateSession of the example storage never fails.
			_ = p.storage.TerminateSession(context.Background(), u.ID, c.ID)
		}
	}
}

// DisableUser deactivates the user with this ID, as an administrator does
// at the IdP: from now on the provider refuses their refresh tokens with
// invalid_grant and their logins.
func (p *Provider) DisableUser(id string) {
	p.serialize.Lock()
	defer p.serialize.Unlock()
	p.storage.users.disabled[id] = true
}

// SetGroups replaces the group memberships of the user with this ID. Tokens
// and userinfo answers issued from now on (including ID tokens returned by
// a refresh) carry the new groups.
func (p *Provider) SetGroups(id string, groups []string) {
	p.serialize.Lock()
	defer p.serialize.Unlock()
	p.storage.users.groups[id] = slices.Clone(groups)
}

// SetClaims replaces the further claims (User.Claims) of the user with
// this ID. Tokens and userinfo answers issued from now on (including ID
// tokens returned by a refresh) carry the new ones; nil removes them all.
func (p *Provider) SetClaims(id string, claims map[string]any) {
	p.serialize.Lock()
	defer p.serialize.Unlock()
	p.storage.users.claims[id] = maps.Clone(claims)
}

// observe counts requests and serializes them (see Provider.serialize).
func (p *Provider) observe(next http.Handler) http.Handler {
	tokenPath := "/" + strings.TrimPrefix(p.op.TokenEndpoint().Relative(), "/")
	userinfoPath := "/" + strings.TrimPrefix(p.op.UserinfoEndpoint().Relative(), "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == tokenPath && r.Method == http.MethodPost:
			p.tokenRequests.Add(1)
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				http.Error(w, "read body", http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if form, err := url.ParseQuery(string(body)); err == nil {
				switch form.Get("grant_type") {
				case "refresh_token":
					p.refreshRequests.Add(1)
				case tokenExchangeGrant:
					p.exchangeRequests.Add(1)
					// The op package picks the issued token's format from the
					// client; the mark makes GetClientByClientID hand out a
					// JWT-issuing client for this request only.
					r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, true))
				}
			}
		case r.URL.Path == userinfoPath:
			p.userinfoRequests.Add(1)
		}
		p.serialize.Lock()
		defer p.serialize.Unlock()
		next.ServeHTTP(w, r)
	})
}

func cloneOrNil(s []string) []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s)
}

// anyURI is a list of path.Match globs accepting any http(s) URL with up to
// four path segments: the demo client's post-logout redirect URIs.
func anyURI() []string {
	var globs []string
	for _, scheme := range []string{"http", "https"} {
		glob := scheme + "://*"
		globs = append(globs, glob)
		for range 4 {
			globs = append(globs, glob+"/")
			glob += "/*"
			globs = append(globs, glob)
		}
	}
	return globs
}
