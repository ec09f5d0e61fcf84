package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/bearer"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/resource"
)

// mcpAuth is the MCP-client side of authentication: protected resource
// metadata, bearer validation and, in façade mode, the authorization server.
type mcpAuth struct {
	base       bearer.ExternalURL
	mcpPath    string
	metadata   *resource.Metadata
	rs         *bearer.ResourceServer
	origin     *resource.OriginGuard
	binder     *resource.SessionBinder
	asserter   *resource.Asserter
	oauth      *oauth.Server // façade keys and endpoints; nil without them
	facade     bool
	validators *validatorCache
}

func (a *mcpAuth) resource(r *http.Request) string { return a.base(r) + a.mcpPath }

// newMCPAuth builds the resource server for cfg. issuer is the configured
// upstream OIDC issuer (advertised as the authorization server in external
// mode); tokenIssuerOf returns the issuer spelling its tokens carry, known
// once discovery has run.
func (s *Server) newMCPAuth(cfg config.Config, base bearer.ExternalURL, issuer string, tokenIssuerOf func() string) (*mcpAuth, error) {
	a := &mcpAuth{base: base, mcpPath: cfg.MCPPath, facade: cfg.OAuth.Mode == "facade"}

	keys, err := signingKeys(cfg, s.log)
	if err != nil {
		return nil, err
	}
	if a.facade || cfg.OAuth.IdentityAssertion {
		a.oauth, err = oauth.New(oauth.Options{
			Store:           s.store,
			BaseURL:         base,
			Resources:       func(r *http.Request) []string { return []string{a.resource(r)} },
			Scopes:          cfg.OAuth.Scopes,
			MetadataPaths:   []string{cfg.MCPPath},
			AccessTokenTTL:  cfg.OAuth.AccessTokenTTL,
			RefreshTokenTTL: cfg.OAuth.RefreshTokenTTL,
			SigningKeys:     keys,

			RegistrationLimiter: s.limits.register,
			RequestLimiter:      s.limits.login,
			ClientAddr:          s.limits.addr,

			CIMD:   oauth.CIMDOptions{AllowPrivateAddresses: cfg.OAuth.AllowPrivateClientMetadata},
			Logger: s.log.Named("oauth"),
			Now:    s.opts.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("building the authorization server: %w", err)
		}
	}

	var servers []string
	extIssuer := cfg.OAuth.ExternalIssuer
	if extIssuer == "" {
		extIssuer = issuer
	}
	if !a.facade {
		servers = []string{extIssuer}
	}
	a.metadata, err = resource.NewMetadata(resource.MetadataOptions{
		BaseURL:                 base,
		MCPPath:                 cfg.MCPPath,
		AuthorizationServers:    servers,
		SelfAuthorizationServer: a.facade,
		ScopesSupported:         cfg.OAuth.Scopes,
		ResourceName:            "MCP server protected by mcp-oidc-proxy",
	})
	if err != nil {
		return nil, fmt.Errorf("protected resource metadata: %w", err)
	}

	a.validators = &validatorCache{build: func(r string, baseURL string) (bearer.Validator, error) {
		if a.facade {
			v, err := bearer.NewJWTValidator(bearer.JWTOptions{
				Issuer: baseURL, KeySet: a.oauth.PublicKeys, Audiences: []string{r},
				// Only access tokens: the identity assertion is signed
				// with the same key and must not open the MCP endpoint.
				Types:       []string{oauth.AccessTokenType},
				GroupsClaim: cfg.OIDC.GroupsClaim, Now: s.opts.Now,
			})
			if err != nil {
				return nil, err
			}
			return &revocationCheck{Validator: v, oauth: a.oauth, log: s.log.Named("bearer")}, nil
		}
		// Built on the first bearer request for this resource, normally
		// after discovery, so the provider's own issuer spelling is known.
		tokenIssuer := cfg.OAuth.ExternalIssuer
		if tokenIssuer == "" {
			tokenIssuer = tokenIssuerOf()
		}
		jwtv, err := bearer.NewJWTValidator(bearer.JWTOptions{
			Issuer: tokenIssuer, JWKSURL: cfg.OAuth.ExternalJWKSURL, Audiences: []string{r},
			GroupsClaim: cfg.OIDC.GroupsClaim, HTTPClient: s.opts.HTTPClient, Now: s.opts.Now,
		})
		if err != nil {
			return nil, err
		}
		if cfg.OAuth.IntrospectionURL == "" {
			return jwtv, nil
		}
		id, secret := cfg.OAuth.IntrospectionClientID, cfg.OAuth.IntrospectionSecret
		if id == "" {
			id, secret = cfg.OIDC.ClientID, cfg.OIDC.ClientSecret
		}
		intro, err := bearer.NewIntrospector(bearer.IntrospectionOptions{
			Endpoint: cfg.OAuth.IntrospectionURL, ClientID: id, ClientSecret: secret,
			Issuer: tokenIssuer, Audiences: []string{r}, HTTPClient: s.opts.HTTPClient, Now: s.opts.Now,
			AllowMissingAudience: cfg.OAuth.IntrospectionAllowMissingAudience,
		})
		if err != nil {
			return nil, err
		}
		return &bearer.Chain{JWT: jwtv, Opaque: intro}, nil
	}}

	a.rs = bearer.NewResourceServer(bearer.ResourceOptions{
		Validator:           &requestValidator{cache: a.validators},
		ResourceMetadataURL: a.metadata.URL,
		RequiredScopes:      cfg.OAuth.RequiredScopes,
		Logger:              s.log.Named("bearer"),
	})
	a.origin = resource.NewOriginGuard(resource.OriginOptions{AllowedOrigins: cfg.AllowedOrigins, BaseURL: base})
	a.binder = resource.NewSessionBinder(s.store, 0).WithLogger(s.log.Named("mcp-session"))
	if cfg.OAuth.IdentityAssertion {
		aud := cfg.OAuth.IdentityAssertionAudience
		if aud == "" {
			aud = cfg.Upstream
		}
		a.asserter, err = resource.NewAsserter(a.oauth.Signer(), resource.AsserterOptions{
			Issuer: base, Audience: aud, Now: s.opts.Now, Logger: s.log.Named("assertion"),
		})
		if err != nil {
			return nil, fmt.Errorf("identity assertion: %w", err)
		}
	}
	return a, nil
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
	h := a.rs.Wrap(inner, cookie(inner))
	h = a.withResource(h)
	return a.origin.Wrap(h)
}

type resourceKey struct{}

// withResource records the resource URL and issuer for this request, so the
// validator checks the audience the client was told about.
func (a *mcpAuth) withResource(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := a.base(r)
		ctx := context.WithValue(r.Context(), resourceKey{}, [2]string{base + a.mcpPath, base})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// validatorCache holds one validator per resource URL. Without a configured
// external URL the resource follows the Host header, so the cache is
// bounded: beyond maxValidators distinct hosts tokens are refused instead of
// growing memory or fetching keys for every invented host name.
type validatorCache struct {
	build func(resource, base string) (bearer.Validator, error)
	mu    sync.RWMutex
	byKey map[string]bearer.Validator
}

const maxValidators = 32

func (c *validatorCache) get(resource, base string) (bearer.Validator, error) {
	// Every bearer request looks its validator up; only the first one per
	// resource builds it.
	c.mu.RLock()
	v, ok := c.byKey[resource]
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.byKey[resource]; ok {
		return v, nil
	}
	if len(c.byKey) >= maxValidators {
		return nil, fmt.Errorf("%w: unknown host (set external_url)", bearer.ErrInvalidToken)
	}
	v, err := c.build(resource, base)
	if err != nil {
		return nil, err
	}
	if c.byKey == nil {
		c.byKey = map[string]bearer.Validator{}
	}
	c.byKey[resource] = v
	return v, nil
}

// requestValidator picks the validator for the request's resource.
type requestValidator struct{ cache *validatorCache }

func (v *requestValidator) Validate(ctx context.Context, raw string) (*bearer.Token, error) {
	rb, ok := ctx.Value(resourceKey{}).([2]string)
	if !ok {
		return nil, errors.New("server: no resource in request context")
	}
	val, err := v.cache.get(rb[0], rb[1])
	if err != nil {
		return nil, err
	}
	return val.Validate(ctx, raw)
}

// revocationCheck refuses façade access tokens revoked through /oauth2/revoke
// (or a refresh-token family revoked on reuse) before they expire.
//
// When the store cannot answer, the token is accepted: DESIGN.md promises
// that bearer requests keep working while Redis is down, and the token has
// already passed every check that needs no store (signature, issuer,
// audience, type, expiry). What is given up is only a revocation made
// before the outage, for at most the remaining lifetime of a short-lived
// access token; each such acceptance is logged.
type revocationCheck struct {
	bearer.Validator
	oauth *oauth.Server
	log   *zap.Logger
}

func (c *revocationCheck) Validate(ctx context.Context, raw string) (*bearer.Token, error) {
	t, err := c.Validator.Validate(ctx, raw)
	if err != nil {
		return nil, err
	}
	jti, _ := t.Claims["jti"].(string)
	revoked, err := c.oauth.IsRevoked(ctx, jti)
	if err != nil {
		c.log.Warn("session store unavailable; accepting a valid access token without its revocation check",
			zap.String("request_id", requestid.FromContext(ctx)), zap.Error(err))
		return t, nil
	}
	if revoked {
		return nil, fmt.Errorf("%w: token revoked", bearer.ErrInvalidToken)
	}
	return t, nil
}

// signingKeys returns the façade's PEM keys: the configured ones, or one
// derived from the cookie secret so that every replica sharing that secret
// signs and accepts the same tokens without another secret to distribute.
// Rotating the cookie secret then rotates the key as well. With neither
// (memory store, generated cookie secret) the façade uses an ephemeral key.
func signingKeys(cfg config.Config, log *zap.Logger) ([][]byte, error) {
	if raw := cfg.OAuth.SigningKeys; raw != "" {
		var out [][]byte
		rest := []byte(raw)
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			out = append(out, pem.EncodeToMemory(block))
		}
		if len(out) == 0 {
			return nil, errors.New("oauth.signing_keys: no PEM blocks found")
		}
		return out, nil
	}
	if cfg.Session.CookieSecret == "" {
		return nil, nil
	}
	key, err := deriveP256(cfg.Session.CookieSecret)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding derived signing key: %w", err)
	}
	log.Info("oauth.signing_keys not set; signing with a key derived from the cookie secret (identical on every replica)")
	return [][]byte{pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})}, nil
}

// deriveP256 turns a secret into a P-256 private key deterministically.
func deriveP256(secret string) (*ecdsa.PrivateKey, error) {
	for counter := byte(0); counter < 16; counter++ {
		d, err := hkdf.Key(sha256.New, []byte(secret), []byte{counter}, "mcp-oidc-proxy oauth signing key v1", 32)
		if err != nil {
			return nil, fmt.Errorf("deriving signing key: %w", err)
		}
		if key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d); err == nil {
			return key, nil
		}
	}
	return nil, errors.New("deriving signing key: no valid scalar")
}
