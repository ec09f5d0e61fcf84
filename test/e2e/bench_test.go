package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// benchClient keeps enough idle connections for RunParallel's goroutines,
// so the benchmarks measure proxying rather than connection set-up.
func benchClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// runGets issues authenticated GETs of url in parallel (with cookie, or
// with an Authorization header when token is set) and fails on any non-200
// answer.
func runGets(b *testing.B, target string, cookie *http.Cookie, token ...string) {
	client := benchClient()
	defer client.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodGet, target, nil)
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Accept", "application/json")
			if cookie != nil {
				req.AddCookie(cookie)
			}
			if len(token) > 0 {
				req.Header.Set("Authorization", "Bearer "+token[0])
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("GET %s = %d", target, resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkCookieSessionRedis is the full sidecar (authentication with a
// Redis-backed cookie session, authorization, header policy, forwarding) in
// front of a small JSON endpoint. Compare with BenchmarkBareReverseProxy.
func BenchmarkCookieSessionRedis(b *testing.B) {
	e := newEnv(b, envOptions{redis: true})
	p := e.start(b, proxyOptions{args: []string{"--log-level", "warn"}})
	res := login(b, e.idp, p.URL, p.URL, "/")
	runGets(b, p.URL+"/data", res.Cookie)
}

// BenchmarkBearerExternal is the full sidecar validating the provider's
// audience-bound JWT access tokens (--oauth-mode external) on every request,
// in front of the same endpoint.
func BenchmarkBearerExternal(b *testing.B) {
	e := newEnv(b, envOptions{idp: externalIDP([]string{externalResource})})
	p := e.start(b, proxyOptions{args: []string{"--oauth-mode", "external", "--external-url", externalBase, "--log-level", "warn"}})
	token := providerToken(b, e.idp, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
	runGets(b, p.URL+"/data", nil, token)
}

// BenchmarkBearerFacade is the full sidecar validating the access tokens
// its own authorization server (the façade) issued, on every request, in
// front of the same endpoint: the same bearer path as
// BenchmarkBearerExternal with the façade's keys and revocation check in
// place of the provider's JWKS.
func BenchmarkBearerFacade(b *testing.B) {
	e := newEnv(b, envOptions{})
	p := e.start(b, proxyOptions{args: []string{"--oauth-scopes", "mcp:tools,offline_access", "--log-level", "warn"}})
	c := facadeAuthorize(b, e, p.URL, p)
	runGets(b, p.URL+"/data", nil, c.tok.AccessToken)
}

// BenchmarkBareReverseProxy is the limit any proxy is measured against: a
// plain httputil.ReverseProxy without authentication in front of the same
// upstream endpoint.
func BenchmarkBareReverseProxy(b *testing.B) {
	up := startUpstream(b)
	target, err := url.Parse(up.URL)
	if err != nil {
		b.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	runGets(b, "http://"+ln.Addr().String()+"/data", nil)
}
