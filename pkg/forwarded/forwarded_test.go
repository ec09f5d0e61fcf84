package forwarded_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
)

func TestBaseURL(t *testing.T) {
	trusted := []string{"10.0.0.0/8", "fd00::/8", "192.0.2.7"}
	tests := []struct {
		name    string
		opts    forwarded.Options
		host    string
		remote  string
		tls     bool
		headers map[string]string
		want    string
	}{
		{"request host, plain", forwarded.Options{}, "pod.internal:15080", "10.1.1.1:1", false, nil, "http://pod.internal:15080"},
		{"request host, TLS", forwarded.Options{}, "pod.internal:15443", "10.1.1.1:1", true, nil, "https://pod.internal:15443"},
		{"external URL wins over everything", forwarded.Options{ExternalURL: "https://MCP.example.com/", TrustedProxies: trusted}, "pod.internal:15080", "10.1.1.1:1", false,
			map[string]string{"X-Forwarded-Host": "other.example", "X-Forwarded-Proto": "http"}, "https://mcp.example.com"},
		{"external URL with prefix", forwarded.Options{ExternalURL: "https://example.com/tools/"}, "pod:1", "1.1.1.1:1", false, nil, "https://example.com/tools"},
		{"trusted proxy", forwarded.Options{TrustedProxies: trusted}, "pod.internal:15080", "10.9.9.9:443", false,
			map[string]string{"X-Forwarded-Host": "mcp.example.com", "X-Forwarded-Proto": "https"}, "https://mcp.example.com"},
		{"trusted single IP", forwarded.Options{TrustedProxies: trusted}, "pod:1", "192.0.2.7:80", false,
			map[string]string{"X-Forwarded-Host": "mcp.example.com", "X-Forwarded-Proto": "https"}, "https://mcp.example.com"},
		{"trusted IPv6 proxy", forwarded.Options{TrustedProxies: trusted}, "pod:1", "[fd00::5]:80", false,
			map[string]string{"X-Forwarded-Host": "mcp.example.com", "X-Forwarded-Proto": "https"}, "https://mcp.example.com"},
		{"trusted chain: first value", forwarded.Options{TrustedProxies: trusted}, "pod:1", "10.0.0.1:1", false,
			map[string]string{"X-Forwarded-Host": "mcp.example.com, lb.internal", "X-Forwarded-Proto": "https, http"}, "https://mcp.example.com"},
		{"trusted, only proto", forwarded.Options{TrustedProxies: trusted}, "mcp.example.com", "10.0.0.1:1", false,
			map[string]string{"X-Forwarded-Proto": "https"}, "https://mcp.example.com"},
		{"spoofed host from untrusted peer", forwarded.Options{TrustedProxies: trusted}, "pod.internal:15080", "203.0.113.5:1", false,
			map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}, "http://pod.internal:15080"},
		{"spoofed host, no trusted proxies", forwarded.Options{}, "pod.internal:15080", "10.0.0.1:1", false,
			map[string]string{"X-Forwarded-Host": "evil.example"}, "http://pod.internal:15080"},
		{"trusted but malformed host", forwarded.Options{TrustedProxies: trusted}, "pod:1", "10.0.0.1:1", false,
			map[string]string{"X-Forwarded-Host": "evil.example/path?x", "X-Forwarded-Proto": "javascript"}, "http://pod:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := forwarded.NewResolver(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			base := res.BaseURL
			req := httptest.NewRequest("GET", "/mcp", nil)
			req.Host = tt.host
			req.RemoteAddr = tt.remote
			if tt.tls {
				req.TLS = &tls.ConnectionState{}
			} else {
				req.TLS = nil
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			if got := base(req); got != tt.want {
				t.Fatalf("BaseURL = %q, want %q", got, tt.want)
			}
			// Behind the middleware the same decision is made once and
			// read back, even if a later handler rewrites the headers.
			want := res.Decide(req)
			var seen forwarded.Decision
			res.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				r.Header.Set("X-Forwarded-Host", "rewritten.example")
				r.Host = "rewritten.example"
				seen = res.For(r)
			})).ServeHTTP(httptest.NewRecorder(), req)
			if seen.BaseURL != tt.want || seen != want {
				t.Fatalf("behind the middleware: %+v, want the decision %+v made on entry", seen, want)
			}
		})
	}
}

