package resource_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/resource"
)

func TestHostGuardExpected(t *testing.T) {
	g, err := resource.NewHostGuard(resource.HostOptions{
		ExternalURL:  "https://mcp.example.com",
		AllowedHosts: []string{"*.team.svc", "*.team.svc.cluster.local:8080", "10.1.2.3", "fd00::7", "[fd00::8]:9000", "Other.Example.", "api.example.org:8443"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"mcp.example.com":                 true,
		"MCP.example.com:443":             true,
		"mcp.example.com.":                true,
		"evil.example.com":                false,
		"mcp.example.com.evil.example":    false,
		"xmcp.example.com":                false,
		"localhost:15080":                 true,
		"127.0.0.1":                       true,
		"[::1]:15080":                     true,
		"127.0.0.2":                       false,
		"app.team.svc":                    true,
		"app.team.svc:8080":               true,
		"a.b.team.svc":                    true,
		"team.svc":                        false,
		"app.team.svc.evil":               false,
		"appteam.svc":                     false,
		"app.team.svc.cluster.local:8080": true,
		"app.team.svc.cluster.local":      false, // that pattern names a port
		"10.1.2.3:8080":                   true,
		"10.1.2.4":                        false,
		"[fd00::7]:8080":                  true,
		"[fd00::8]:9000":                  true,
		"[fd00::8]:9001":                  false,
		"[::ffff:10.1.2.3]":               true,
		"fd00::7":                         false, // not a Host header
		"other.example.com":               false,
		"other.example":                   true,
		"api.example.org:8443":            true,
		"api.example.org":                 false,
		"":                                false,
		"mcp.example.com:":                false,
		"mcp.example.com:99999":           false,
		"[fd00::7":                        false,
		"user@mcp.example.com":            false,
	} {
		if got := g.Expected(host); got != want {
			t.Errorf("Expected(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestHostGuardRefusesBadPatterns(t *testing.T) {
	for _, p := range []string{"", "https://mcp.example.com", "mcp.example.com/path", "*", "*.", "a.*.example", "host:port", "host:0", "fe80::1%eth0", "ex ample.com"} {
		if _, err := resource.NewHostGuard(resource.HostOptions{AllowedHosts: []string{p}}); !errors.Is(err, resource.ErrBadHostPattern) {
			t.Errorf("pattern %q: err = %v, want ErrBadHostPattern", p, err)
		}
	}
}

func TestHostGuardWrapUsesTheClientHost(t *testing.T) {
	g, err := resource.NewHostGuard(resource.HostOptions{
		AllowedHosts: []string{"mcp.example.com"},
		// As forwarded.Resolver.Host does for a trusted proxy.
		Host: func(r *http.Request) string { return r.Header.Get("X-Forwarded-Host") },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for fwd, want := range map[string]int{"mcp.example.com": http.StatusTeapot, "evil.example.com": http.StatusMisdirectedRequest} {
		req := httptest.NewRequest(http.MethodGet, "http://ingress.internal/mcp", nil)
		req.Header.Set("X-Forwarded-Host", fwd)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("X-Forwarded-Host %s: %d, want %d", fwd, rec.Code, want)
		}
	}
}

// Check guards the proxy's non-MCP routes: foreign origins get 403, the
// proxy's own and allowed ones pass without CORS headers, and "null" (a
// no-referrer page's form) passes only when Fetch Metadata says same-origin.
func TestOriginGuardCheck(t *testing.T) {
	g := resource.NewOriginGuard(resource.OriginOptions{AllowedOrigins: []string{"https://app.example.com"},
		BaseURL: func(*http.Request) string { return "https://mcp.example.com" }})
	h := g.Check(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for _, tc := range []struct {
		origin, site string
		want         int
	}{
		{"", "", http.StatusTeapot},
		{"https://mcp.example.com", "same-origin", http.StatusTeapot},
		{"https://app.example.com", "cross-site", http.StatusTeapot},
		{"https://evil.example.com", "cross-site", http.StatusForbidden},
		{"https://evil.example.com", "same-origin", http.StatusForbidden}, // Origin wins when real
		{"null", "same-origin", http.StatusTeapot},
		{"null", "cross-site", http.StatusForbidden},
		{"null", "", http.StatusForbidden},
	} {
		req := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/oauth2/consent", nil)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		if tc.site != "" {
			req.Header.Set("Sec-Fetch-Site", tc.site)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want || rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("Origin %q, Sec-Fetch-Site %q: %d (CORS %q), want %d without CORS headers", tc.origin, tc.site, rec.Code, rec.Header().Get("Access-Control-Allow-Origin"), tc.want)
		}
	}
}
