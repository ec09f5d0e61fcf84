package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// slowBodyTimeout is the body timeout the slow-body tests configure.
const slowBodyTimeout = 1 * time.Second

// serveForSlowBodies runs a façade-mode server exactly as the binary does
// (Serve on real loopback listeners) in front of upstream, with /public/*
// forwarded unauthenticated, and returns its address.
func serveForSlowBodies(t *testing.T, upstream string) string {
	t.Helper()
	srv := facadeServerWith(t, upstream,
		"--public-paths", "/public/*", "--shutdown-grace", "1s",
		"--request-body-timeout", slowBodyTimeout.String())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adminLn) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// trickle opens a connection to addr, sends head and then one body byte
// per tick until the server answers or bound passes. It returns the
// response (nil if none came) and how long the server took to answer.
func trickle(t *testing.T, addr, head string, tick, bound time.Duration) (*http.Response, time.Duration) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, bound)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(bound))
	start := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	type result struct {
		resp *http.Response
		err  error
	}
	answered := make(chan result, 1)
	go func() {
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			// The connection must be closed after the answer, not kept
			// for the rest of the trickle.
			_, _ = io.Copy(io.Discard, resp.Body)
			if _, rerr := br.ReadByte(); !errors.Is(rerr, io.EOF) && !isConnReset(rerr) {
				err = fmt.Errorf("connection still open after the answer: %v", rerr)
			}
		}
		answered <- result{resp, err}
	}()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case r := <-answered:
			if r.err != nil {
				t.Fatalf("after %v: %v", time.Since(start), r.err)
			}
			return r.resp, time.Since(start)
		case <-ticker.C:
			if time.Since(start) > bound {
				return nil, time.Since(start)
			}
			// A write error just means the server hung up; the reader
			// reports what it answered.
			_, _ = conn.Write([]byte("a"))
		}
	}
}

// isConnReset: a reset after the answer also means the server closed the
// connection (the trickle's last bytes may arrive after it did).
func isConnReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// TestSlowBodiesOnOwnEndpointsAreCutOff: a client that trickles the body of
// a request to an endpoint the proxy parses itself gets 408 within the
// body timeout and its connection closed, instead of holding it for as long
// as it likes; an oversized body gets 413. The tick is well below the
// timeout, so a per-read idle timeout would not catch it.
func TestSlowBodiesOnOwnEndpointsAreCutOff(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(upstream.Close)
	addr := serveForSlowBodies(t, upstream.URL)
	bound := slowBodyTimeout + 4*time.Second

	head := func(method, path, extra string) string {
		return method + " " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n" +
			"Content-Type: application/x-www-form-urlencoded\r\n" + extra + "\r\n"
	}
	tests := []struct {
		name string
		head string
		want int
	}{
		{"token", head("POST", "/oauth2/token", "Content-Length: 1000\r\n"), http.StatusRequestTimeout},
		{"token, chunked", head("POST", "/oauth2/token", "Transfer-Encoding: chunked\r\n") + "400\r\n", http.StatusRequestTimeout},
		{"register", head("POST", "/oauth2/register", "Content-Length: 1000\r\n"), http.StatusRequestTimeout},
		{"revoke", head("POST", "/oauth2/revoke", "Content-Length: 1000\r\n"), http.StatusRequestTimeout},
		{"authorize", head("POST", "/oauth2/authorize", "Content-Length: 1000\r\n"), http.StatusRequestTimeout},
		{"consent", head("POST", "/oauth2/consent", "Content-Length: 1000\r\n"), http.StatusRequestTimeout},
		{"logout", head("POST", "/oauth2/logout", "Content-Length: 1000\r\n"), http.StatusRequestTimeout},
		{"session (method not allowed)", head("POST", "/api/v1/session", "Content-Length: 1000\r\n"), http.StatusRequestTimeout},
		{"unknown /oauth2/ path", head("POST", "/oauth2/nothing-here", "Content-Length: 1000\r\n"), http.StatusRequestTimeout},
		{"metadata", head("POST", "/.well-known/oauth-authorization-server", "Content-Length: 1000\r\n"), http.StatusRequestTimeout},
		{"oversized token request", head("POST", "/oauth2/token", "Content-Length: 10485760\r\n"), http.StatusRequestEntityTooLarge},
		{"oversized revoke request", head("POST", "/oauth2/revoke", "Content-Length: 10485760\r\n"), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, took := trickle(t, addr, tt.head, 200*time.Millisecond, bound)
			if resp == nil {
				t.Fatalf("no answer after %v of trickling; want %d within %v", took, tt.want, slowBodyTimeout)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d after %v, want %d", resp.StatusCode, took, tt.want)
			}
			if tt.want == http.StatusRequestTimeout && took < slowBodyTimeout {
				t.Fatalf("answered 408 after %v, before the %v timeout", took, slowBodyTimeout)
			}
		})
	}
}

// TestSlowStreamsToTheUpstreamAreNotCutOff: the body timeout is for the
// proxy's own endpoints only. An upload to the MCP server that takes longer
// than it, and an SSE stream open longer than it, keep working.
func TestSlowStreamsToTheUpstreamAreNotCutOff(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/public/upload":
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = fmt.Fprintf(w, "got %d", n)
		case "/public/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
					return
				}
				http.NewResponseController(w).Flush()
				select {
				case <-tick.C:
				case <-r.Context().Done():
					return
				}
			}
		}
	}))
	defer upstream.Close()
	addr := serveForSlowBodies(t, upstream.URL)
	ctx, cancel := context.WithTimeout(t.Context(), slowBodyTimeout+10*time.Second)
	defer cancel()

	t.Run("slow upload", func(t *testing.T) {
		const size = 25 // one byte per 100 ms: 2.5 s, past the body timeout
		pr, pw := io.Pipe()
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for range size {
				select {
				case <-tick.C:
				case <-ctx.Done():
					_ = pw.CloseWithError(ctx.Err())
					return
				}
				if _, err := pw.Write([]byte("a")); err != nil {
					return
				}
			}
			_ = pw.Close()
		}()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/public/upload", pr)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != fmt.Sprintf("got %d", size) {
			t.Fatalf("upload: %d %q", resp.StatusCode, body)
		}
		if took := time.Since(start); took < slowBodyTimeout {
			t.Fatalf("upload took %v, not longer than the body timeout: the test proves nothing", took)
		}
	})
	t.Run("long SSE stream", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/public/sse", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		br := bufio.NewReader(resp.Body)
		start := time.Now()
		for time.Since(start) < slowBodyTimeout+time.Second {
			if _, err := br.ReadString('\n'); err != nil {
				t.Fatalf("stream broke after %v: %v", time.Since(start), err)
			}
		}
	})
}
