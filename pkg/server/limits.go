package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/ratelimit"
)

// clientLimits are the per-client-address limits on requests that make the
// proxy store state for a caller who has not logged in.
type clientLimits struct {
	// addr is the client address: the peer, or what a trusted proxy
	// reports in X-Forwarded-For.
	addr func(*http.Request) netip.Addr
	// login is one budget for browser login starts and OAuth authorization
	// requests: a façade login takes one of each, and an attacker gains
	// nothing by alternating.
	login *ratelimit.Limiter
	// register limits dynamic client registration.
	register *ratelimit.Limiter
}

func newClientLimits(cfg config.Config, trusted forwarded.TrustedProxies, now func() time.Time) (*clientLimits, error) {
	opts := ratelimit.Options{MaxAddresses: cfg.RateLimit.MaxAddresses, Now: now}
	login, err := ratelimit.New(ratelimit.Rate{PerMinute: float64(cfg.RateLimit.LoginsPerMinute), Burst: cfg.RateLimit.LoginBurst}, opts)
	if err != nil {
		return nil, fmt.Errorf("rate_limit: %w", err)
	}
	register, err := ratelimit.New(ratelimit.Rate{PerMinute: float64(cfg.OAuth.RegistrationsPerMinute), Burst: cfg.OAuth.RegistrationsPerMinute}, opts)
	if err != nil {
		return nil, fmt.Errorf("oauth.registrations_per_minute: %w", err)
	}
	return &clientLimits{addr: trusted.ClientAddr, login: login, register: register}, nil
}
