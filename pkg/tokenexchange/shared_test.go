package tokenexchange

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
)

// TestReplicasShareTheCache: two replicas (own store client, own codec from
// the same cookie secret) on one real Redis: the second serves the token
// the first exchanged, and Redis holds neither the token nor the user in
// clear.
func TestReplicasShareTheCache(t *testing.T) {
	e := newEnv(t, 0)
	srv := redisserver.Start(t)
	clk := fakeclock.New(time.Now())
	replica := func() *Exchanger {
		st, err := session.NewRedis(session.RedisOptions{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		codec, err := session.NewCodec([]byte(cookieSecret))
		if err != nil {
			t.Fatal(err)
		}
		opts := e.options(st, clk)
		opts.Sealer = codec
		return e.exchanger(t, opts)
	}
	a, b := replica(), replica()

	var seen []string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get(downstreamHdr))
		w.WriteHeader(http.StatusNoContent)
	})
	for i, x := range []*Exchanger{a, b, a, b} {
		rec := httptest.NewRecorder()
		x.Middleware(next).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp", nil))
		if rec.Code != http.StatusNoContent {
			t.Fatalf("request %d: status %d: %s", i, rec.Code, rec.Body)
		}
	}
	issued.Store(seen[0], true)
	for i, tok := range seen {
		if tok == "" || tok != seen[0] {
			t.Fatalf("request %d got another token than the first", i)
		}
	}
	if n := e.op.TokenExchangeRequests(); n != 1 {
		t.Fatalf("exchanges at the provider = %d, want 1 for both replicas", n)
	}

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	keys, err := admin.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !strings.Contains(keys[0], keyNamespace) {
		t.Fatalf("Redis keys = %q, want the one cache entry", keys)
	}
	val, err := admin.Get(context.Background(), keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, clear := range []string{seen[0], e.subject.Subject, e.subject.Issuer, ordersAPI} {
		if strings.Contains(keys[0], clear) || strings.Contains(val, clear) {
			t.Fatalf("Redis holds %q in clear", clear)
		}
	}
	ttl, err := admin.TTL(context.Background(), keys[0]).Result()
	if err != nil || ttl <= 0 || ttl > 5*time.Minute-30*time.Second {
		t.Fatalf("cache entry TTL = %v, %v; want at most the token's lifetime less the margin", ttl, err)
	}
}
