package server

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/resource"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// mcpAuth is the MCP-client side of authentication: protected resource
// metadata, bearer validation and, in façade mode, the authorization server.
type mcpAuth struct {
	base     func(*http.Request) string // the external base URL (forwarded.Resolver.BaseURL)
	mcpPath  string
	metadata *resource.Metadata
	rs       *bearer.ResourceServer
	origin   *resource.OriginGuard
	binder   *resource.SessionBinder
	asserter *resource.Asserter
	oauth    *oauth.Server // façade keys and endpoints; nil without them
	facade   bool
	// lastExpect is the expectation built for the last base URL seen: with
	// an external URL, or one host, every request expects the same, so it
	// is built once rather than concatenated per request.
	lastExpect atomic.Pointer[expectation]
}

// expectation is a bearer.Expectation and the base URL it was built from.
type expectation struct {
	base string
	want bearer.Expectation
}

func (a *mcpAuth) resource(r *http.Request) string { return a.base(r) + a.mcpPath }

// newMCPAuth builds the resource server for cfg. issuer is the configured
// upstream OIDC issuer (advertised as the authorization server in external
// mode); tokenIssuerOf returns the issuer spelling its tokens carry, known
// once discovery has run.
//
// The façade holds its refresh families to the user's standing upstream: it
// keeps the browser login's upstream refresh token (sealed with codec, the
// cookie codec), renews it through the same relying party and applies the
// live authorization policy on every refresh.
func (s *Server) newMCPAuth(cfg config.Config, base func(*http.Request) string, issuer string, tokenIssuerOf func() string, codec *session.Codec) (*mcpAuth, error) {
	a := &mcpAuth{base: base, mcpPath: cfg.MCPPath, facade: cfg.OAuth.Mode == "facade"}
	keys, err := s.signingKeys(cfg)
	if err != nil {
		return nil, err
	}
	if a.facade || cfg.OAuth.IdentityAssertion {
		if a.oauth, err = s.newAuthorizationServer(cfg, a, keys, codec); err != nil {
			return nil, err
		}
	}
	if a.metadata, err = newMetadata(cfg, base, issuer, a.facade); err != nil {
		return nil, err
	}
	validator, err := s.bearerValidator(cfg, a, tokenIssuerOf)
	if err != nil {
		return nil, err
	}
	a.rs = bearer.NewResourceServer(bearer.ResourceOptions{
		Validator:           validator,
		ResourceMetadataURL: a.metadata.URL,
		Expect:              a.expect,
		RequiredScopes:      cfg.OAuth.RequiredScopes,
		// Token exchange in external mode exchanges the client's token,
		// which the provider issued (it never reaches the MCP server).
		KeepRawToken: cfg.TokenExchange.Enabled && cfg.OAuth.Mode == "external",
		Logger:       s.log.Named("bearer"),
	})
	a.origin = resource.NewOriginGuard(resource.OriginOptions{AllowedOrigins: cfg.AllowedOrigins, BaseURL: base})
	a.binder = resource.NewSessionBinder(s.store, 0).WithLogger(s.log.Named("mcp-session"))
	if cfg.OAuth.IdentityAssertion {
		if a.asserter, err = s.newAsserter(cfg, base, a.oauth); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// signingKeys are the façade's keys (oauth.SigningKeys), saying so when
// they are derived from the cookie secret.
func (s *Server) signingKeys(cfg config.Config) ([][]byte, error) {
	keys, derived, err := oauth.SigningKeys(cfg.OAuth.SigningKeys, cfg.Session.CookieSecret)
	if err != nil {
		return nil, err
	}
	if derived {
		s.log.Info("oauth.signing_keys not set; signing with a key derived from the cookie secret (identical on every replica)")
	}
	return keys, nil
}

// newAuthorizationServer builds the façade's authorization server (or, for
// the identity assertion alone, its keys) for the resource a.
func (s *Server) newAuthorizationServer(cfg config.Config, a *mcpAuth, keys [][]byte, codec *session.Codec) (*oauth.Server, error) {
	srv, err := oauth.New(oauth.Options{
		Store:               s.store,
		BaseURL:             a.base,
		Resources:           func(r *http.Request) []string { return []string{a.resource(r)} },
		Scopes:              cfg.OAuth.Scopes,
		MetadataPaths:       []string{cfg.MCPPath},
		AccessTokenTTL:      cfg.OAuth.AccessTokenTTL,
		RefreshTokenTTL:     cfg.OAuth.RefreshTokenTTL,
		SigningKeys:         keys,
		RegistrationLimiter: s.limits.register,
		RequestLimiter:      s.limits.login,
		ClientAddr:          s.limits.addr,

		CIMD:               oauth.CIMDOptions{AllowPrivateAddresses: cfg.OAuth.AllowPrivateClientMetadata},
		Logger:             s.log.Named("oauth"),
		Now:                s.opts.Now,
		RefreshMaxLifetime: cfg.OAuth.RefreshTokenMaxLifetime,
		UpstreamRecheck:    cfg.OAuth.UpstreamRecheckInterval,
		SessionTTL:         cfg.Session.TTL,
		Logins:             s.authn,
		Upstream:           s.rp,
		Authorizer:         s.policy,
		RequiredScopes:     cfg.OAuth.RequiredScopes,
		Codec:              codec,
		Revoked:            s.revoked,
	})
	if err != nil {
		return nil, fmt.Errorf("building the authorization server: %w", err)
	}
	return srv, nil
}

// newMetadata builds the protected resource metadata: the façade names
// itself as authorization server, external mode the provider (issuer, or
// the configured external issuer).
func newMetadata(cfg config.Config, base func(*http.Request) string, issuer string, facade bool) (*resource.Metadata, error) {
	var servers []string
	extIssuer := cfg.OAuth.ExternalIssuer
	if extIssuer == "" {
		extIssuer = issuer
	}
	if !facade {
		servers = []string{extIssuer}
	}
	md, err := resource.NewMetadata(resource.MetadataOptions{
		BaseURL:                 base,
		MCPPath:                 cfg.MCPPath,
		AuthorizationServers:    servers,
		SelfAuthorizationServer: facade,
		ScopesSupported:         cfg.OAuth.Scopes,
		ResourceName:            "MCP server protected by mcp-oidc-proxy",
	})
	if err != nil {
		return nil, fmt.Errorf("protected resource metadata: %w", err)
	}
	return md, nil
}

// bearerValidator picks the validator for a's bearer tokens: the façade's
// own access tokens, or the provider's. One validator serves every host:
// the issuer (façade) and the audience are what the request's checked base
// URL says (expect), so no request can build, fill or evict per-host
// validators or key caches.
func (s *Server) bearerValidator(cfg config.Config, a *mcpAuth, tokenIssuerOf func() string) (bearer.Validator, error) {
	if a.facade {
		return a.oauth.AccessTokenValidator(oauth.AccessTokenOptions{GroupsClaim: cfg.OIDC.GroupsClaim, Logger: s.log.Named("bearer")})
	}
	return bearer.NewProviderValidator(providerOptions(cfg, tokenIssuerOf, s.opts.HTTPClient, s.opts.Now)), nil
}

// newAsserter builds the identity assertion signed with the façade's key
// for the upstream (its audience: the configured one, or the upstream URL).
func (s *Server) newAsserter(cfg config.Config, base func(*http.Request) string, keys *oauth.Server) (*resource.Asserter, error) {
	aud := cfg.OAuth.IdentityAssertionAudience
	if aud == "" {
		aud = cfg.Upstream
	}
	as, err := resource.NewAsserter(keys.Signer(), resource.AsserterOptions{
		Issuer: base, Audience: aud, Now: s.opts.Now, Logger: s.log.Named("assertion"),
	})
	if err != nil {
		return nil, fmt.Errorf("identity assertion: %w", err)
	}
	return as, nil
}

// register mounts the metadata and, in façade mode, the authorization
// server. consent wraps the consent page in the browser login.
func (a *mcpAuth) register(mux *http.ServeMux, consent func(http.Handler) http.Handler) {
	a.metadata.Register(mux)
	switch {
	case a.facade:
		a.oauth.Register(mux, consent)
	case a.oauth != nil:
		mux.Handle(oauth.PathJWKS, a.oauth.JWKSHandler())
	}
}

// wrap puts bearer authentication in front of next, falling back to the
// cookie authenticator for callers without a bearer token, and adds the
// MCP endpoint's Origin check, session binding and identity assertion.
func (a *mcpAuth) wrap(next http.Handler, cookie func(http.Handler) http.Handler, authz func(http.Handler) http.Handler) http.Handler {
	inner := next
	if a.asserter != nil {
		inner = a.asserter.Wrap(inner)
	}
	inner = authz(a.binder.Wrap(inner))
	return a.origin.Wrap(a.rs.Wrap(inner, cookie(inner)))
}

// expect is what r expects of a bearer token: the resource URL the client
// was told about as audience and, for the façade, the base URL as issuer.
// The host in them has passed the host guard.
func (a *mcpAuth) expect(r *http.Request) bearer.Expectation {
	base := a.base(r)
	if last := a.lastExpect.Load(); last != nil && last.base == base {
		return last.want
	}
	want := bearer.Expectation{Issuer: base, Audience: base + a.mcpPath}
	a.lastExpect.Store(&expectation{base: base, want: want})
	return want
}

// providerOptions configure the validator for the OIDC provider's tokens
// (external mode). The issuer its tokens carry is the configured external
// issuer, or the provider's own spelling once discovery has run.
func providerOptions(cfg config.Config, tokenIssuerOf func() string, client *http.Client, now func() time.Time) bearer.ProviderOptions {
	opts := bearer.ProviderOptions{
		Issuer: func() string {
			if cfg.OAuth.ExternalIssuer != "" {
				return cfg.OAuth.ExternalIssuer
			}
			return tokenIssuerOf()
		},
		JWKSURL:     cfg.OAuth.ExternalJWKSURL,
		GroupsClaim: cfg.OIDC.GroupsClaim,
		HTTPClient:  client,
		Now:         now,
	}
	if cfg.OAuth.IntrospectionURL != "" {
		id, secret := cfg.OAuth.IntrospectionClientID, cfg.OAuth.IntrospectionSecret
		if id == "" {
			id, secret = cfg.OIDC.ClientID, cfg.OIDC.ClientSecret
		}
		opts.Introspection = bearer.IntrospectionOptions{
			Endpoint: cfg.OAuth.IntrospectionURL, ClientID: id, ClientSecret: secret,
			AllowMissingAudience: cfg.OAuth.IntrospectionAllowMissingAudience,
		}
	}
	return opts
}
