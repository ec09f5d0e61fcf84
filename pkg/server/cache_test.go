package server

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/metrics"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/sessioncache"
)

// TestLocalCachesOnlyWithRedis: the session cache and the revoked set exist
// only where replicas share Redis (the memory store is local already), the
// session cache only when enabled, the revoked set only for the façade.
func TestLocalCachesOnlyWithRedis(t *testing.T) {
	mem := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = mem.Close() })
	rs, err := session.NewRedis(session.RedisOptions{Addrs: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	m := metrics.New("test")
	tests := []struct {
		name        string
		store       session.Store
		ttl         time.Duration
		facade      bool
		wantCache   bool
		wantRevoked bool
	}{
		{"memory", mem, sessioncache.DefaultTTL, true, false, false},
		{"redis", rs, sessioncache.DefaultTTL, true, true, true},
		{"redis, cache disabled", rs, 0, true, false, true},
		{"redis, no façade", rs, sessioncache.DefaultTTL, false, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := withSessionCache(tc.ttl, tc.store, tc.store, m, zap.NewNop(), nil)
			if _, cached := got.(*sessioncache.Cache); cached != tc.wantCache {
				t.Errorf("session cache = %v, want %v", cached, tc.wantCache)
			}
			set, _ := newRevokedSet(tc.facade, tc.store, m, zap.NewNop(), nil)
			if (set != nil) != tc.wantRevoked {
				t.Errorf("revoked set = %v, want %v", set != nil, tc.wantRevoked)
			}
		})
	}
}
