package server

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/metrics"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/sessioncache"
)

// withSessionCache puts the local session cache (pkg/sessioncache) in front
// of store's session methods when raw is the Redis store and the cache is
// enabled; run follows the invalidation channel for as long as the server
// serves. The memory store needs no cache: it is local already.
func withSessionCache(ttl time.Duration, raw, store session.Store, m *metrics.Metrics, log *zap.Logger, now func() time.Time) (session.Store, func(context.Context)) {
	r, ok := raw.(*session.Redis)
	if !ok || ttl <= 0 {
		return store, func(context.Context) {}
	}
	c := sessioncache.New(store, r.Channel("sessions"), sessioncache.Options{TTL: ttl, Now: now, Logger: log, Observer: m})
	return cachedStore{Store: store, sessions: c}, c.Run
}

// cachedStore is store with its session methods served by the cache.
type cachedStore struct {
	session.Store
	sessions *sessioncache.Cache
}

func (c cachedStore) CreateSession(ctx context.Context, rec session.Record, l session.Limit) ([]string, error) {
	return c.sessions.CreateSession(ctx, rec, l)
}

func (c cachedStore) GetSession(ctx context.Context, id string) (session.Record, error) {
	return c.sessions.GetSession(ctx, id)
}

// GetSessionFresh reads past the cache (authn's refresh path).
func (c cachedStore) GetSessionFresh(ctx context.Context, id string) (session.Record, error) {
	return c.sessions.GetSessionFresh(ctx, id)
}

func (c cachedStore) UpdateSession(ctx context.Context, rec session.Record) error {
	return c.sessions.UpdateSession(ctx, rec)
}

func (c cachedStore) DeleteSession(ctx context.Context, id string) error {
	return c.sessions.DeleteSession(ctx, id)
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
