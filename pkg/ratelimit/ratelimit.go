// Package ratelimit is the per-client-address token bucket in front of every
// endpoint where a caller who has not logged in makes the proxy store
// something: dynamic client registration, OAuth authorization requests and
// browser login state. Without it one address could fill the shared session
// store.
//
// The limit is per replica (in memory): the session store has no cheap
// atomic counter shared by every backend, so with N replicas behind a load
// balancer an address gets up to N times the configured rate. Memory is
// bounded by Options.MaxAddresses whatever the number of addresses seen.
package ratelimit

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxAddresses bounds the buckets a Limiter keeps (about 100 bytes
// each, so roughly 1 MiB in all).
const DefaultMaxAddresses = 10000

// Rate is a token bucket: Burst requests at once, refilled at PerMinute per
// minute.
type Rate struct {
	PerMinute float64
	Burst     int
}

// Options tune a Limiter.
type Options struct {
	// MaxAddresses bounds the number of addresses (IPv4 addresses, IPv6
	// /64 networks) remembered; default DefaultMaxAddresses.
	MaxAddresses int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Limiter is a set of token buckets keyed by client address. IPv6 addresses
// share a bucket per /64, the smallest network a single subscriber is
// usually given, so an attacker cannot get a fresh bucket per address of
// their own subnet. A nil *Limiter allows everything. Safe for concurrent
// use.
type Limiter struct {
	rate    float64 // tokens per second
	burst   float64
	max     int
	now     func() time.Time
	mu      sync.Mutex
	buckets map[netip.Prefix]bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter for rate. PerMinute and Burst must be positive.
func New(rate Rate, opts Options) (*Limiter, error) {
	if !(rate.PerMinute > 0) || math.IsInf(rate.PerMinute, 0) || rate.Burst < 1 {
		return nil, fmt.Errorf("ratelimit: rate %v/min with burst %d: %w", rate.PerMinute, rate.Burst, errBadRate)
	}
	if opts.MaxAddresses <= 0 {
		opts.MaxAddresses = DefaultMaxAddresses
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Limiter{
		rate:    rate.PerMinute / 60,
		burst:   float64(rate.Burst),
		max:     opts.MaxAddresses,
		now:     opts.Now,
		buckets: make(map[netip.Prefix]bucket),
	}, nil
}

var errBadRate = errors.New("rate and burst must be positive")

// Key is the bucket an address counts against: the address itself for
// IPv4, its /64 for IPv6. Invalid addresses all share one bucket.
func Key(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	switch {
	case a.Is4():
		return netip.PrefixFrom(a, 32)
	case a.Is6():
		p, _ := a.Prefix(64)
		return p
	default:
		return netip.Prefix{}
	}
}

// Allow takes one token for addr. When none is left it returns false and
// how long until one is.
func (l *Limiter) Allow(addr netip.Addr) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	k := Key(addr)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[k]
	if ok {
		b = l.refill(b, now)
	} else {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = bucket{tokens: l.burst, last: now}
	}
	if b.tokens >= 1 {
		b.tokens--
		l.buckets[k] = b
		return true, 0
	}
	l.buckets[k] = b
	wait := time.Duration(math.Ceil((1 - b.tokens) / l.rate * float64(time.Second)))
	return false, wait
}

// Len is the number of addresses remembered (for tests and metrics).
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (l *Limiter) refill(b bucket, now time.Time) bucket {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	return b
}

// evict makes room when the table is full. Buckets that have refilled
// carry no information and go first. If that frees nothing, the fullest
// tenth goes (ties: least recently used first).
//
// Trade-off: forgetting an address resets its bucket to full, so eviction
// must not be a cheap way to reset one. Evicting the fullest buckets means
// a drained bucket (the address that is being limited) is the last to go:
// to push it out, an attacker must hold MaxAddresses buckets that are at
// least as empty, that is spend the whole allowance of MaxAddresses
// addresses (or IPv6 /64s), after which the reset gains them one more
// burst. Refusing new addresses instead would let that same attacker lock
// every newcomer out; a bigger table only costs memory. Sorting a tenth at
// a time keeps a spray of new addresses at amortised O(log n) per request.
func (l *Limiter) evict(now time.Time) {
	type entry struct {
		k netip.Prefix
		b bucket
	}
	all := make([]entry, 0, len(l.buckets))
	for k, b := range l.buckets {
		b = l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
			continue
		}
		all = append(all, entry{k, b})
	}
	if len(l.buckets) < l.max {
		return
	}
	slices.SortFunc(all, func(x, y entry) int {
		if c := cmp.Compare(y.b.tokens, x.b.tokens); c != 0 {
			return c
		}
		return x.b.last.Compare(y.b.last)
	})
	n := max(1, l.max/10)
	for _, e := range all[:min(n, len(all))] {
		delete(l.buckets, e.k)
	}
}

// SetRetryAfter sets the Retry-After header (whole seconds, at least 1) for
// a limited request.
func SetRetryAfter(h http.Header, wait time.Duration) {
	s := int64(math.Ceil(wait.Seconds()))
	if s < 1 {
		s = 1
	}
	h.Set("Retry-After", strconv.FormatInt(s, 10))
}
