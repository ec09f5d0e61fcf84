// Package waitfor is how tests wait for something to become true: they
// check a condition at once and then on a ticker until a deadline, instead
// of sleeping and hoping. One implementation serves every suite.
package waitfor

import (
	"testing"
	"time"
)

// Interval is how often True and NoError check their condition.
const Interval = 10 * time.Millisecond

// Poll checks cond at once and then every interval until it holds or
// timeout passes, and reports whether it held.
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	if cond() {
		return true
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
			if cond() {
				return true
			}
		}
	}
}

// True fails the test unless cond holds within timeout.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, Interval, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// NoError fails the test unless f returns nil within timeout; the failure
// carries f's last error.
func NoError(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	var last error
	if !Poll(timeout, Interval, func() bool { last = f(); return last == nil }) {
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, last)
	}
}
