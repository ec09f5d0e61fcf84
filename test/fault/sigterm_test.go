package fault

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/weblogin"
)

// Bounds of the SIGTERM test.
const (
	// shutdownGrace is the sidecar's --shutdown-grace.
	shutdownGrace = 20 * time.Second
	// exitAfterGrace: the process exits within the grace period plus this
	// (the admin listener's own final shutdown is bounded by 5s).
	exitAfterGrace = 5 * time.Second
	// openStreams is how many SSE streams are open when SIGTERM arrives.
	openStreams = 200
	// tailEvents is how many events each stream still sends after SIGTERM,
	// before its final one.
	tailEvents = 3
)

// streamUpstream serves /stream: it sends "first", then waits for release
// and sends tailEvents more events and "last".
type streamUpstream struct {
	URL     string
	opened  atomic.Int64
	release chan struct{}
}

func startStreamUpstream(tb testing.TB) *streamUpstream {
	tb.Helper()
	u := &streamUpstream{release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		u.opened.Add(1)
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
		for i := range tailEvents {
			_, _ = fmt.Fprintf(w, "data: tail %d\n\n", i)
			w.(http.Flusher).Flush()
		}
		_, _ = io.WriteString(w, "data: last\n\n")
	})
	ln, err := stack.Listen()
	if err != nil {
		tb.Fatal(err)
	}
	var stop func()
	u.URL, stop = stack.Serve(ln, mux)
	tb.Cleanup(stop)
	return u
}

// SIGTERM to the built sidecar binary while 200 SSE streams are open.
//
// Promises: the listener stops accepting at once, but every open stream is
// carried to its final event within the grace period (shutdownGrace), and
// the process then exits 0, within shutdownGrace + exitAfterGrace of the
// signal.
func TestSIGTERMDrainsOpenStreams(t *testing.T) {
	bin := buildSidecar(t)
	idp := oidcprovider.Start(t, oidcprovider.Options{})
	up := startStreamUpstream(t)
	sc := startSidecar(t, bin, func(listen, admin string) []string {
		return append(stack.Flags(listen, admin, up.URL, idp.Issuer()),
			"--shutdown-grace", shutdownGrace.String(), "--log-level", "info")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cookie, err := weblogin.Login(ctx, weblogin.Options{Provider: idp, StartOn: sc.URL, CookieName: cookieName})
	if err != nil {
		t.Fatal(err)
	}

	// Open the streams; each reader reports what it read to the end.
	type streamEnd struct {
		events []string
		err    error
		at     time.Time
	}
	ends := make(chan streamEnd, openStreams)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: openStreams}}
	var firsts sync.WaitGroup
	for range openStreams {
		firsts.Add(1)
		go func() {
			var end streamEnd
			defer func() { end.at = time.Now(); ends <- end }()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, sc.URL+"/stream", nil)
			if err != nil {
				end.err = err
				firsts.Done()
				return
			}
			req.Header.Set("Accept", "text/event-stream")
			req.AddCookie(cookie)
			resp, err := client.Do(req)
			if err != nil {
				end.err = err
				firsts.Done()
				return
			}
			defer resp.Body.Close()
			lines := bufio.NewScanner(resp.Body)
			first := true
			for lines.Scan() {
				if ev, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
					end.events = append(end.events, ev)
					if first {
						first = false
						firsts.Done()
					}
				}
			}
			if first {
				firsts.Done()
			}
			end.err = lines.Err()
			if resp.StatusCode != http.StatusOK {
				end.err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	firsts.Wait()
	waitfor.True(t, setupTimeout, fmt.Sprintf("%d streams open at the upstream", openStreams), func() bool {
		return up.opened.Load() == openStreams
	})

	sigterm := time.Now()
	sc.signal(t, syscall.SIGTERM)
	// The listener closes at once; the process stays up for the streams.
	addr := strings.TrimPrefix(sc.URL, "http://")
	waitfor.True(t, setupTimeout, "the sidecar to stop accepting connections after SIGTERM", func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		_ = conn.Close()
		return false
	})
	select {
	case <-sc.done:
		t.Fatalf("the sidecar exited (%v) while %d streams were still open", sc.err, openStreams)
	default:
	}
	close(up.release)

	var lastStream time.Time
	for range openStreams {
		end := <-ends
		want := []string{"first"}
		for i := range tailEvents {
			want = append(want, fmt.Sprintf("tail %d", i))
		}
		want = append(want, "last")
		if end.err != nil || strings.Join(end.events, "|") != strings.Join(want, "|") {
			t.Errorf("stream ended with %q, %v; promised every event through %q", end.events, end.err, "last")
		}
		if end.at.After(lastStream) {
			lastStream = end.at
		}
	}
	select {
	case <-sc.done:
	case <-time.After(shutdownGrace + exitAfterGrace):
		t.Fatalf("the sidecar has not exited %s after SIGTERM; promised within grace %s + %s", time.Since(sigterm), shutdownGrace, exitAfterGrace)
	}
	streamsDone, exited := lastStream.Sub(sigterm), sc.exited.Sub(sigterm)
	t.Logf("measured: %d streams finished %s after SIGTERM (bound: grace %s); process exited with code %d %s after SIGTERM (bound %s)",
		openStreams, streamsDone.Round(time.Millisecond), shutdownGrace, sc.exitCode(), exited.Round(time.Millisecond), shutdownGrace+exitAfterGrace)
	if streamsDone > shutdownGrace {
		t.Errorf("the streams finished %s after SIGTERM; promised within the grace period %s", streamsDone, shutdownGrace)
	}
	if exited > shutdownGrace+exitAfterGrace {
		t.Errorf("the process exited %s after SIGTERM; promised within %s", exited, shutdownGrace+exitAfterGrace)
	}
	if code := sc.exitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM (%v); promised 0", code, sc.err)
	}
	if !strings.Contains(sc.out.String(), `"msg":"stopped"`) {
		t.Errorf("the sidecar did not log its clean stop")
	}
}
