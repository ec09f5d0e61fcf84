// Package fakeclock is the manually advanced clock tests inject wherever the
// code takes a Now func, so that expiry is decided by the test rather than by
// real time passing. It is safe for concurrent use.
package fakeclock

import (
	"sync"
	"sync/atomic"
	"time"
)

// Clock is a clock that moves only when told to.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock reading start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time; pass the method value as a Now func.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Shifted is real time moved by an offset the test sets: for end-to-end
// tests whose components must keep talking in real time (TLS, the provider,
// Redis TTLs) while one of them lives hours or days ahead. The zero value
// reads real time.
type Shifted struct{ offset atomic.Int64 }

// Now returns real time plus the offset; pass the method value as a Now
// func.
func (c *Shifted) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Set makes the clock read d ahead of real time (behind, if d < 0).
func (c *Shifted) Set(d time.Duration) { c.offset.Store(int64(d)) }
