package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
)

// The two benchmarks below are meant to be read as a ratio (make bench):
// BenchmarkProxy is this package with identity headers, cookie and header
// stripping in place; BenchmarkBareReverseProxy is a plain
// httputil.ReverseProxy in front of the same kind of upstream, with the same
// transport tuning, which is the ceiling for any Go proxy.

func benchUpstream(b *testing.B) *httptest.Server {
	b.Helper()
	body := []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(s.Close)
	return s
}

func benchClient() *http.Client {
	t := proxy.DefaultTransport(0)
	return &http.Client{Transport: t}
}

func runParallelGETs(b *testing.B, target string) {
	b.Helper()
	client := benchClient()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Cookie", "mcp_session=abc; theme=dark")
			req.Header.Set("Authorization", "Bearer x")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

func BenchmarkProxy(b *testing.B) {
	up := benchUpstream(b)
	p := newProxy(b, proxy.Options{
		Upstream:     mustURL(b, up.URL),
		StripHeaders: []string{"Authorization"},
		StripCookies: []string{"mcp_session"},
	})
	id := &identity.Identity{Subject: "alice", Email: "alice@example.com", Groups: []string{"dev", "ops"}}
	front := frontServer(b, withIdentity(p, id, "bench-request-id"))
	runParallelGETs(b, front.URL+"/mcp")
}

func BenchmarkBareReverseProxy(b *testing.B) {
	up := benchUpstream(b)
	target := mustURL(b, up.URL)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: proxy.DefaultTransport(0),
	}
	front := frontServer(b, rp)
	runParallelGETs(b, front.URL+"/mcp")
}
