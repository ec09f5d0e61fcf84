package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// testTimeout bounds every blocking wait so a broken proxy fails the test
// instead of hanging it.
const testTimeout = 10 * time.Second

// withIdentity stands in for the authentication layer: it puts id and a
// request ID into the context, as the real middleware chain does.
func withIdentity(next http.Handler, id *identity.Identity, reqID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := identity.NewContext(r.Context(), id)
		if reqID != "" {
			ctx = requestid.NewContext(ctx, reqID)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func mustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return u
}

func newProxy(t testing.TB, opts proxy.Options) *proxy.Proxy {
	t.Helper()
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	return p
}

// frontServer serves h (usually the proxy behind withIdentity) on a real
// listener and closes it with the test.
func frontServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// deadAddr returns a loopback address nothing listens on, so dials to it
// are refused by the kernel (a real ECONNREFUSED, not a mock).
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return addr
}

// countingTransport dials whatever address target() returns at the time of
// the dial, counting dials, regardless of the request URL. It lets a test
// point the same proxy first at a dead port, then at a live one.
type countingTransport struct {
	*http.Transport
	dials  atomic.Int64
	target atomic.Pointer[string]
	// onDial, when set, runs before each dial (with the dial's number).
	onDial func(n int64)
}

func newCountingTransport(addr string) *countingTransport {
	ct := &countingTransport{}
	ct.setTarget(addr)
	d := &net.Dialer{Timeout: testTimeout}
	ct.Transport = &http.Transport{
		DisableKeepAlives: true, // one dial per request keeps counts exact
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			n := ct.dials.Add(1)
			if ct.onDial != nil {
				ct.onDial(n)
			}
			return d.DialContext(ctx, network, *ct.target.Load())
		},
	}
	return ct
}

func (ct *countingTransport) setTarget(addr string) { ct.target.Store(&addr) }

// recordingObserver records every Observer event.
type recordingObserver struct {
	mu     sync.Mutex
	errs   []string
	states []string
	opened atomic.Int64
	closed atomic.Int64
}

var _ proxy.Observer = (*recordingObserver)(nil)

func (o *recordingObserver) UpstreamError(kind string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, kind)
}

func (o *recordingObserver) BreakerStateChanged(state string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.states = append(o.states, state)
}

func (o *recordingObserver) StreamOpened() { o.opened.Add(1) }
func (o *recordingObserver) StreamClosed() { o.closed.Add(1) }

func (o *recordingObserver) errors() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.errs...)
}

func (o *recordingObserver) breakerStates() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.states...)
}

// decodeAPIError reads a proxy-generated JSON error.
func decodeAPIError(t testing.TB, resp *http.Response) apierror.Body {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json", ct)
	}
	var body apierror.Body
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode error body: %v", err)
	}
	return body
}

// isCanceled reports a client-side context cancellation.
func isCanceled(err error) bool { return errors.Is(err, context.Canceled) }
