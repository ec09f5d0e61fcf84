package fault

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// Bounds of the slow and oversized input test.
const (
	// readHeaderTimeout is the serving listener's header timeout (fixed in
	// pkg/server). A connection that has not sent complete headers by then
	// is closed without an answer: Go's http.Server does not send 408 for
	// a header timeout, and RFC 9110 lets a server close instead; a 408 to
	// a client still sending its request is mostly unread anyway.
	readHeaderTimeout = 10 * time.Second
	// closeMargin is how much later than readHeaderTimeout the close may
	// be observed on a loaded machine.
	closeMargin = 10 * time.Second
	// slowConns is how many slowloris connections are held open at once.
	slowConns = 200
	// slowRSSGrowth bounds the sidecar's resident memory growth while
	// slowConns connections are held open with 16 KiB of partial headers
	// each.
	slowRSSGrowth = 64 << 20
	// servedDuringAttack bounds a normal request while the slow
	// connections are open.
	servedDuringAttack = 5 * time.Second
	// headerLimit is the serving listener's MaxHeaderBytes (64 KiB; Go
	// allows 4 KiB more before answering 431).
	headerLimit = 64 << 10
	// bodyTimeout is the sidecar's --request-body-timeout here: how long
	// the proxy's own endpoints wait for a request body before 408.
	bodyTimeout = 3 * time.Second
	// slowBodies is how many trickled bodies are sent at once.
	slowBodies = 20
)

