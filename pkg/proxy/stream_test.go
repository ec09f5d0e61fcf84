package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// TestStreamingIsUnbuffered: the upstream writes a first part, flushes and
// then blocks until the test has read that part THROUGH THE PROXY. A proxy
// that buffered would never deliver it, and the deadline turns that deadlock
// into a failure. ReverseProxy flushes SSE and unknown-length bodies after
// every write; a body with a Content-Length is not a stream and is written
// when complete (TestFixedLengthBodyKeepsItsLength), which spares every
// small JSON answer an eager flush (bench/results-fast.md).
func TestStreamingIsUnbuffered(t *testing.T) {
	// An event larger than the small copy buffer of event-stream GETs
	// (and than the transport's read buffer).
	big := "id: 1\ndata: " + strings.Repeat("x", 10<<10) + "\n\n"
	tests := []struct {
		name          string
		contentType   string
		accept        string
		first, second string
	}{
		{name: "sse", contentType: "text/event-stream", first: "id: 1\ndata: one\n\n", second: "id: 2\ndata: two\n\n"},
		{name: "sse asked for", contentType: "text/event-stream", accept: "text/event-stream", first: "id: 1\ndata: one\n\n", second: "id: 2\ndata: two\n\n"},
		{name: "sse asked for, large event", contentType: "text/event-stream", accept: "text/event-stream", first: big, second: big},
		{name: "chunked json lines", contentType: "application/x-ndjson", first: "{\"n\":1}\n", second: "{\"n\":2}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			firstRead := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				_, _ = io.WriteString(w, tt.first)
				http.NewResponseController(w).Flush()
				select {
				case <-firstRead:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, tt.second)
			}))
			t.Cleanup(up.Close)
			p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL)})
			front := frontServer(t, withIdentity(p, &identity.Identity{Subject: "a"}, ""))

			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/stream", nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			defer func() { _ = resp.Body.Close() }()
			br := bufio.NewReader(resp.Body)
			first := make([]byte, len(tt.first))
			if _, err := io.ReadFull(br, first); err != nil {
				t.Fatalf("reading first part through the proxy (buffered?): %v", err)
			}
			if string(first) != tt.first {
				t.Fatalf("first part = %q, want %q", first, tt.first)
			}
			close(firstRead)
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("reading rest: %v", err)
			}
			if string(rest) != tt.second {
				t.Fatalf("second part = %q, want %q", rest, tt.second)
			}
		})
	}
}

// TestFixedLengthBodyKeepsItsLength forwards bodies with a Content-Length,
// smaller and larger than the pooled copy buffer, many at once: each arrives
// whole with its length, and no body carries bytes of another (the copy
// buffers are recycled between them).
func TestFixedLengthBodyKeepsItsLength(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		fill := r.URL.Query().Get("fill")
		body := strings.Repeat(fill, n)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		// Written in pieces with flushes, as a slow upstream would.
		for len(body) > 0 {
			k := min(len(body), 3000)
			_, _ = io.WriteString(w, body[:k])
			http.NewResponseController(w).Flush()
			body = body[k:]
		}
	}))
	t.Cleanup(up.Close)
	p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL)})
	front := frontServer(t, withIdentity(p, &identity.Identity{Subject: "a"}, ""))

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		n := []int{0, 1, 100, 8 << 10, 8<<10 + 1, 100 << 10}[i%6]
		fill := string(rune('a' + i%26))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/b?n=%d&fill=%s", front.URL, n, fill), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = resp.Body.Close() }()
			got, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				errs <- err
			case resp.ContentLength != int64(n) || len(resp.TransferEncoding) != 0:
				errs <- fmt.Errorf("n=%d: Content-Length %d, Transfer-Encoding %v", n, resp.ContentLength, resp.TransferEncoding)
			case string(got) != strings.Repeat(fill, n):
				errs <- fmt.Errorf("n=%d fill=%s: body differs (%d bytes)", n, fill, len(got))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSSEStreamsCounted checks the Observer sees each SSE stream open and
