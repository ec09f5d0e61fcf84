// Package sessioncache keeps recently verified session records in memory so
// that a cookie request does not cost a Redis round trip, and keeps the
// replicas' copies honest with Redis pub/sub.
//
// # Consistency rule
//
// A session ended on one replica (logout, a refresh that failed for good,
// expiry noticed by the proxy, or eviction by the per-user session limit)
// and a session whose tokens were refreshed are seen as such on every
// replica within TTL (session.local_cache_ttl, default 5s), whatever
// happens to pub/sub:
//
//   - Normally much sooner: every write goes to Redis first, then the
//     replica drops its own copy and publishes the session ID on the
//     channel "<key prefix>chan:sessions"; each replica drops its copy when
//     the message arrives (milliseconds).
//   - A lost message (publish failed, or the subscriber missed it) is
//     covered by the TTL: an entry is served for at most TTL after it was
//     read from Redis, never renewed by being served.
//   - A subscription that breaks or stays silent for two health intervals
//     (session.DefaultHealthInterval, 1s; a ping is sent when quiet) turns
//     the cache off and drops it; it is dropped again when the subscription
//     is back, since messages may have been missed in between. While the
//     subscription is down every read goes to Redis.
//   - A read that raced an invalidation is not cached (generation check).
//
// # Idle timeout
//
// Redis slides a session's idle timeout on each read it serves; a cached
// read does not reach Redis. So an entry of a session with an idle timeout
// lives at most a tenth of that timeout (and at most TTL): a session in use
// is read from Redis, and slid, at least once per min(TTL, idle/10), and its
// stored idle deadline lags its last use by at most that much. With the
// defaults (1h idle, 5s TTL) that is 5s.
//
// # Redis outage
//
// When Redis stops answering, the subscription breaks (connection closed)
// or goes silent (frozen Redis, partition) and the cache turns off within
// two health intervals, so cookie requests get the documented 503 within a
// few seconds; until then a session verified in the last TTL may still be
// served. No cached entry is kept or renewed because Redis failed.
//
// Only the Redis store needs this: the memory store is in-process already
// and has a single replica.
package sessioncache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// Defaults for zero Options fields.
const (
	DefaultTTL        = 5 * time.Second
	DefaultMaxEntries = 10000
	// idleFraction: an entry lives at most IdleTimeout/idleFraction.
	idleFraction = 10
)

// Sessions is the part of the session store the cache decorates.
type Sessions interface {
	CreateSession(ctx context.Context, rec session.Record, limit session.Limit) ([]string, error)
	GetSession(ctx context.Context, id string) (session.Record, error)
	UpdateSession(ctx context.Context, rec session.Record) error
	DeleteSession(ctx context.Context, id string) error
}

// Bus carries invalidations between replicas (a session.Channel).
type Bus interface {
	Publish(ctx context.Context, payload string) error
	Listen(ctx context.Context, l session.Listener)
}

// Observer is told about cache use (package metrics implements it).
type Observer interface {
	// SessionCacheLookup counts a read served from the cache (hit) or
	// from the store (miss).
	SessionCacheLookup(hit bool)
	// CacheInvalidation counts invalidations received: cache is "session"
	// or "revoked", kind "message" (one entry) or "flush" (everything).
	CacheInvalidation(cache, kind string)
}

// Options configures New.
type Options struct {
	// TTL bounds how long an entry is served after its Redis read; it is
	// the staleness bound of the consistency rule. Zero means DefaultTTL.
	TTL time.Duration
	// MaxEntries bounds memory; when full, an arbitrary entry makes room.
	MaxEntries int
	Now        func() time.Time
	Logger     *zap.Logger
	Observer   Observer
}

// Cache decorates a Sessions with a local cache; see the package doc.
type Cache struct {
	inner Sessions
	bus   Bus
	opts  Options
	live  atomic.Bool

	mu      sync.RWMutex
	gen     uint64
	entries map[string]entry
}

type entry struct {
	rec   session.Record
	until time.Time
}

var _ Sessions = (*Cache)(nil)

// New wraps inner. The cache serves nothing until Run has subscribed to bus.
func New(inner Sessions, bus Bus, opts Options) *Cache {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	return &Cache{inner: inner, bus: bus, opts: opts, entries: make(map[string]entry)}
}

// Run follows the invalidation channel until ctx ends. Start it once, in
// its own goroutine.
func (c *Cache) Run(ctx context.Context) {
	c.bus.Listen(ctx, listener{c})
	c.live.Store(false)
	c.flush()
}

