package authn

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// countingStore counts the login states written.
type countingStore struct {
	session.SingleUse
	states atomic.Int64
}

func (c *countingStore) PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if strings.HasPrefix(key, stateKeyPrefix) {
		c.states.Add(1)
	}
	return c.SingleUse.PutOnce(ctx, key, value, ttl)
}

// TestLoginStateIsRateLimitedPerClientAddress: every unauthenticated
// navigation stores a login state, so a flood from one client address is
// cut off at the limit with 429 and Retry-After, nothing more is stored,
// and other addresses are unaffected.
func TestLoginStateIsRateLimitedPerClientAddress(t *testing.T) {
	const addrHeader = "X-Test-Client-Addr"
	var store *countingStore
	e := newEnv(t, func(o *Options) {
		store = &countingStore{SingleUse: o.States}
		o.States = store
		o.ClientAddr = func(r *http.Request) netip.Addr {
			a, _ := netip.ParseAddr(r.Header.Get(addrHeader))
			return a
		}
	})
	nav := func(addr, path string) *http.Response {
		h := navHeader.Clone()
		h.Set(addrHeader, addr)
		return do(e.h, http.MethodGet, path, h)
	}
	burst := DefaultLoginRate.Burst
	const flood = 300
	var redirected, limited int
	for i := range flood {
		path := "/app?page=" + url.QueryEscape(strings.Repeat("x", i))
		if i%2 == 1 {
			path = StartPath + "?rd=/app"
		}
		resp := nav("198.51.100.7", path)
		switch resp.StatusCode {
		case http.StatusFound:
			redirected++
		case http.StatusTooManyRequests:
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		default:
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	if redirected != burst || limited != flood-burst || store.states.Load() != int64(burst) {
		t.Fatalf("%d requests from one address: %d logins started, %d limited, %d states stored; want %d started and stored",
			flood, redirected, limited, store.states.Load(), burst)
	}
	if resp := nav("198.51.100.8", "/app"); resp.StatusCode != http.StatusFound {
		t.Fatalf("another address: %d, want a login redirect", resp.StatusCode)
	}
	e.clock.Advance(time.Minute)
	if resp := nav("198.51.100.7", "/app"); resp.StatusCode != http.StatusFound {
		t.Fatalf("after a minute: %d, want a login redirect", resp.StatusCode)
	}
}

// TestLoginStateFieldsAreBounded: the stored return and callback URLs are
// capped; an explicit over-long rd is refused with 400, as is a callback
// URL that would be over-long (built from a Host the caller chose).
func TestLoginStateFieldsAreBounded(t *testing.T) {
	e := newEnv(t, nil)
	resp := do(e.h, http.MethodGet, StartPath+"?rd=/"+strings.Repeat("a", 4096), navHeader)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("over-long rd: %d, want 400", resp.StatusCode)
	}
	long := newEnv(t, func(o *Options) {
		o.RedirectURL = func(*http.Request) string { return "https://" + strings.Repeat("h", 3000) + "/oauth2/callback" }
	})
	if resp := do(long.h, http.MethodGet, "/app", navHeader); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("over-long callback URL: %d, want 400", resp.StatusCode)
	}
}
