package sessioncache_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/sessioncache"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// deliveryBound is how long the tests wait for a real pub/sub delivery or a
// resubscription; the rule's own bound for those is milliseconds, this is
// room for a loaded CI machine.
const deliveryBound = 10 * time.Second

const ttl = 5 * time.Second

// replica is one proxy's view: its own Redis client, store and cache.
type replica struct {
	name  string
	store *session.Redis
	cache *sessioncache.Cache
	obs   *counter
}

// counter records the observer calls.
type counter struct {
	mu                sync.Mutex
	hits, misses      int
	messages, flushes int
}

func (c *counter) SessionCacheLookup(hit bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hit {
		c.hits++
	} else {
		c.misses++
	}
}

func (c *counter) CacheInvalidation(cache, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cache != "session" {
		panic("cache " + cache)
	}
	switch kind {
	case "message":
		c.messages++
	case "flush":
		c.flushes++
	}
}

func (c *counter) get() (hits, misses, messages, flushes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses, c.messages, c.flushes
}

// dropBus publishes nothing: the lost-message case.
type dropBus struct{ sessioncache.Bus }

func (dropBus) Publish(context.Context, string) error {
	return errors.New("publish dropped by the test")
}

type setup struct {
	srv    *redisserver.Server
	prefix string
	clock  *fakeclock.Clock
}

func newSetup(t *testing.T) *setup {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &setup{srv: redisserver.Start(t), prefix: "t" + hex.EncodeToString(b) + ":", clock: fakeclock.New(time.Now())}
}

func (s *setup) replica(t *testing.T, name string, wrap func(sessioncache.Bus) sessioncache.Bus) *replica {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: s.srv.Addr(), ClientName: "replica-" + name, MaxRetries: -1})
	st, err := session.NewRedisFromClient(client, s.prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var bus sessioncache.Bus = st.Channel("sessions").WithHealthInterval(200 * time.Millisecond)
	if wrap != nil {
		bus = wrap(bus)
	}
	obs := &counter{}
	c := sessioncache.New(st, bus, sessioncache.Options{TTL: ttl, Now: s.clock.Now, Observer: obs})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if !waitfor.Poll(deliveryBound, waitfor.Interval, c.Live) {
		t.Fatalf("replica %s: cache never subscribed", name)
	}
	return &replica{name: name, store: st, cache: c, obs: obs}
}

func (s *setup) record(t *testing.T, r *replica, id, user string, idle time.Duration) session.Record {
	t.Helper()
	now := s.clock.Now()
	rec := session.Record{ID: id, UserKey: user, Data: []byte("v1"), CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: idle}
	if _, err := r.cache.CreateSession(context.Background(), rec, session.Limit{}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return rec
}

// get reads id on r and returns its data, or "gone" for ErrNotFound.
func get(t *testing.T, r *replica, id string) string {
	t.Helper()
	rec, err := r.cache.GetSession(context.Background(), id)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return "gone"
	case err != nil:
		t.Fatalf("get %s on %s: %v", id, r.name, err)
	}
	return string(rec.Data)
}

// warm reads id on r twice and checks the second read was a hit.
func warm(t *testing.T, r *replica, id, want string) {
	t.Helper()
	if got := get(t, r, id); got != want {
		t.Fatalf("%s on %s = %q, want %q", id, r.name, got, want)
	}
	h0, _, _, _ := r.obs.get()
	if got := get(t, r, id); got != want {
		t.Fatalf("%s on %s = %q, want %q", id, r.name, got, want)
	}
	if h1, _, _, _ := r.obs.get(); h1 != h0+1 {
		t.Fatalf("second read of %s on %s was not a cache hit", id, r.name)
	}
}

