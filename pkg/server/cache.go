package server

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/metrics"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/sessioncache"
)

// buildStore builds the session store (or takes the test's), counts its
// operations, and puts the local caches in front of it: the session cache
// for cookie sessions and the revoked set for the façade's tokens, both fed
// by Redis pub/sub and run beside the listeners.
func (s *Server) buildStore(cfg config.Config) error {
	raw := s.opts.Store
	if raw == nil {
		var err error
		if raw, err = newStore(cfg); err != nil {
			return err
		}
	}
	s.store = s.metrics.InstrumentStore(raw)
	var runCache, runRevoked func(context.Context)
	s.sessions, runCache = withSessionCache(cfg.Session.LocalCacheTTL, raw, s.store, s.metrics, s.log.Named("session-cache"), s.opts.Now)
	s.revoked, runRevoked = newRevokedSet(cfg.OAuth.Mode == "facade", raw, s.metrics, s.log.Named("revoked"), s.opts.Now)
	s.background = append(s.background, runCache, runRevoked)
	return nil
}

// withSessionCache puts the local session cache (pkg/sessioncache) in front
// of store's session methods when raw is the Redis store and the cache is
// enabled; run follows the invalidation channel for as long as the server
// serves. The memory store needs no cache: it is local already.
func withSessionCache(ttl time.Duration, raw, store session.Store, m *metrics.Metrics, log *zap.Logger, now func() time.Time) (session.Sessions, func(context.Context)) {
	r, ok := raw.(*session.Redis)
	if !ok || ttl <= 0 {
		return store, func(context.Context) {}
	}
	c := sessioncache.New(store, r.Channel("sessions"), sessioncache.Options{TTL: ttl, Now: now, Logger: log, Observer: m})
	return c, c.Run
}

// newRevokedSet builds the façade's local copy of revoked tokens when raw is
// the Redis store (oauth.RevokedSet); run loads and follows it. With the
// memory store the revocation check reads the store, which is local.
func newRevokedSet(facade bool, raw session.Store, m *metrics.Metrics, log *zap.Logger, now func() time.Time) (*oauth.RevokedSet, func(context.Context)) {
	r, ok := raw.(*session.Redis)
	if !ok || !facade {
		return nil, func(context.Context) {}
	}
	set := oauth.NewRevokedSet(r.ExpiringSet("oauth:revoked"), oauth.RevokedSetOptions{Now: now, Logger: log, Observer: m})
	return set, set.Run
}