// close once, and that non-SSE responses are not counted.
func TestSSEStreamsCounted(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/json" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		_, _ = io.WriteString(w, ": hello\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(up.Close)
	obs := &recordingObserver{}
	p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL), Observer: obs})
	front := frontServer(t, withIdentity(p, nil, ""))

	resp, err := http.Get(front.URL + "/json")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()

	var bodies []io.ReadCloser
	for range 3 {
		resp, err := http.Get(front.URL + "/sse")
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != ": hello\n" {
			t.Fatalf("first line = %q, %v", line, err)
		}
		bodies = append(bodies, resp.Body)
	}
	if got := obs.opened.Load(); got != 3 {
		t.Fatalf("opened = %d, want 3", got)
	}
	if got := obs.closed.Load(); got != 0 {
		t.Fatalf("closed = %d while streams are open", got)
	}
	close(release)
	for _, b := range bodies {
		_, _ = io.Copy(io.Discard, b)
		_ = b.Close()
	}
	waitfor.True(t, testTimeout, "3 streams closed", func() bool { return obs.closed.Load() == 3 })
	if got := obs.opened.Load(); got != 3 {
		t.Fatalf("opened = %d, want 3 (json response counted?)", got)
	}
}

// TestMCPTransportPassesThrough: the Streamable HTTP transport gives meaning
// to statuses, bodies and a few headers; all must pass unchanged and never be
// replaced by the proxy's JSON errors.
func TestMCPTransportPassesThrough(t *testing.T) {
	tests := []struct {
		method string
		status int
		body   string
	}{
		{http.MethodPost, http.StatusAccepted, ""},
		{http.MethodPost, http.StatusBadRequest, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"bad"}}`},
		{http.MethodGet, http.StatusMethodNotAllowed, "method not allowed\n"},
		{http.MethodDelete, http.StatusNotFound, "session not found\n"},
		{http.MethodDelete, http.StatusNoContent, ""},
		{http.MethodGet, http.StatusOK, "event: message\ndata: {}\n\n"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %d", tt.method, tt.status), func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != tt.method {
					t.Errorf("upstream method = %s", r.Method)
				}
				for _, h := range []string{"Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-Id"} {
					if got := r.Header.Get(h); got != "v-"+h {
						t.Errorf("upstream %s = %q", h, got)
					}
				}
				if tt.method == http.MethodPost {
					b, _ := io.ReadAll(r.Body)
					if string(b) != `{"jsonrpc":"2.0","id":1,"method":"ping"}` {
						t.Errorf("upstream body = %q", b)
					}
				}
				w.Header().Set("Mcp-Session-Id", "sess-42")
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			t.Cleanup(up.Close)
			p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL)})
			front := frontServer(t, withIdentity(p, &identity.Identity{Subject: "a"}, ""))

			var body io.Reader
			if tt.method == http.MethodPost {
				body = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
			}
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, front.URL+"/mcp", body)
			req.Header.Set("Mcp-Session-Id", "v-Mcp-Session-Id")
			req.Header.Set("MCP-Protocol-Version", "v-Mcp-Protocol-Version")
			req.Header.Set("Last-Event-ID", "v-Last-Event-Id")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || string(got) != tt.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, got, tt.status, tt.body)
			}
			if resp.Header.Get("Mcp-Session-Id") != "sess-42" {
				t.Errorf("response Mcp-Session-Id = %q", resp.Header.Get("Mcp-Session-Id"))
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
				t.Errorf("Content-Type = %q, the upstream body was replaced", ct)
			}
		})
	}
}

// TestWebSocket proxies an upgrade both ways: the upstream greets first
// (server -> client) and then echoes (client -> server -> client), and it
// sees the identity headers on the upgrade request.
func TestWebSocket(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get("X-Forwarded-User")
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer func() { _ = c.CloseNow() }()
		ctx := r.Context()
		if err := c.Write(ctx, websocket.MessageText, []byte("hello "+user)); err != nil {
			return
		}
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(up.Close)
	p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL), StripHeaders: []string{"Authorization"}})
	front := frontServer(t, withIdentity(p, &identity.Identity{Subject: "carol"}, ""))

	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(front.URL, "http")+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"X-Forwarded-User": {"mallory"}, "Authorization": {"Bearer t"}},
	})
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	defer func() { _ = c.CloseNow() }()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "hello carol" {
		t.Fatalf("greeting = %q, %v", msg, err)
	}
	for i, want := range []string{"one", "two", "three"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo:"+want {
			t.Fatalf("echo %d = %q, %v", i, got, err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close: %v", err)
	}
}
