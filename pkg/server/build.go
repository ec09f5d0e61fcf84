package server

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/authn"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/resource"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// The parts New builds, in the order it builds them.

// withDefaults fills in the process-level defaults.
func withDefaults(opts Options) Options {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	return opts
}

// buildEdge builds what every request meets first: the forwarding
// decisions, the per-client limits, the host guard and the Origin guard.
func (s *Server) buildEdge(cfg config.Config) error {
	var err error
	// Parsed once: the same peers whose X-Forwarded-Proto/-Host make the
	// advertised URLs may pass their X-Forwarded-* on to the upstream.
	s.urls, err = forwarded.NewResolver(forwarded.Options{ExternalURL: cfg.ExternalURL, TrustedProxies: cfg.TrustedProxies})
	if err != nil {
		return fmt.Errorf("external_url / trusted_proxies: %w", err)
	}
	s.limits, err = newClientLimits(cfg, s.urls.TrustedProxies(), s.opts.Now)
	if err != nil {
		return err
	}
	s.hosts, err = resource.NewHostGuard(resource.HostOptions{
		ExternalURL:  cfg.ExternalURL,
		AllowedHosts: cfg.AllowedHosts,
		Host:         s.urls.Host,
	})
	if err != nil {
		return fmt.Errorf("allowed_hosts: %w", err)
	}
	if cfg.ExternalURL == "" {
		s.log.Warn("external_url is not set: the advertised URLs, the OIDC callback and the accepted token audience follow each request's Host; production needs external_url",
			zap.Strings("allowed_hosts", cfg.AllowedHosts), zap.Strings("always_allowed", resource.LoopbackHosts()))
	}
	s.origins = resource.NewOriginGuard(resource.OriginOptions{AllowedOrigins: cfg.AllowedOrigins, BaseURL: s.urls.BaseURL})
	return nil
}

// buildLogin builds the OIDC relying party, the browser login and the
// MCP-client side (metadata, bearer validation, façade).
func (s *Server) buildLogin(cfg config.Config) error {
	var err error
	if s.rp, err = s.newRelyingParty(cfg); err != nil {
		return err
	}
	codec, err := s.cookieCodec(cfg)
	if err != nil {
		return err
	}
	if s.authn, err = s.newAuthenticator(cfg, codec); err != nil {
		return err
	}
	if s.mcp, err = s.newMCPAuth(cfg, s.urls.BaseURL, s.rp.Issuer(), s.rp.TokenIssuer, codec); err != nil {
		return err
	}
	s.exchange, err = s.newTokenExchange(cfg, codec)
	return err
}

func (s *Server) newRelyingParty(cfg config.Config) (*oidc.RelyingParty, error) {
	rp, err := oidc.New(oidc.Options{
		Issuer:          cfg.OIDC.DiscoveryURL,
		ClientID:        cfg.OIDC.ClientID,
		ClientSecret:    cfg.OIDC.ClientSecret,
		Scopes:          cfg.OIDC.Scopes,
		UseUserInfo:     cfg.OIDC.UseUserInfo,
		GroupsClaim:     cfg.OIDC.GroupsClaim,
		ExtraClaims:     cfg.Policy.Claims, // live: Apply calls SetExtraClaims
		SkipIssuerCheck: cfg.OIDC.SkipIssuerCheck,
		HTTPClient:      s.opts.HTTPClient,
		Logger:          s.log.Named("oidc"),
		Now:             s.opts.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("building OIDC relying party: %w", err)
	}
	return rp, nil
}

// cookieCodec seals cookies (and the façade's upstream refresh tokens) with
// the configured cookie secret.
func (s *Server) cookieCodec(cfg config.Config) (*session.Codec, error) {
	secret := []byte(cfg.Session.CookieSecret)
	if len(secret) == 0 {
		// Only reachable with the memory store (validation requires a
		// secret for Redis): sessions die with the process anyway.
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
		s.log.Info("no cookie secret configured; generated one for this process (sessions end when it restarts)")
	}
	codec, err := session.NewCodec(secret)
	if err != nil {
		return nil, fmt.Errorf("session.cookie_secret: %w", err)
	}
	return codec, nil
}

func (s *Server) newAuthenticator(cfg config.Config, codec *session.Codec) (*authn.Authenticator, error) {
	a, err := authn.New(authn.Options{
		Sessions:              s.sessions,
		States:                s.store,
		Locks:                 s.store,
		Codec:                 codec,
		RelyingParty:          s.rp,
		Logger:                s.log.Named("authn"),
		Observer:              s.metrics,
		Now:                   s.opts.Now,
		CookieName:            cfg.Session.CookieName, // "" means cookiename.Default
		InsecureCookies:       cfg.Session.InsecureCookies,
		SessionTTL:            cfg.Session.TTL,
		IdleTimeout:           cfg.Session.IdleTimeout,
		Limit:                 session.Limit{Max: cfg.Session.MaxPerUser, Policy: session.LimitPolicy(cfg.Session.LimitPolicy)},
		RefreshBefore:         cfg.Session.RefreshBefore,
		RedirectURL:           s.redirectURL,
		BaseURL:               s.urls.BaseURL,
		PostLogoutRedirectURL: cfg.OIDC.PostLogoutURL,
		// API callers without a session get the MCP authorization
		// spec's challenge, which sends MCP clients to the metadata.
		// (s.mcp is built next: the façade keeps the logins authn
		// makes, and nothing is served before New returns.)
		Unauthenticated: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.mcp.rs.Challenge(w, r) }),
		Limiter:         s.limits.login,
		ClientAddr:      s.limits.addr,
	})
	if err != nil {
		return nil, fmt.Errorf("building authenticator: %w", err)
	}
	return a, nil
}

// newProxy builds the forwarding to upstream. It strips the proxy's own
// cookies and the client's credentials; trusted proxies' X-Forwarded-*
// pass on.
func (s *Server) newProxy(cfg config.Config, upstream *url.URL) (*proxy.Proxy, error) {
	var strip []string
	if s.authn != nil {
		strip = s.authn.CookieNames()
	}
	p, err := proxy.New(proxy.Options{
		Upstream:        upstream,
		Headers:         headerNames(cfg.Headers),
		StripCookies:    strip,
		StripHeaders:    []string{"Authorization", "Proxy-Authorization"},
		AssertionHeader: resource.AssertionHeader,
		TrustForwarded:  s.urls.Trusts,
		Retry:           proxy.RetryOptions{Attempts: cfg.UpstreamPolicy.RetryAttempts},
		Breaker: proxy.BreakerOptions{
			Failures:     cfg.UpstreamPolicy.BreakerFailures,
			OpenDuration: cfg.UpstreamPolicy.BreakerOpenFor,
		},
		ResponseHeaderTimeout: cfg.UpstreamPolicy.ResponseTimeout,
		Logger:                s.log.Named("proxy"),
		Observer:              s.metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("building proxy: %w", err)
	}
	return p, nil
}
