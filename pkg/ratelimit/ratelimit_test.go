package ratelimit_test

import (
	"net/http"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/ratelimit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
)

func newLimiter(t *testing.T, r ratelimit.Rate, max int) (*ratelimit.Limiter, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	l, err := ratelimit.New(r, ratelimit.Options{MaxAddresses: max, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return l, clock
}

// addr returns the i-th IPv4 address of 10.0.0.0/8.
func addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestBucket(t *testing.T) {
	l, clock := newLimiter(t, ratelimit.Rate{PerMinute: 6, Burst: 2}, 0)
	a := netip.MustParseAddr("192.0.2.1")
	for i := range 2 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := l.Allow(a)
	if ok || wait != 10*time.Second {
		t.Fatalf("third request: ok=%v wait=%v, want refused for 10s", ok, wait)
	}
	if ok, _ := l.Allow(netip.MustParseAddr("192.0.2.2")); !ok {
		t.Fatal("another address shares the bucket")
	}
	clock.Advance(10 * time.Second)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("not refilled after 10s")
	}
	var nilLimiter *ratelimit.Limiter
	if ok, _ := nilLimiter.Allow(a); !ok {
		t.Fatal("a nil limiter must allow")
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1", "192.0.2.2", false},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true}, // one /64
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"fe80::1%eth0", "fe80::2", true},
	}
	for _, tc := range tests {
		a, b := netip.MustParseAddr(tc.a), netip.MustParseAddr(tc.b)
		if got := ratelimit.Key(a) == ratelimit.Key(b); got != tc.same {
			t.Errorf("Key(%s) == Key(%s): %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

func TestNewRefusesBadRates(t *testing.T) {
	for _, r := range []ratelimit.Rate{{0, 1}, {-1, 1}, {1, 0}} {
		if _, err := ratelimit.New(r, ratelimit.Options{}); err == nil {
			t.Errorf("New(%v) accepted", r)
		}
	}
}

// TestSprayIsBoundedAndKeepsDrainedBuckets: a flood from more addresses than
// the table holds keeps memory bounded (bucket count and Go heap), and does
// not reset the bucket of an address that is being limited.
func TestSprayIsBoundedAndKeepsDrainedBuckets(t *testing.T) {
	const max = 10000
	l, _ := newLimiter(t, ratelimit.Rate{PerMinute: 1, Burst: 5}, max)
	victim := netip.MustParseAddr("192.0.2.66")
	for range 5 {
		l.Allow(victim)
	}
	if ok, _ := l.Allow(victim); ok {
		t.Fatal("drained bucket allowed")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const spray = 5 * max
	for i := range spray {
		l.Allow(addr(i))
		if n := l.Len(); n > max {
			t.Fatalf("after %d addresses the limiter holds %d buckets, max %d", i+1, n, max)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d addresses: %d buckets, heap grew %d KiB", spray, l.Len(), grown>>10)
	// 10000 buckets of ~100 bytes plus map overhead; 4 MiB is a generous
	// bound that an unbounded table (50000 entries) would exceed.
	if grown > 4<<20 {
		t.Fatalf("heap grew %d bytes for a bounded table", grown)
	}
	if ok, _ := l.Allow(victim); ok {
		t.Fatal("the spray reset the drained bucket")
	}
}

func TestSetRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "1"}, {300 * time.Millisecond, "1"}, {10 * time.Second, "10"}, {10*time.Second + 1, "11"}} {
		h := http.Header{}
		ratelimit.SetRetryAfter(h, tc.d)
		if got := h.Get("Retry-After"); got != tc.want {
			t.Errorf("%v: Retry-After %q, want %q", tc.d, got, tc.want)
		}
	}
}
