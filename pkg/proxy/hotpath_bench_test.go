package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
)

// BenchmarkFlushInterval measures what eager flushing costs on the common
// MCP answer, a small JSON body with a Content-Length, through a bare
// ReverseProxy: -1 (flush after every write, for every response), 0
// (ReverseProxy still flushes SSE and unknown-length bodies immediately by
// itself) and a short positive interval.
func BenchmarkFlushInterval(b *testing.B) {
	for _, fi := range []time.Duration{-1, 0, 50 * time.Millisecond} {
		b.Run(fmt.Sprintf("interval=%v", fi), func(b *testing.B) {
			up := benchUpstream(b)
			target := mustURL(b, up.URL)
			rp := &httputil.ReverseProxy{
				Rewrite: func(pr *httputil.ProxyRequest) {
					pr.SetURL(target)
					pr.SetXForwarded()
				},
				Transport:     proxy.DefaultTransport(0),
				FlushInterval: fi,
			}
			front := frontServer(b, rp)
			runParallelGETs(b, front.URL+"/mcp")
		})
	}
}

// BenchmarkHeldSSEStreams holds streams open through the proxy, each
// having received its first event, and reports the memory (heap in use and
// goroutine stacks, after a GC) each one costs beyond the same number of
// streams held directly against the upstream: the proxy's own share,
// without the benchmark's client and upstream.
func BenchmarkHeldSSEStreams(b *testing.B) {
	const streams = 500
	for range b.N {
		direct := heldStreamsMemory(b, streams, false)
		proxied := heldStreamsMemory(b, streams, true)
		b.ReportMetric(float64(proxied-direct)/streams, "bytes/stream")
	}
}

// heldStreamsMemory opens n SSE streams (through the proxy or not), waits
// for the first event on each, measures, and closes everything.
func heldStreamsMemory(b *testing.B, n int, viaProxy bool) uint64 {
	b.Helper()
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer up.Close()
	url := up.URL
	if viaProxy {
		p := newProxy(b, proxy.Options{Upstream: mustURL(b, up.URL)})
		front := httptest.NewServer(withIdentity(p, &identity.Identity{Subject: "alice", Email: "alice@example.com"}, "req-1"))
		defer front.Close()
		url = front.URL
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	bodies := make([]io.ReadCloser, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/sse", nil)
			// As MCP clients open their streams (the small copy buffers).
			req.Header.Set("Accept", "text/event-stream")
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			if _, err := bufio.NewReaderSize(resp.Body, 16).ReadString('\n'); err != nil {
				errs <- fmt.Errorf("first event: %w", err)
			}
			bodies[i] = resp.Body
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if f := os.Getenv("HELD_SSE_HEAP_PROFILE"); f != "" && viaProxy {
		if out, err := os.Create(f); err == nil {
			_ = pprof.Lookup("heap").WriteTo(out, 0)
			_ = out.Close()
		}
		b.Logf("goroutines while holding %d streams through the proxy: %d; stack in use %d", n, runtime.NumGoroutine(), ms.StackInuse)
	}
	close(release)
	for _, body := range bodies {
		_ = body.Close()
	}
	return ms.HeapInuse + ms.StackInuse
}

// BenchmarkLargeBody forwards a 1 MiB JSON answer (a large tool result), the
// case the small copy buffer makes take more reads and writes.
func BenchmarkLargeBody(b *testing.B) {
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = w.Write(body)
	}))
	b.Cleanup(up.Close)
	p := newProxy(b, proxy.Options{Upstream: mustURL(b, up.URL)})
	front := frontServer(b, withIdentity(p, &identity.Identity{Subject: "alice"}, "req-1"))
	b.SetBytes(int64(len(body)))
	runParallelGETs(b, front.URL+"/mcp")
}