// TestCrossReplicaInvalidation: a write on A is honoured on B through
// pub/sub, well before the TTL (the fake clock does not move).
func TestCrossReplicaInvalidation(t *testing.T) {
	s := newSetup(t)
	a, b := s.replica(t, "A", nil), s.replica(t, "B", nil)
	ctx := context.Background()

	tests := []struct {
		name  string
		write func(t *testing.T, id string)
		want  string
	}{
		{"logout", func(t *testing.T, id string) {
			if err := a.cache.DeleteSession(ctx, id); err != nil {
				t.Fatal(err)
			}
		}, "gone"},
		{"refresh", func(t *testing.T, id string) {
			rec, err := a.cache.GetSession(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			rec.Data = []byte("v2")
			if err := a.cache.UpdateSession(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}, "v2"},
		{"evicted by the per-user limit", func(t *testing.T, id string) {
			now := s.clock.Now()
			ev, err := a.cache.CreateSession(ctx, session.Record{ID: id + "-new", UserKey: "u-" + id, Data: []byte("x"),
				CreatedAt: now.Add(time.Millisecond), ExpiresAt: now.Add(time.Hour)}, session.Limit{Max: 1, Policy: session.LimitEvictOldest})
			if err != nil || len(ev) != 1 || ev[0] != id {
				t.Fatalf("create with limit 1: evicted %v, %v; want [%s]", ev, err, id)
			}
		}, "gone"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("s%d", i)
			s.record(t, a, id, "u-"+id, 0)
			warm(t, b, id, "v1")
			_, _, m0, _ := b.obs.get()
			tc.write(t, id)
			var got string
			if !waitfor.Poll(deliveryBound, waitfor.Interval, func() bool { got = get(t, b, id); return got == tc.want }) {
				t.Fatalf("B still reads %q after %s on A (fake clock still); want %q through pub/sub", got, tc.name, tc.want)
			}
			if _, _, m1, _ := b.obs.get(); m1 <= m0 {
				t.Errorf("B counted no invalidation message")
			}
		})
	}
}

// TestLostMessageBoundedByTTL: A's invalidation never reaches B; B serves
// its copy for less than the TTL and refuses from then on.
func TestLostMessageBoundedByTTL(t *testing.T) {
	s := newSetup(t)
	a := s.replica(t, "A", func(b sessioncache.Bus) sessioncache.Bus { return dropBus{b} })
	b := s.replica(t, "B", nil)
	s.record(t, a, "s1", "u1", 0)
	warm(t, b, "s1", "v1")
	if err := a.cache.DeleteSession(context.Background(), "s1"); err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(ttl - time.Millisecond)
	if got := get(t, b, "s1"); got != "v1" {
		t.Fatalf("B before the TTL = %q; the stale copy is expected here (message lost)", got)
	}
	s.clock.Advance(time.Millisecond)
	if got := get(t, b, "s1"); got != "gone" {
		t.Fatalf("B at the TTL after a lost logout = %q, want gone", got)
	}
}

// TestReconnectFlushes: B's subscriber connection is killed; whatever was
// published meanwhile is lost, so B drops everything when it resubscribes.
func TestReconnectFlushes(t *testing.T) {
	s := newSetup(t)
	a, b := s.replica(t, "A", nil), s.replica(t, "B", nil)
	s.record(t, a, "s1", "u1", 0)
	warm(t, b, "s1", "v1")
	// Delete behind every cache's back: no message at all.
	if err := a.store.DeleteSession(context.Background(), "s1"); err != nil {
		t.Fatal(err)
	}
	if got := get(t, b, "s1"); got != "v1" {
		t.Fatalf("B = %q before its subscription was killed; want the cached copy", got)
	}
	_, _, _, f0 := b.obs.get()
	admin := redis.NewClient(&redis.Options{Addr: s.srv.Addr()})
	defer admin.Close()
	if n, err := admin.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Int(); err != nil || n < 2 {
		t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v; want both subscribers killed", n, err)
	}
	if !waitfor.Poll(deliveryBound, waitfor.Interval, func() bool { _, _, _, f := b.obs.get(); return f >= f0+1 && b.cache.Live() }) {
		t.Fatal("B did not flush and resubscribe after its subscription was killed")
	}
	if got := get(t, b, "s1"); got != "gone" {
		t.Fatalf("B after resubscribing = %q, want gone (fake clock still: the flush, not the TTL)", got)
	}
	// And invalidations flow again.
	s.record(t, a, "s2", "u2", 0)
	warm(t, b, "s2", "v1")
	if err := a.cache.DeleteSession(context.Background(), "s2"); err != nil {
		t.Fatal(err)
	}
	if !waitfor.Poll(deliveryBound, waitfor.Interval, func() bool { return get(t, b, "s2") == "gone" }) {
		t.Fatal("B missed a logout after resubscribing")
	}
}

// TestSilentRedisTurnsCacheOff: a frozen Redis keeps the connection open but
// answers nothing; within two health intervals the cache stops serving, so
// the request reaches the store and fails like any store error.
func TestSilentRedisTurnsCacheOff(t *testing.T) {
	s := newSetup(t)
	a := s.replica(t, "A", nil)
	s.record(t, a, "s1", "u1", 0)
	warm(t, a, "s1", "v1")
	s.srv.Pause()
	defer s.srv.Resume()
	if !waitfor.Poll(deliveryBound, waitfor.Interval, func() bool { return !a.cache.Live() }) {
		t.Fatal("cache still live with Redis frozen")
	}
	if _, err := a.cache.GetSession(context.Background(), "s1"); err == nil || errors.Is(err, session.ErrNotFound) {
		t.Fatalf("read with Redis frozen and the cache off = %v; want a store error (503), not a cached record nor not-found", err)
	}
	s.srv.Resume()
	if !waitfor.Poll(deliveryBound, waitfor.Interval, a.cache.Live) {
		t.Fatal("cache did not come back with Redis")
	}
	warm(t, a, "s1", "v1")
}

// TestEntryLifetime: an entry lives min(TTL, idle/10, absolute expiry), so
// Redis slides an active session's idle timeout often enough.
func TestEntryLifetime(t *testing.T) {
	s := newSetup(t)
	a := s.replica(t, "A", nil)
	tests := []struct {
		name     string
		idle     time.Duration
		lifetime time.Duration
	}{
		{"no idle timeout: TTL", 0, ttl},
		{"long idle timeout: TTL", time.Hour, ttl},
		{"short idle timeout: a tenth of it", 20 * time.Second, 2 * time.Second},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("l%d", i)
			s.record(t, a, id, "u"+id, tc.idle)
			warm(t, a, id, "v1")
			s.clock.Advance(tc.lifetime - time.Millisecond)
			_, m0, _, _ := a.obs.get()
			get(t, a, id)
			if _, m1, _, _ := a.obs.get(); m1 != m0 {
				t.Fatalf("read just before %s missed the cache", tc.lifetime)
			}
			s.clock.Advance(time.Millisecond)
			get(t, a, id)
			if _, m1, _, _ := a.obs.get(); m1 != m0+1 {
				t.Fatalf("read at %s was served from the cache; want a store read (which slides the idle timeout)", tc.lifetime)
			}
		})
	}
}

