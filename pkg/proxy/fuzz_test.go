package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
)

// captureTransport is an in-memory upstream: it keeps the last forwarded
// request and answers 204.
type captureTransport struct{ last *http.Request }

func (c *captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.last = r
	return &http.Response{StatusCode: http.StatusNoContent, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// fold is how an upstream stack may read a header name: case-insensitive,
// "_" as "-".
func fold(k string) string { return strings.ReplaceAll(strings.ToLower(k), "_", "-") }

// FuzzForwardedHeaders sends a request with one header of any name and
// value plus client-chosen forwarding headers, from a trusted or an
// untrusted peer. The upstream never sees an identity header (in any
// spelling) other than the proxy's own, and from an untrusted peer the
// forwarding headers say exactly what this hop saw: the peer address, the
// Host and plain http.
func FuzzForwardedHeaders(f *testing.F) {
	f.Add("X-Forwarded-User", "admin", "1.2.3.4", "evil.example", "https", false)
	f.Add("x_forwarded_user", "admin", "", "", "", false)
	f.Add("X-USER-ID", "admin", "10.0.0.1, 1.2.3.4", "evil.example, a", "http", true)
	f.Add("x-forwarded-groups", "admins", "", "", "", true)
	f.Add("X-Forwarded_For", "6.6.6.6", "", "", "", false)
	f.Add("FORWARDED", "for=6.6.6.6;host=evil", "", "", "", false)
	f.Add("X-Forwarded-Email", "root@example.com", "x", "y", "z", false)
	id := &identity.Identity{Subject: "alice", Email: "alice@example.com", Groups: []string{"staff"}, Username: "alice"}
	trusted, err := forwarded.ParseTrustedProxies([]string{"192.0.2.0/24"})
	if err != nil {
		f.Fatal(err)
	}
	up := &captureTransport{}
	p, err := proxy.New(proxy.Options{
		Upstream: mustURL(f, "http://127.0.0.1:1"), Transport: up, TrustForwarded: trusted.Trusts,
		StripHeaders: []string{"Authorization"},
	})
	if err != nil {
		f.Fatal(err)
	}
	h := withIdentity(p, id, "req-1")
	ours := map[string]string{
		"x-forwarded-user": id.Subject, "x-forwarded-email": id.Email, "x-forwarded-groups": "staff",
		"x-forwarded-preferred-username": id.Username,
		"x-user-id":                      "", "x-user-email": "", "x-user-name": "", "x-user-groups": "",
	}
	f.Fuzz(func(t *testing.T, name, value, xff, xfh, xfp string, fromTrusted bool) {
		r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		r.RemoteAddr = "198.51.100.9:5555"
		if fromTrusted {
			r.RemoteAddr = "192.0.2.9:5555"
		}
		for k, v := range map[string]string{"X-Forwarded-For": xff, "X-Forwarded-Host": xfh, "X-Forwarded-Proto": xfp} {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		r.Header[name] = append(r.Header[name], value)
		up.last = nil
		h.ServeHTTP(httptest.NewRecorder(), r)
		if up.last == nil {
			return // a header net/http cannot send: refused before the upstream
		}
		out := up.last.Header
		for k, vs := range out {
			want, managed := ours[fold(k)]
			if !managed {
				continue
			}
			if k != http.CanonicalHeaderKey(k) || want == "" || !slices.Equal(vs, []string{want}) {
				t.Fatalf("upstream got %s: %q (sent %s: %q); want only the proxy's own value %q", k, vs, name, value, want)
			}
		}
		for k, vs := range out {
			switch fold(k) {
			case "forwarded":
				t.Fatalf("upstream got the client's Forwarded header %q: %q", k, vs)
			case "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto":
				if k != http.CanonicalHeaderKey(k) {
					t.Fatalf("upstream got the client's %q: %q", k, vs)
				}
			}
		}
		if fromTrusted {
			return
		}
		if got := out.Values("X-Forwarded-For"); !slices.Equal(got, []string{"198.51.100.9"}) {
			t.Fatalf("untrusted peer: X-Forwarded-For = %q", got)
		}
		if got := out.Values("X-Forwarded-Host"); !slices.Equal(got, []string{r.Host}) {
			t.Fatalf("untrusted peer: X-Forwarded-Host = %q, want %q", got, r.Host)
		}
		if got := out.Values("X-Forwarded-Proto"); !slices.Equal(got, []string{"http"}) {
			t.Fatalf("untrusted peer: X-Forwarded-Proto = %q", got)
		}
	})
}
