package drain

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// protected is a real HTTP server standing in for the protected listener,
// and a client with keep-alive connections to it.
type protected struct {
	srv    *httptest.Server
	client *http.Client
}

func newProtected(t *testing.T) *protected {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &protected{srv: srv, client: &http.Client{Transport: tr}}
}

// get sends one request and reports whether it reused an idle connection
// and whether the server said it closes the connection after it.
func (p *protected) get(t *testing.T) (reused, closed bool) {
	t.Helper()
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.srv.URL, nil)
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
		t.Fatalf("GET answered %q", b)
	}
	return reused, resp.Close
}

// drain calls the endpoint like the kubelet's preStop hook.
func drain(t *testing.T, d *Drainer, query string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	d.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/drain?"+query, nil))
	return w
}

// TestDrainMovesClientsOff: while a drain runs, an idle keep-alive
// connection is closed and every answer closes its connection; once the
// drain and its linger are over, connections are reused again.
func TestDrainMovesClientsOff(t *testing.T) {
	p := newProtected(t)
	p.get(t)
	if reused, _ := p.get(t); !reused {
		t.Fatal("before the drain the client does not reuse its connection; the test proves nothing")
	}
	d := New(p.srv.Config, Options{Linger: 300 * time.Millisecond})
	done := make(chan *httptest.ResponseRecorder, 1)
	start := time.Now()
	go func() { done <- drain(t, d, "seconds=1") }()
	waitfor.True(t, 5*time.Second, "the drain to start", d.Draining)

	for i := range 3 {
		reused, closed := p.get(t)
		if reused || !closed {
			t.Fatalf("request %d during the drain: reused %v, connection closed after it %v; want a new connection, closed after the answer", i, reused, closed)
		}
	}
	w := <-done
	if took := time.Since(start); w.Code != http.StatusOK || took < time.Second {
		t.Fatalf("drain answered %d %q after %s; want 200 after 1s", w.Code, w.Body, took)
	}
	if _, closed := p.get(t); !closed {
		t.Fatal("right after the drain's sleep connections are reused; want them closed for the linger")
	}
	waitfor.True(t, 5*time.Second, "keep-alives back on after the linger", func() bool { return !d.Draining() })
	p.get(t)
	if reused, closed := p.get(t); !reused || closed {
		t.Fatalf("after the drain: reused %v, closed %v; want connections reused again", reused, closed)
	}
}

// TestDrainRequests: the endpoint takes only a whole number of seconds
// from 1 to MaxSeconds, and a bounded number of waiting requests.
func TestDrainRequests(t *testing.T) {
	p := newProtected(t)
	d := New(p.srv.Config, Options{})
	for _, q := range []string{"", "seconds=", "seconds=0", "seconds=-1", "seconds=1.5", "seconds=5s", "seconds=301", "seconds=99999999999999999999"} {
		if w := drain(t, d, q); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "seconds must be") {
			t.Errorf("?%s: %d %q, want 400", q, w.Code, w.Body)
		}
	}
	if d.Draining() {
		t.Fatal("a refused drain request switched keep-alives off")
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range maxWaiting {
		wg.Go(func() {
			d.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/drain?seconds=300", nil).WithContext(ctx))
		})
	}
	waitfor.True(t, 5*time.Second, "the drains to wait", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.waiting == maxWaiting
	})
	if w := drain(t, d, "seconds=1"); w.Code != http.StatusTooManyRequests {
		t.Errorf("drain beyond %d waiting: %d, want 429", maxWaiting, w.Code)
	}
	cancel()
	wg.Wait() // a caller that gives up ends its drain's wait
}

// TestDrainLatestEndWins: a shorter drain that ends while a longer one
// runs does not switch keep-alives back on.
func TestDrainLatestEndWins(t *testing.T) {
	p := newProtected(t)
	d := New(p.srv.Config, Options{})
	long := make(chan struct{})
	go func() {
		defer close(long)
		drain(t, d, "seconds=2")
	}()
	waitfor.True(t, 5*time.Second, "the long drain to start", d.Draining)
	if w := drain(t, d, "seconds=1"); w.Code != http.StatusOK {
		t.Fatalf("short drain: %d", w.Code)
	}
	if !d.Draining() {
		t.Fatal("the short drain's end switched keep-alives on while the long one runs")
	}
	<-long
	waitfor.True(t, 5*time.Second, "keep-alives on after the long drain", func() bool { return !d.Draining() })
}

// TestDrainMovesHTTP2ClientsOff: over HTTP/2 (TLS) the server sends GOAWAY
// once a request on the connection ends while keep-alives are off, so the
// client's next request opens a new connection.
func TestDrainMovesHTTP2ClientsOff(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("request over %s, want HTTP/2", r.Proto)
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	d := New(srv.Config, Options{})
	p := &protected{srv: srv, client: srv.Client()}
	p.get(t)
	if reused, _ := p.get(t); !reused {
		t.Fatal("before the drain the HTTP/2 client does not reuse its connection; the test proves nothing")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/drain?seconds=60", nil).WithContext(ctx))
	}()
	defer func() { cancel(); <-done }()
	waitfor.True(t, 5*time.Second, "the drain to start", d.Draining)
	p.get(t) // the connection's last request: GOAWAY follows it
	for i := range 3 {
		if reused, _ := p.get(t); reused {
			t.Fatalf("HTTP/2 request %d during the drain reused a connection; want GOAWAY to have moved the client to a new one each time", i)
		}
	}
}
