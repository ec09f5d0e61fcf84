package forwarded_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
)

// FuzzBaseURL checks the URL the proxy advertises for a request (in
// challenges and metadata). From a peer that is not a trusted proxy the
// forwarding headers change nothing; from a trusted one the scheme is http
// or https and a host taken from X-Forwarded-Host makes a bare origin: no
// path, query, user info, second host or malformed port can be smuggled in.
func FuzzBaseURL(f *testing.F) {
	f.Add("proxy.example", "evil.example", "https", "192.0.2.7:4444", false)
	f.Add("proxy.example", "evil.example/path?q#f", "javascript", "198.51.100.1:1", false)
	f.Add("Proxy.Example:8443", "EVIL.example:1, other.example", "HTTPS, http", "[::ffff:192.0.2.9]:80", true)
	f.Add("proxy.example", "user@evil.example", "https", "192.0.2.7", false)
	res, err := forwarded.NewResolver(forwarded.Options{TrustedProxies: []string{"192.0.2.0/24"}})
	if err != nil {
		f.Fatal(err)
	}
	base := res.BaseURL
	trusted, err := forwarded.ParseTrustedProxies([]string{"192.0.2.0/24"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host, xfh, xfp, remote string, withTLS bool) {
		r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		r.Host, r.RemoteAddr = host, remote
		if withTLS {
			r.TLS = &tls.ConnectionState{}
		}
		plain := base(r)
		r.Header.Set("X-Forwarded-Host", xfh)
		r.Header.Set("X-Forwarded-Proto", xfp)
		got := base(r)
		if !trusted.Trusts(r) {
			if got != plain {
				t.Fatalf("untrusted peer %q changed the base URL from %q to %q", remote, plain, got)
			}
			return
		}
		scheme, h, ok := strings.Cut(got, "://")
		if !ok || (scheme != "http" && scheme != "https") {
			t.Fatalf("base URL %q has scheme %q", got, scheme)
		}
		if h == strings.ToLower(host) {
			// The request's own Host: which hosts are served is the
			// allowed-hosts check's business, not the forwarding headers'.
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Host != h || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
			t.Fatalf("forwarded headers (%q, %q) produced base URL %q, not a bare origin (%+v, %v)", xfh, xfp, got, u, err)
		}
	})
}