// Live reports whether the subscription is up, i.e. whether the cache may
// serve entries.
func (c *Cache) Live() bool { return c.live.Load() }

// Len is the number of cached entries (tests, and a gauge if wanted).
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// GetSession serves a recently verified record from memory, or reads (and
// slides) it in the store. A served record is shared with other callers:
// its Data must not be modified in place.
func (c *Cache) GetSession(ctx context.Context, id string) (session.Record, error) {
	if c.live.Load() {
		now := c.opts.Now()
		c.mu.RLock()
		e, ok := c.entries[id]
		c.mu.RUnlock()
		// An expired entry is left for the store read below to replace.
		if ok && now.Before(e.until) {
			c.opts.Observer.SessionCacheLookup(true)
			return e.rec, nil
		}
	}
	c.opts.Observer.SessionCacheLookup(false)
	return c.GetSessionFresh(ctx, id)
}

// GetSessionFresh reads id from the store, bypassing the cache, and caches
// the result. Callers that decide on the latest state (the reload under the
// refresh lock) use it.
func (c *Cache) GetSessionFresh(ctx context.Context, id string) (session.Record, error) {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	now := c.opts.Now()
	rec, err := c.inner.GetSession(ctx, id)
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			c.drop(id)
		}
		return rec, err
	}
	if !c.live.Load() {
		return rec, nil
	}
	until := now.Add(c.opts.TTL)
	if rec.IdleTimeout > 0 {
		until = minTime(until, now.Add(rec.IdleTimeout/idleFraction))
	}
	until = minTime(until, rec.ExpiresAt)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		// An invalidation arrived while we read: this record may predate it.
		return rec, nil
	}
	if _, ok := c.entries[id]; !ok && len(c.entries) >= c.opts.MaxEntries {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[id] = entry{rec: rec, until: until}
	return rec, nil
}

// CreateSession stores rec and tells every replica about the sessions the
// per-user limit evicted.
func (c *Cache) CreateSession(ctx context.Context, rec session.Record, limit session.Limit) ([]string, error) {
	evicted, err := c.inner.CreateSession(ctx, rec, limit)
	c.drop(append([]string{rec.ID}, evicted...)...)
	if err == nil {
		c.publish(ctx, evicted...)
	}
	return evicted, err
}

// UpdateSession writes rec and tells every replica to drop its copy.
func (c *Cache) UpdateSession(ctx context.Context, rec session.Record) error {
	err := c.inner.UpdateSession(ctx, rec)
	c.drop(rec.ID)
	if err == nil || errors.Is(err, session.ErrNotFound) {
		c.publish(ctx, rec.ID)
	}
	return err
}

// DeleteSession removes id and tells every replica to drop its copy.
func (c *Cache) DeleteSession(ctx context.Context, id string) error {
	err := c.inner.DeleteSession(ctx, id)
	c.drop(id)
	if err == nil {
		c.publish(ctx, id)
	}
	return err
}

// publish announces ids. A failure is logged, not returned: the write
// itself succeeded, and the TTL bounds how long other replicas may lag.
func (c *Cache) publish(ctx context.Context, ids ...string) {
	for _, id := range ids {
		if err := c.bus.Publish(ctx, id); err != nil {
			c.opts.Logger.Warn("session cache: invalidation not published; other replicas catch up within the cache TTL",
				zap.Duration("ttl", c.opts.TTL), zap.Error(err))
			return
		}
	}
}

func (c *Cache) drop(ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, id := range ids {
		delete(c.entries, id)
	}
}

func (c *Cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
}

// listener applies what the channel delivers.
type listener struct{ c *Cache }

func (l listener) Subscribed() {
	// Messages may have been missed while we were not subscribed.
	l.c.flush()
	l.c.live.Store(true)
	l.c.opts.Observer.CacheInvalidation("session", "flush")
}

func (l listener) Lost(err error) {
	l.c.live.Store(false)
	l.c.flush()
	l.c.opts.Observer.CacheInvalidation("session", "flush")
	l.c.opts.Logger.Warn("session cache off until the invalidation channel is back", zap.Error(err))
}

func (l listener) Message(id string) {
	l.c.drop(id)
	l.c.opts.Observer.CacheInvalidation("session", "message")
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

type nopObserver struct{}

func (nopObserver) SessionCacheLookup(bool)          {}
func (nopObserver) CacheInvalidation(string, string) {}
