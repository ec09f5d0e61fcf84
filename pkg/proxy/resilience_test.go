package proxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

func okUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(s.Close)
	return s
}

func do(t *testing.T, method, target, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestRetryOnlyIdempotent: while the upstream refuses connections, GETs are
// retried up to Attempts and succeed once it is back; POSTs (JSON-RPC, could
// run a tool twice) get exactly one dial.
func TestRetryOnlyIdempotent(t *testing.T) {
	live := okUpstream(t)
	dead := deadAddr(t)
	tests := []struct {
		name      string
		method    string
		body      string
		upAfter   int64 // the upstream "comes back" for dials after this many; 0 = never
		wantDials int64
		wantCode  int
	}{
		{name: "GET exhausts attempts", method: http.MethodGet, wantDials: 3, wantCode: http.StatusBadGateway},
		{name: "GET rides out a restart", method: http.MethodGet, upAfter: 2, wantDials: 3, wantCode: http.StatusOK},
		{name: "DELETE without body is retried", method: http.MethodDelete, upAfter: 1, wantDials: 2, wantCode: http.StatusOK},
		{name: "POST is never retried", method: http.MethodPost, body: `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, upAfter: 1, wantDials: 1, wantCode: http.StatusBadGateway},
		{name: "POST without body is not retried either", method: http.MethodPost, upAfter: 1, wantDials: 1, wantCode: http.StatusBadGateway},
		{name: "PUT with a streamed body is not retried", method: http.MethodPut, body: "x", upAfter: 1, wantDials: 1, wantCode: http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := newCountingTransport(dead)
			ct.onDial = func(n int64) {
				if tt.upAfter > 0 && n > tt.upAfter {
					ct.setTarget(mustURL(t, live.URL).Host)
				}
			}
			core, logs := observer.New(zapcore.DebugLevel)
			p := newProxy(t, proxy.Options{
				Upstream:  mustURL(t, "http://mcp.invalid:3000"),
				Transport: ct,
				Retry:     proxy.RetryOptions{Attempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond},
				Breaker:   proxy.BreakerOptions{Failures: -1},
				Logger:    zap.New(core),
			})
			front := frontServer(t, withIdentity(p, nil, "rid"))
			resp, body := do(t, tt.method, front.URL+"/mcp", tt.body)
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status = %d (%s), want %d", resp.StatusCode, body, tt.wantCode)
			}
			if got := ct.dials.Load(); got != tt.wantDials {
				t.Errorf("dials = %d, want %d", got, tt.wantDials)
			}
			// Every retry is logged with the request's ID (issue 2).
			retries := logs.FilterMessage("retrying refused upstream connection").All()
			if len(retries) != int(tt.wantDials)-1 {
				t.Errorf("%d retry log lines, want %d", len(retries), tt.wantDials-1)
			}
			for _, e := range retries {
				if got := e.ContextMap()["request_id"]; got != "rid" {
					t.Errorf("retry logged with request_id %v, want rid", got)
				}
			}
		})
	}
}

// TestRetryWaitHonoursCancellation: a client that gives up during a long
// backoff frees the handler at once instead of after the wait.
func TestRetryWaitHonoursCancellation(t *testing.T) {
	ct := newCountingTransport(deadAddr(t))
	dialed := make(chan struct{}, 1)
	ct.onDial = func(int64) { dialed <- struct{}{} }
	obs := &recordingObserver{}
	p := newProxy(t, proxy.Options{
		Upstream:  mustURL(t, "http://mcp.invalid"),
		Transport: ct,
		Observer:  obs,
		Retry:     proxy.RetryOptions{Attempts: 5, InitialBackoff: time.Hour, MaxBackoff: time.Hour},
	})
	handlerDone := make(chan struct{})
	front := frontServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(handlerDone)
		p.ServeHTTP(w, r)
	}))

	ctx, cancel := context.WithCancel(t.Context())
	clientErr := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		clientErr <- err
	}()
	<-dialed
	cancel()
	select {
	case <-handlerDone:
	case <-time.After(testTimeout):
		t.Fatal("proxy handler still waiting out the backoff after the client left")
	}
	if err := <-clientErr; !isCanceled(err) {
		t.Errorf("client error = %v, want context.Canceled", err)
	}
	if got := ct.dials.Load(); got != 1 {
		t.Errorf("dials = %d, want 1", got)
	}
	waitfor.True(t, testTimeout, "client_canceled reported", func() bool {
		return slices.Contains(obs.errors(), proxy.ErrorKindCanceled)
	})
}

// TestCircuitBreaker walks closed -> open -> half-open -> open -> half-open
// -> closed on a fake clock, counting real dials to a dead port.
func TestCircuitBreaker(t *testing.T) {
	live := okUpstream(t)
	ct := newCountingTransport(deadAddr(t))
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	obs := &recordingObserver{}
	p := newProxy(t, proxy.Options{
		Upstream:  mustURL(t, "http://mcp.invalid"),
		Transport: ct,
		Observer:  obs,
		Retry:     proxy.RetryOptions{Attempts: 1},
		Breaker:   proxy.BreakerOptions{Failures: 3, OpenDuration: 10 * time.Second, Now: clock.Now},
	})
	front := frontServer(t, withIdentity(p, nil, "rid-b"))

	expect := func(step string, wantCode int, wantErr string, wantDials int64) {
		t.Helper()
		resp, body := do(t, http.MethodGet, front.URL+"/", "")
		if resp.StatusCode != wantCode {
			t.Fatalf("%s: status = %d (%s), want %d", step, resp.StatusCode, body, wantCode)
		}
		if wantErr != "" && !strings.Contains(body, `"code":"`+wantErr+`"`) {
			t.Fatalf("%s: body = %s, want code %s", step, body, wantErr)
		}
		if got := ct.dials.Load(); got != wantDials {
			t.Fatalf("%s: dials = %d, want %d", step, got, wantDials)
		}
	}
	expect("failure 1", 502, apierror.CodeBadGateway, 1)
	expect("failure 2", 502, apierror.CodeBadGateway, 2)
	expect("failure 3 opens", 502, apierror.CodeBadGateway, 3)
	expect("open: fail fast", 503, apierror.CodeCircuitOpen, 3)
	clock.Advance(9 * time.Second)
	expect("still open", 503, apierror.CodeCircuitOpen, 3)
	clock.Advance(time.Second)
	expect("half-open trial fails", 502, apierror.CodeBadGateway, 4)
	expect("open again", 503, apierror.CodeCircuitOpen, 4)

	// Half-open admits exactly one trial: hold it in the dialer and check a
	// concurrent request fails fast.
	clock.Advance(10 * time.Second)
	ct.setTarget(mustURL(t, live.URL).Host)
	inDial, release := make(chan struct{}), make(chan struct{})
	ct.onDial = func(int64) {
		close(inDial)
		<-release
	}
	trial := make(chan int, 1)
	go func() {
		resp, err := http.Get(front.URL + "/")
		if err != nil {
			trial <- 0
			return
		}
		_ = resp.Body.Close()
		trial <- resp.StatusCode
	}()
	<-inDial
	ct.onDial = nil
	expect("second request during trial", 503, apierror.CodeCircuitOpen, 5)
	close(release)
	if code := <-trial; code != http.StatusOK {
		t.Fatalf("trial status = %d, want 200", code)
	}
	expect("closed again", 200, "", 6)
	expect("closed again 2", 200, "", 7)

	want := []string{proxy.BreakerOpen, proxy.BreakerHalfOpen, proxy.BreakerOpen, proxy.BreakerHalfOpen, proxy.BreakerClosed}
	if got := obs.breakerStates(); !slices.Equal(got, want) {
		t.Errorf("breaker transitions = %v, want %v", got, want)
	}
}

// TestErrorMapping checks each failure maps to its status, code and JSON
// shape, that the log carries the request fields and never headers, and that
// a client that left gets no body.
func TestErrorMapping(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	garbage := garbageServer(t)

	tests := []struct {
		name      string
		upstream  string
		transport http.RoundTripper
		status    int
		code      string
		message   string
		kind      string
	}{
		{name: "refused", upstream: "http://" + deadAddr(t), status: 502, code: apierror.CodeBadGateway,
			message: "upstream MCP server is not reachable", kind: proxy.ErrorKindConnect},
		{name: "header timeout", upstream: slow.URL, transport: proxy.DefaultTransport(20 * time.Millisecond), status: 504,
			code: apierror.CodeUpstreamTimeout, message: "upstream MCP server did not answer in time", kind: proxy.ErrorKindTimeout},
		{name: "malformed response", upstream: "http://" + garbage, status: 502, code: apierror.CodeBadGateway,
			message: "upstream MCP server failed to answer", kind: proxy.ErrorKindOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			obs := &recordingObserver{}
			p := newProxy(t, proxy.Options{
				Upstream:  mustURL(t, tt.upstream),
				Transport: tt.transport,
				Logger:    zap.New(core),
				Observer:  obs,
				Retry:     proxy.RetryOptions{Attempts: 1},
			})
			front := frontServer(t, withIdentity(p, nil, "rid-err"))
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, front.URL+"/mcp?x=1", nil)
			req.Header.Set("Authorization", "Bearer secret-token")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			body := decodeAPIError(t, resp)
			if body.Error.Code != tt.code || body.Error.Message != tt.message || body.RequestID != "rid-err" {
				t.Errorf("body = %+v", body)
			}
			if got := obs.errors(); !slices.Equal(got, []string{tt.kind}) {
				t.Errorf("observer kinds = %v, want [%s]", got, tt.kind)
			}
			entries := logs.FilterFieldKey("request_id").All()
			if len(entries) != 1 {
				t.Fatalf("want 1 upstream error log entry, got %d", len(entries))
			}
			fields := entries[0].ContextMap()
			if fields["request_id"] != "rid-err" || fields["method"] != "GET" || fields["path"] != "/mcp" || fields["error"] == nil {
				t.Errorf("log fields = %v", fields)
			}
			for _, e := range logs.All() {
				for k, v := range e.ContextMap() {
					if s, ok := v.(string); ok && strings.Contains(s, "secret-token") {
						t.Errorf("log field %s leaks the Authorization header", k)
					}
				}
			}
		})
	}

	t.Run("client canceled: no body", func(t *testing.T) {
		obs := &recordingObserver{}
		p := newProxy(t, proxy.Options{Upstream: mustURL(t, slow.URL), Observer: obs})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil))
		if rec.Body.Len() != 0 {
			t.Errorf("body for a gone client = %q", rec.Body.String())
		}
		if got := obs.errors(); !slices.Equal(got, []string{proxy.ErrorKindCanceled}) {
			t.Errorf("observer kinds = %v", got)
		}
	})
}

// garbageServer accepts connections and answers with something that is not
// HTTP, for the "upstream answered nonsense" branch.
func garbageServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = bufio.NewReader(c).ReadString('\n')
				_, _ = io.WriteString(c, "SSH-2.0-not-http\r\n\r\n")
			}()
		}
	}()
	return l.Addr().String()
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		opts proxy.Options
	}{
		{"nil upstream", proxy.Options{}},
		{"bad scheme", proxy.Options{Upstream: mustURL(t, "ftp://127.0.0.1:21")}},
		{"no host", proxy.Options{Upstream: mustURL(t, "http:///path")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := proxy.New(tt.opts); err == nil {
				t.Fatal("want an error")
			}
		})
	}
	p, err := proxy.New(proxy.Options{Upstream: mustURL(t, "http://127.0.0.1:3000")})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Headers(); got.User != proxy.DefaultHeaderNames().User {
		t.Errorf("default headers = %+v", got)
	}
}
