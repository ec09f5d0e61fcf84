package oauth

import (
	"math"
	"sync"
	"time"
)

// RateLimit is a token bucket: Burst registrations at once, refilled at
// PerMinute per minute. A zero value means DefaultRegistrationRateLimit; a
// negative PerMinute disables the limit.
type RateLimit struct {
	PerMinute float64
	Burst     int
}

// DefaultRegistrationRateLimit allows a client IP a burst of 10
// registrations, then one every 6 seconds: generous for real clients (one
// registration per install), tight for someone filling the store.
var DefaultRegistrationRateLimit = RateLimit{PerMinute: 10, Burst: 10}

// maxBuckets bounds the limiter's memory under an address-spraying flood.
const maxBuckets = 10000

// ipLimiter is a per-IP token bucket. It is per replica (the store has no
// atomic counter), so the effective limit scales with the replica count.
type ipLimiter struct {
	rate    float64 // tokens per second
	burst   float64
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newIPLimiter(rl RateLimit, now func() time.Time) *ipLimiter {
	if rl.PerMinute == 0 && rl.Burst == 0 {
		rl = DefaultRegistrationRateLimit
	}
	if rl.PerMinute < 0 {
		return nil
	}
	if rl.Burst <= 0 {
		rl.Burst = 1
	}
	return &ipLimiter{rate: rl.PerMinute / 60, burst: float64(rl.Burst), now: now, buckets: map[string]*bucket{}}
}

// allow takes one token for ip, or says how many seconds to wait.
func (l *ipLimiter) allow(ip string) (bool, int) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.evictFull(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if l.rate <= 0 {
		return false, 3600
	}
	return false, int(math.Ceil((1 - b.tokens) / l.rate))
}

// evictFull drops buckets that have refilled (they carry no information);
// if none has, it drops everything rather than grow without bound.
func (l *ipLimiter) evictFull(now time.Time) {
	for ip, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, ip)
		}
	}
	if len(l.buckets) >= maxBuckets {
		clear(l.buckets)
	}
}
