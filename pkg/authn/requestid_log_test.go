package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// Every log line about a request carries its request ID (issue 2), also the
// ones written from the detached refresh context and the lock-extending
// goroutine.
func TestLogLinesCarryTheRequestID(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		// run serves one request with X-Request-ID: id through h.
		run func(t *testing.T, e *env, fs *faultyStore, h http.Handler, id string)
	}{
		{
			name: "login at the callback",
			msg:  "login",
			run: func(t *testing.T, e *env, _ *faultyStore, h http.Handler, id string) {
				state, sc := startLogin(t, e.h, e.a, "/")
				q := url.Values{"state": {state}, "code": {"code:" + state}}
				if r := do(h, http.MethodGet, DefaultCallbackPath+"?"+q.Encode(), idHeader(id), sc); r.StatusCode != http.StatusFound {
					t.Fatalf("callback: status %d", r.StatusCode)
				}
			},
		},
		{
			name: "session store unavailable",
			msg:  "session store unavailable",
			run: func(t *testing.T, e *env, fs *faultyStore, h http.Handler, id string) {
				c := e.sessionCookie(t)
				down := error(errors.New("redis: connection refused"))
				fs.getErr.Store(&down)
				if r := do(h, http.MethodGet, "/x", idHeader(id), c); r.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("status %d", r.StatusCode)
				}
			},
		},
		{
			name: "refresh lock extension in the background",
			msg:  "extend refresh lock; retrying",
			run: func(t *testing.T, e *env, fs *faultyStore, h http.Handler, id string) {
				c := e.sessionCookie(t)
				fs.extendFailures.Store(1)
				e.rp.refresh = func(ctx context.Context, rt string) (*oidc.Tokens, error) {
					// The failed extension is logged before the refresh
					// returns: refreshHoldingLock waits for the goroutine.
					waitfor.True(t, 10*time.Second, "a lock extension", func() bool { return fs.extends.Load() >= 1 })
					return rotatingRefresh(e.clock)(ctx, rt)
				}
				setTokenExpiry(t, e.a, e.store, e.codec, c, e.clock.Now().Add(30*time.Second))
				if r := do(h, http.MethodGet, "/x", idHeader(id), c); r.StatusCode != http.StatusOK {
					t.Fatalf("status %d", r.StatusCode)
				}
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			e, fs := newFaultyEnv(t, func(o *Options) {
				o.Logger = zap.New(core)
				o.RefreshLockTTL = 30 * time.Millisecond
			})
			id := fmt.Sprintf("req-authn-%d", i)
			tt.run(t, e, fs, requestid.Middleware(e.h), id)
			lines := logs.FilterMessage(tt.msg).All()
			if len(lines) == 0 {
				t.Fatalf("no %q log line; got %v", tt.msg, logs.All())
			}
			for _, l := range lines {
				if got := l.ContextMap()["request_id"]; got != id {
					t.Errorf("%q logged with request_id %v, want %q", tt.msg, got, id)
				}
			}
		})
	}
}

// idHeader is a request header carrying the request ID id.
func idHeader(id string) http.Header {
	h := http.Header{}
	h.Set(requestid.Header, id)
	return h
}
