package server

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/headername"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpguard"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppath"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpsession"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/tokenexchange"
)

// The MCP-aware part of the request path: the tool policy and the audit
// trail (pkg/mcpguard), the token exchange for downstream APIs and the
// routing of MCP sessions to their replica (pkg/mcpsession).

// buildMCPGuard builds the audit logger and the guard and installs cfg's
// policy in it.
func (s *Server) buildMCPGuard(cfg config.Config) error {
	s.audit = audit.New(audit.Options{Logger: audit.OwnLevel(s.log.Named("audit")), Counter: s.metrics.MCPRequests()})
	s.guard = mcpguard.New(mcpguard.Options{Recorder: s.audit, Logger: s.log.Named("mcp-policy"), Now: s.opts.Now})
	s.mcpPath = mcppath.New(cfg.MCPPath)
	return s.applyMCPPolicy(cfg)
}

// applyMCPPolicy compiles cfg's policy and installs it with the audit
// settings. Validate has compiled the same rules already, so an error here
// means the configuration was not validated; the running policy is kept.
func (s *Server) applyMCPPolicy(cfg config.Config) error {
	var pol mcpguard.Policy
	if len(cfg.Policy.Rules) > 0 {
		p, err := config.CompilePolicy(&cfg.Policy)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		pol = mcpguard.PolicyFunc(func(c *mcppolicy.Caller) mcpguard.Binding { return p.Bind(c) })
	}
	s.audit.Set(audit.Settings{Enabled: cfg.Audit.Enabled, Arguments: cfg.Audit.Arguments, RedactKeys: cfg.Audit.RedactKeys})
	s.guard.Set(mcpguard.Settings{
		Policy:       pol,
		Audit:        cfg.Audit.Enabled,
		MaxBodyBytes: cfg.Policy.MaxBodyBytes,
		MaxListBytes: cfg.Policy.MaxListBytes,
	})
	return nil
}

// guardMCP puts the guard in front of next for requests to the MCP
// endpoint, in every spelling a lenient server would route there
// (pkg/mcppath). While a policy or auditing is on, a GET resuming the
// server's stream (Last-Event-ID) is sent without that header, in every
// spelling ("Last_Event_ID", which CGI-style servers read as the same
// header): a replayed list response would otherwise reach the client
// unfiltered, because its request went by on another connection. The
// client gets a fresh stream.
func (s *Server) guardMCP(next http.Handler) http.Handler {
	guarded := s.guard.Wrap(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Without a policy or auditing nothing is decided: skip the path
		// match, which every proxied request would otherwise pay for.
		if !s.guard.Active() || !s.mcpPath.Match(r.URL) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodGet {
			headername.Delete(r.Header, "Last-Event-ID")
		}
		guarded.ServeHTTP(w, r)
	})
}

// newTokenExchange builds the token exchange for cfg, or nil when it is off.
func (s *Server) newTokenExchange(cfg config.Config, codec *session.Codec) (*tokenexchange.Exchanger, error) {
	c := cfg.TokenExchange
	if !c.Enabled {
		return nil, nil
	}
	x, err := tokenexchange.New(tokenexchange.Options{
		Endpoint:       s.rp.TokenEndpoint,
		TokenURL:       c.Endpoint,
		ClientID:       cfg.OIDC.ClientID,
		ClientSecret:   cfg.OIDC.ClientSecret,
		Audience:       c.Audience,
		Scopes:         c.Scopes,
		Header:         c.Header,
		Subject:        tokenexchange.CallerSubject(s.rp.Issuer(), cfg.OAuth.Mode == "external"),
		ExpiryMargin:   c.ExpiryMargin,
		FailureBackoff: c.FailureBackoff,
		Cache:          s.store,
		Sealer:         codec,
		HTTPClient:     s.opts.HTTPClient,
		Logger:         s.log.Named("token-exchange"),
		Now:            s.opts.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("token_exchange: %w", err)
	}
	return x, nil
}

// newSessionRouter builds the MCP session routing: ids sealed with a key
// derived from secret (the cookie secret, the same on every replica), hops
// to the replica that owns a session, and, when configured, replay of the
// initialize request kept in the session store.
func (s *Server) newSessionRouter(cfg config.Config, secret []byte) (*mcpsession.Router, error) {
	sealer, err := mcpsession.NewSealer(secret)
	if err != nil {
		return nil, fmt.Errorf("mcp_session: %w", err)
	}
	opts := mcpsession.Options{
		Sealer:     sealer,
		Self:       cfg.MCPSession.AdvertiseAddress,
		Issuer:     s.rp.Issuer(),
		TTL:        cfg.MCPSession.TTL,
		HopTimeout: cfg.MCPSession.HopTimeout,
		Observer:   s.metrics,
		Logger:     s.log.Named("mcp-session"),
		Now:        s.opts.Now,
	}
	if cfg.TLS.CertFile != "" {
		// Every replica serves the certificate of the external URL's
		// host; a hop checks it against that name, not the pod address
		// (without external_url, against the pod address).
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if u, err := url.Parse(cfg.ExternalURL); err == nil {
			opts.TLS.ServerName = u.Hostname()
		}
	}
	if cfg.MCPSession.ReplayInitialize {
		opts.Replay = s.store
	}
	rt, err := mcpsession.New(opts)
	if err != nil {
		return nil, fmt.Errorf("mcp_session: %w", err)
	}
	return rt, nil
}