// TestGetSessionFreshReadsPastTheCache: the refresh path's read sees a
// write no message announced, and caches what it read.
func TestGetSessionFreshReadsPastTheCache(t *testing.T) {
	s := newSetup(t)
	a := s.replica(t, "A", nil)
	rec := s.record(t, a, "s1", "u1", 0)
	warm(t, a, "s1", "v1")
	rec.Data = []byte("v2")
	if err := a.store.UpdateSession(context.Background(), rec); err != nil { // behind the cache's back
		t.Fatal(err)
	}
	if got := get(t, a, "s1"); got != "v1" {
		t.Fatalf("cached read = %q, want the cached v1", got)
	}
	fresh, err := a.cache.GetSessionFresh(context.Background(), "s1")
	if err != nil || string(fresh.Data) != "v2" {
		t.Fatalf("GetSessionFresh = %q, %v; want v2", fresh.Data, err)
	}
	warm(t, a, "s1", "v2")
}

// TestHitAllocatesNothing: a cache hit is the cookie path's common case.
func TestHitAllocatesNothing(t *testing.T) {
	s := newSetup(t)
	a := s.replica(t, "A", nil)
	s.record(t, a, "s1", "u1", 0)
	warm(t, a, "s1", "v1")
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { _, _ = a.cache.GetSession(ctx, "s1") }); n != 0 {
		t.Errorf("a cache hit allocates %v times, want 0", n)
	}
}