// Slow and oversized input against the built sidecar.
//
// Promises: oversized headers and cookie headers get 431, an oversized
// session cookie within the header limit gets 401 (rejected before any
// decoding, and cleared), an oversized body to one of the proxy's own
// endpoints gets 413 without being read; slowloris connections are closed
// within readHeaderTimeout (+closeMargin) without an answer, the sidecar
// keeps serving meanwhile, and its memory grows by less than slowRSSGrowth
// with slowConns of them open.
//
// Last, trickled bodies to the proxy's own endpoints get 408 within the
// body read deadline (request_body_timeout, bodyTimeout here) + closeMargin.
func TestSlowAndOversizedInput(t *testing.T) {
	bin := buildSidecar(t)
	idp := oidcprovider.Start(t, oidcprovider.Options{})
	up := startUpstream(t)
	sc := startSidecar(t, bin, func(listen, admin string) []string {
		return append(stack.Flags(listen, admin, up.URL, idp.Issuer()),
			"--log-level", "warn", "--request-body-timeout", bodyTimeout.String())
	})
	addr := strings.TrimPrefix(sc.URL, "http://")

	big := strings.Repeat("a", headerLimit+8<<10)
	t.Run("oversized header gets 431", func(t *testing.T) {
		status := rawStatus(t, addr, "GET /data HTTP/1.1\r\nHost: "+addr+"\r\nX-Big: "+big+"\r\n\r\n")
		if status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("request with a %d KiB header = %d; promised 431", len(big)>>10, status)
		}
	})
	t.Run("oversized cookie header gets 431", func(t *testing.T) {
		status := rawStatus(t, addr, "GET /data HTTP/1.1\r\nHost: "+addr+"\r\nCookie: "+cookieName+"="+big+"\r\n\r\n")
		if status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("request with a %d KiB cookie = %d; promised 431", len(big)>>10, status)
		}
	})
	t.Run("oversized session cookie gets 401 and is cleared", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, sc.URL+"/data", nil)
		req.Header.Set("Accept", "application/json")
		req.AddCookie(&http.Cookie{Name: cookieName, Value: "v1." + strings.Repeat("A", 8<<10)})
		res := doRequest(t, req)
		if res.Status != http.StatusUnauthorized || errorCode(res) != "unauthenticated" {
			t.Fatalf("8 KiB session cookie = %s; promised 401 unauthenticated", res)
		}
		cleared := false
		for _, c := range (&http.Response{Header: res.Header}).Cookies() {
			cleared = cleared || (c.Name == cookieName && c.MaxAge < 0)
		}
		if !cleared {
			t.Errorf("the oversized cookie was not cleared: Set-Cookie %q", res.Header.Values("Set-Cookie"))
		}
	})
	t.Run("oversized bodies to the proxy's own endpoints get 413", func(t *testing.T) {
		body := bytes.Repeat([]byte("a"), 1<<20)
		for _, tc := range []struct{ path, contentType string }{
			{"/oauth2/token", "application/x-www-form-urlencoded"},
			{"/oauth2/register", "application/json"},
			{"/oauth2/authorize", "application/x-www-form-urlencoded"},
			{"/oauth2/revoke", "application/x-www-form-urlencoded"},
			{"/oauth2/logout", "application/x-www-form-urlencoded"},
		} {
			req, _ := http.NewRequest(http.MethodPost, sc.URL+tc.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", tc.contentType)
			res := doRequest(t, req)
			if res.Status != http.StatusRequestEntityTooLarge || errorCode(res) != "request_too_large" {
				t.Errorf("POST %s with a 1 MiB body = %s; promised 413 request_too_large", tc.path, res)
			}
		}
	})

	t.Run("slowloris headers are cut off and memory stays bounded", func(t *testing.T) {
		before := rss(t, sc.cmd.Process.Pid)
		type closed struct {
			after time.Duration
			reply []byte
			err   error
		}
		results := make(chan closed, slowConns)
		stop := make(chan struct{})
		defer close(stop)
		var opened sync.WaitGroup
		for range slowConns {
			opened.Add(1)
			go func() {
				var c closed
				defer func() { results <- c }()
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					c.err = err
					opened.Done()
					return
				}
				defer conn.Close()
				start := time.Now()
				// 16 KiB of a header line that never ends, then one byte
				// a second: the server must hold the partial line.
				_, err = io.WriteString(conn, "GET /data HTTP/1.1\r\nHost: "+addr+"\r\nX-Slow: "+strings.Repeat("s", 16<<10))
				opened.Done()
				if err != nil {
					c.err = err
					return
				}
				readDone := make(chan struct{})
				go func() {
					defer close(readDone)
					_ = conn.SetReadDeadline(time.Now().Add(readHeaderTimeout + closeMargin + 5*time.Second))
					c.reply, c.err = io.ReadAll(conn)
					c.after = time.Since(start)
					if errors.Is(c.err, syscall.ECONNRESET) {
						// The server closed with a trickled byte still
						// unread, so the kernel reset the connection.
						c.err = nil
					}
				}()
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for {
					select {
					case <-readDone:
						return
					case <-stop:
						return
					case <-tick.C:
						_, _ = conn.Write([]byte("s"))
					}
				}
			}()
		}
		opened.Wait()

		// While they are open: memory, and a normal request is served.
		var peak int64
		var sample sync.WaitGroup
		sampling := make(chan struct{})
		sample.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				peak = max(peak, rss(t, sc.cmd.Process.Pid))
				select {
				case <-sampling:
					return
				case <-tick.C:
				}
			}
		})
		start := time.Now()
		resp, err := (&http.Client{Timeout: servedDuringAttack}).Get(sc.Admin + "/readyz")
		if err != nil {
			t.Errorf("/readyz during the slowloris: %v", err)
		} else {
			_ = resp.Body.Close()
		}
		req, _ := http.NewRequest(http.MethodGet, sc.URL+"/.well-known/oauth-protected-resource/mcp", nil)
		res := doRequest(t, req)
		served := time.Since(start)
		if res.Status != http.StatusOK || served > servedDuringAttack {
			t.Errorf("metadata request during the slowloris = %s in %s; promised 200 within %s", res, served, servedDuringAttack)
		}

		var slowest time.Duration
		for range slowConns {
			c := <-results
			slowest = max(slowest, c.after)
			switch {
			case c.err != nil:
				t.Errorf("slow connection: %v; promised a close by the server within %s", c.err, readHeaderTimeout+closeMargin)
			case len(c.reply) > 0:
				t.Errorf("slow connection got %q; want a silent close", tailOf(string(c.reply), 100))
			case c.after > readHeaderTimeout+closeMargin:
				t.Errorf("slow connection closed after %s; promised within %s", c.after, readHeaderTimeout+closeMargin)
			case c.after < readHeaderTimeout-time.Second:
				t.Errorf("slow connection closed after %s, before the header timeout %s", c.after, readHeaderTimeout)
			}
		}
		close(sampling)
		sample.Wait()
		after := rss(t, sc.cmd.Process.Pid)
		t.Logf("measured: %d slowloris connections closed without an answer, the last %s after opening (bound %s); a normal request took %s meanwhile (bound %s); RSS %.1f MiB before, %.1f MiB peak (+%.1f MiB, bound +%d MiB), %.1f MiB after",
			slowConns, slowest.Round(time.Millisecond), readHeaderTimeout+closeMargin, served.Round(time.Millisecond), servedDuringAttack,
			mib(before), mib(peak), mib(peak-before), slowRSSGrowth>>20, mib(after))
		if peak-before > slowRSSGrowth {
			t.Errorf("RSS grew by %.1f MiB with %d slow connections; promised under %d MiB", mib(peak-before), slowConns, slowRSSGrowth>>20)
		}
		// All connections are gone from the server's side too: a new
		// request is served normally.
		waitfor.NoError(t, setupTimeout, "the sidecar to answer after the slowloris", func() error {
			req, _ := http.NewRequest(http.MethodGet, sc.URL+"/.well-known/oauth-protected-resource/mcp", nil)
			if res := doRequest(t, req); res.Status != http.StatusOK {
				return fmt.Errorf("%s", res)
			}
			return nil
		})
	})

	// Last: the body read deadline of the proxy's own endpoints.
	t.Run("slow bodies to the proxy's own endpoints get 408", func(t *testing.T) {
		type answer struct {
			status int
			after  time.Duration
			err    error
		}
		answers := make(chan answer, slowBodies)
		for i := range slowBodies {
			path := []string{"/oauth2/token", "/oauth2/revoke", "/oauth2/logout", "/oauth2/register"}[i%4]
			go func() {
				status, after, err := slowBody(addr, path)
				answers <- answer{status, after, err}
			}()
		}
		var slowest time.Duration
		for range slowBodies {
			a := <-answers
			slowest = max(slowest, a.after)
			if a.err != nil || a.status != http.StatusRequestTimeout || a.after > bodyTimeout+closeMargin {
				t.Errorf("trickled body = %d after %s (%v); promised 408 within %s", a.status, a.after, a.err, bodyTimeout+closeMargin)
			}
		}
		t.Logf("measured: %d trickled bodies answered 408, the last %s after their headers (bound: request_body_timeout %s + %s)",
			slowBodies, slowest.Round(time.Millisecond), bodyTimeout, closeMargin)
	})
}

// slowBody sends the headers of a POST to path declaring a 1000-byte form
// body, then one body byte every 500ms, and returns the answer's status and
// how long after the headers it came.
func slowBody(addr, path string) (int, time.Duration, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(bodyTimeout + closeMargin + 5*time.Second))
	start := time.Now()
	head := "POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		return 0, 0, err
	}
	type answer struct {
		status int
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		_ = resp.Body.Close()
		answered <- answer{status: resp.StatusCode}
	}()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case a := <-answered:
			return a.status, time.Since(start), a.err
		case <-tick.C:
			_, _ = conn.Write([]byte("a"))
		}
	}
}

// rawStatus writes raw to a new connection and returns the status code of
// the answer.
func rawStatus(t *testing.T, addr, raw string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(setupTimeout))
	go func() { _, _ = io.WriteString(conn, raw) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// doRequest sends req without following redirects and reads the answer.
func doRequest(t *testing.T, req *http.Request) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), setupTimeout)
	defer cancel()
	start := time.Now()
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Header: resp.Header, Body: body, Err: err, Took: time.Since(start)}
}

// rss is the resident set size of process pid in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read process status: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/<pid>/status")
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