func TestBaseURLRejectsBadConfig(t *testing.T) {
	for _, opts := range []forwarded.Options{
		{ExternalURL: "mcp.example.com"},
		{ExternalURL: "ftp://mcp.example.com"},
		{ExternalURL: "https://mcp.example.com/?q=1"},
		{TrustedProxies: []string{"not-a-cidr"}},
		{ExternalURL: "https://mcp.example.com", TrustedProxies: []string{"not-a-cidr"}},
	} {
		if _, err := forwarded.NewResolver(opts); err == nil {
			t.Errorf("NewResolver(%+v) accepted", opts)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted, err := forwarded.ParseTrustedProxies([]string{"10.0.0.0/8", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		trust  forwarded.TrustedProxies
		remote string
		xff    []string
		want   string
	}{
		{"no proxy", trusted, "203.0.113.9:5000", nil, "203.0.113.9"},
		{"untrusted peer cannot spoof", trusted, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"nobody trusted", nil, "10.0.0.1:5000", []string{"198.51.100.1"}, "10.0.0.1"},
		{"trusted proxy", trusted, "10.0.0.1:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-written entries on the left are ignored", trusted, "10.0.0.1:5000", []string{"1.2.3.4, 5.6.7.8, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", trusted, "10.0.0.1:5000", []string{"1.2.3.4, 198.51.100.1, 10.2.2.2, fd00::7"}, "198.51.100.1"},
		{"several header lines", trusted, "10.0.0.1:5000", []string{"1.2.3.4", "198.51.100.1, 10.2.2.2"}, "198.51.100.1"},
		{"entry with port", trusted, "10.0.0.1:5000", []string{"198.51.100.1:4444"}, "198.51.100.1"},
		{"IPv6 entry", trusted, "[fd00::1]:5000", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"mapped IPv4 peer", trusted, "[::ffff:10.0.0.1]:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"garbage stops at the trusted hop", trusted, "10.0.0.1:5000", []string{"198.51.100.1, not-an-ip"}, "10.0.0.1"},
		{"only trusted hops", trusted, "10.0.0.1:5000", []string{"10.3.3.3"}, "10.3.3.3"},
		{"no header from a trusted proxy", trusted, "10.0.0.1:5000", nil, "10.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := tc.trust.ClientAddr(r); got.String() != tc.want {
				t.Fatalf("ClientAddr = %s, want %s", got, tc.want)
			}
		})
	}
}

type parentKey struct{}

// The context Middleware hands on keeps everything of the request's own
// (its values, its cancellation) and its Decision stays visible through
// contexts derived from it.
func TestMiddlewareContext(t *testing.T) {
	res, err := forwarded.NewResolver(forwarded.Options{ExternalURL: "https://mcp.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), parentKey{}, "kept"))
	req := httptest.NewRequest(http.MethodGet, "http://other.example/mcp", nil).WithContext(parent)
	var derived context.Context
	var seen forwarded.Decision
	res.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if got := r.Context().Value(parentKey{}); got != "kept" {
			t.Errorf("parent value behind the middleware = %v, want kept", got)
		}
		var cancel context.CancelFunc
		derived, cancel = context.WithCancel(r.Context())
		t.Cleanup(cancel)
		seen = res.For(r.WithContext(derived))
	})).ServeHTTP(httptest.NewRecorder(), req)
	if seen.BaseURL != "https://mcp.example.com" || seen.Host != "other.example" {
		t.Fatalf("decision through a derived context = %+v", seen)
	}
	cancelParent()
	select {
	case <-derived.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the request's context did not reach a context derived behind the middleware")
	}
}

// Requests alternating between hosts and schemes each get their own base
// URL (the resolver reuses the last one it built only for the same
// scheme and host).
func TestBaseURLFollowsEachRequest(t *testing.T) {
	res, err := forwarded.NewResolver(forwarded.Options{TrustedProxies: []string{"192.0.2.7"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		host, proto, want string
	}{
		{"a.example", "", "http://a.example"},
		{"a.example", "", "http://a.example"},
		{"b.example:8443", "", "http://b.example:8443"},
		{"b.example:8443", "https", "https://b.example:8443"},
		{"a.example", "https", "https://a.example"},
		{"a.example", "", "http://a.example"},
	} {
		req := httptest.NewRequest(http.MethodGet, "http://"+tc.host+"/mcp", nil)
		req.RemoteAddr = "192.0.2.7:1234"
		if tc.proto != "" {
			req.Header.Set("X-Forwarded-Proto", tc.proto)
		}
		if got := res.BaseURL(req); got != tc.want {
			t.Fatalf("request %d: BaseURL = %q, want %q", i, got, tc.want)
		}
	}
}
