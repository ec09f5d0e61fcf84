package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
)

// headerCapture is an upstream that hands every request's headers (raw
// keys, as Go's server stored them) to the test.
func headerCapture(t *testing.T) (*httptest.Server, <-chan http.Header) {
	t.Helper()
	got := make(chan http.Header, 16)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		got <- h
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s, got
}

// sendRaw sends a request whose header keys are written exactly as given
// (not canonicalised), the way a hostile client would.
func sendRaw(t *testing.T, ctx context.Context, method, target string, raw map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range raw {
		req.Header[k] = append(req.Header[k], v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func receive(t *testing.T, ch <-chan http.Header) http.Header {
	t.Helper()
	select {
	case h := <-ch:
		return h
	case <-t.Context().Done():
		t.Fatal("upstream never received the request")
		return nil
	}
}

// normalisedValues collects the values of every key that normalises to name.
func normalisedValues(h http.Header, name string) []string {
	want := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	var out []string
	for k, vs := range h {
		if strings.ReplaceAll(strings.ToLower(k), "_", "-") == want {
			out = append(out, vs...)
		}
	}
	return out
}

// spoofs are identity headers of both presets in hostile spellings.
var spoofs = map[string]string{
	"X-Forwarded-User":               "mallory",
	"x_forwarded_user":               "mallory",
	"X-FORWARDED-EMAIL":              "mallory@evil.example",
	"X_Forwarded-Groups":             "admins",
	"x-forwarded-preferred-username": "mallory",
	"X-User-ID":                      "mallory",
	"x_user_email":                   "mallory@evil.example",
	"X-USER_NAME":                    "Mallory",
	"x-user-groups":                  "admins",
	"X-Tenant":                       "other-tenant",
	"X_TENANT":                       "other-tenant",
	"X-Forwarded-For":                "10.9.9.9",
	"x_forwarded_for":                "10.9.9.9",
	"X-Forwarded-Host":               "evil.example",
	"X_FORWARDED_PROTO":              "https",
	"Forwarded":                      "for=10.9.9.9",
	"Authorization":                  "Bearer client-token",
	"x_authorization":                "Bearer client-token",
	"X-Request-ID":                   "client-chosen",
}

func TestIdentityHeadersReplaceSpoofedOnes(t *testing.T) {
	alice := &identity.Identity{
		Subject: "alice-sub", Email: "alice@example.com", Name: "Alice\r\nX-Evil: 1",
		Username: "alice", Groups: []string{"dev", "ops"},
	}
	tests := []struct {
		name    string
		headers proxy.HeaderNames
		id      *identity.Identity
		want    map[string]string // header -> exact single value
		absent  []string          // headers that must not reach the upstream in any spelling
	}{
		{
			name:    "default names",
			headers: proxy.HeaderNames{},
			id:      alice,
			want: map[string]string{
				"X-Forwarded-User": "alice-sub", "X-Forwarded-Email": "alice@example.com",
				"X-Forwarded-Groups": "dev,ops", "X-Forwarded-Preferred-Username": "alice",
			},
			absent: []string{"X-User-ID", "X-User-Email", "X-User-Name", "X-User-Groups", "X-Authorization", "Forwarded"},
		},
		{
			name:    "original preset also strips the default preset",
			headers: proxy.OriginalHeaderNames(),
			id:      alice,
			want: map[string]string{
				"X-User-ID": "alice-sub", "X-User-Email": "alice@example.com",
				"X-User-Name": "AliceX-Evil: 1", "X-User-Groups": "dev,ops",
			},
			absent: []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username"},
		},
		{
			name:    "custom names and extra",
			headers: proxy.HeaderNames{User: "X-Auth-Subject", Email: "X-Auth-Mail", Extra: []string{"X-Tenant"}},
			id:      alice,
			want:    map[string]string{"X-Auth-Subject": "alice-sub", "X-Auth-Mail": "alice@example.com"},
			absent:  []string{"X-Forwarded-User", "X-User-ID", "X-Tenant", "X-Forwarded-Groups"},
		},
		{
			name:    "extra alone keeps the default names",
			headers: proxy.HeaderNames{Extra: []string{"X-Tenant"}},
			id:      alice,
			want:    map[string]string{"X-Forwarded-User": "alice-sub", "X-Forwarded-Groups": "dev,ops"},
			absent:  []string{"X-Tenant", "X-User-ID"},
		},
		{
			name:    "nil identity sets none and still strips",
			headers: proxy.HeaderNames{},
			id:      nil,
			want:    map[string]string{},
			absent:  []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-User-ID", "X-User-Email"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, got := headerCapture(t)
			p := newProxy(t, proxy.Options{
				Upstream:     mustURL(t, up.URL),
				Headers:      tt.headers,
				StripHeaders: []string{"Authorization", "X-Authorization"},
			})
			front := frontServer(t, withIdentity(p, tt.id, "req-123"))
			resp := sendRaw(t, t.Context(), http.MethodGet, front.URL+"/mcp", spoofs)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			h := receive(t, got)
			for name, want := range tt.want {
				if vs := normalisedValues(h, name); len(vs) != 1 || vs[0] != want {
					t.Errorf("%s = %q, want exactly [%q]", name, vs, want)
				}
			}
			for _, name := range tt.absent {
				if vs := normalisedValues(h, name); len(vs) != 0 {
					t.Errorf("%s reached the upstream: %q", name, vs)
				}
			}
			for _, name := range []string{"Authorization", "X-Forwarded-Tenant"} {
				if vs := normalisedValues(h, name); len(vs) != 0 {
					t.Errorf("%s reached the upstream: %q", name, vs)
				}
			}
			if vs := normalisedValues(h, "X-Forwarded-For"); len(vs) != 1 || vs[0] != "127.0.0.1" {
				t.Errorf("X-Forwarded-For = %q, want [127.0.0.1]", vs)
			}
			if vs := normalisedValues(h, "X-Request-ID"); len(vs) != 1 || vs[0] != "req-123" {
				t.Errorf("X-Request-ID = %q, want [req-123]", vs)
			}
			if h.Get("Host") != mustURL(t, up.URL).Host {
				t.Errorf("Host = %q, want the upstream's %q", h.Get("Host"), mustURL(t, up.URL).Host)
			}
		})
	}
}

// TestForwardedHeaders: X-Forwarded-* from a trusted ingress reach the
// upstream (the client chain extended by this hop's peer); from any other
// peer they are replaced with what this hop saw. The front server's peer is
// always 127.0.0.1.
func TestForwardedHeaders(t *testing.T) {
	trustLoopback := mustTrusted(t, "127.0.0.1/32")
	trustOthers := mustTrusted(t, "10.0.0.0/8", "192.0.2.7")
	ingress := map[string]string{
		"X-Forwarded-For":   "203.0.113.7",
		"X-Forwarded-Host":  "public.example",
		"X-Forwarded-Proto": "https",
	}
	tests := []struct {
		name      string
		trust     func(*http.Request) bool
		sent      map[string]string
		wantFor   string
		wantHost  string // "" means this hop's Host (the front server)
		wantProto string
	}{
		{name: "no decision: spoofed values replaced", trust: nil, sent: ingress, wantFor: "127.0.0.1", wantProto: "http"},
		{name: "untrusted peer: spoofed values replaced", trust: trustOthers.Trusts, sent: ingress, wantFor: "127.0.0.1", wantProto: "http"},
		{name: "trusted peer: kept, chain extended", trust: trustLoopback.Trusts, sent: ingress,
			wantFor: "203.0.113.7, 127.0.0.1", wantHost: "public.example", wantProto: "https"},
		{name: "trusted peer: longer chain extended", trust: trustLoopback.Trusts,
			sent:    map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.7", "X-Forwarded-Proto": "https"},
			wantFor: "198.51.100.1, 203.0.113.7, 127.0.0.1", wantProto: "https"},
		{name: "trusted peer without forwarded headers: this hop's values", trust: trustLoopback.Trusts, sent: nil,
			wantFor: "127.0.0.1", wantProto: "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, got := headerCapture(t)
			p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL), TrustForwarded: tt.trust})
			front := frontServer(t, withIdentity(p, nil, ""))
			sendRaw(t, t.Context(), http.MethodGet, front.URL+"/", tt.sent)
			h := receive(t, got)
			if got := strings.Join(h.Values("X-Forwarded-For"), ", "); got != tt.wantFor {
				t.Errorf("X-Forwarded-For = %q, want %q", got, tt.wantFor)
			}
			wantHost := tt.wantHost
			if wantHost == "" {
				wantHost = mustURL(t, front.URL).Host
			}
			if got := h.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != wantHost {
				t.Errorf("X-Forwarded-Host = %q, want [%q]", got, wantHost)
			}
			if got := h.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != tt.wantProto {
				t.Errorf("X-Forwarded-Proto = %q, want [%q]", got, tt.wantProto)
			}
		})
	}
}

func mustTrusted(t *testing.T, cidrs ...string) forwarded.TrustedProxies {
	t.Helper()
	trusted, err := forwarded.ParseTrustedProxies(cidrs)
	if err != nil {
		t.Fatal(err)
	}
	return trusted
}

func TestStripCookies(t *testing.T) {
	tests := []struct {
		name   string
		cookie string
		want   []string // nil: no Cookie header at all
	}{
		{name: "session removed, others kept verbatim", cookie: "theme=dark; mcp_session=secret; lang=en", want: []string{"theme=dark; lang=en"}},
		{name: "chunks removed by prefix", cookie: "mcp_chunk_0=a; mcp_chunk_1=b; x=1", want: []string{"x=1"}},
		{name: "only session: header dropped", cookie: "mcp_session=secret", want: nil},
		{name: "name is case-sensitive", cookie: "MCP_SESSION=not-ours", want: []string{"MCP_SESSION=not-ours"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, got := headerCapture(t)
			p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL), StripCookies: []string{"mcp_session", "mcp_chunk_*"}})
			front := frontServer(t, withIdentity(p, nil, ""))
			sendRaw(t, t.Context(), http.MethodGet, front.URL+"/", map[string]string{"Cookie": tt.cookie})
			h := receive(t, got)
			if got := h.Values("Cookie"); strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("Cookie = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSetHeadersHotReload switches presets while requests are in flight
// (the race detector checks the swap) and then checks the new names apply.
func TestSetHeadersHotReload(t *testing.T) {
	up, got := headerCapture(t)
	p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL)})
	front := frontServer(t, withIdentity(p, &identity.Identity{Subject: "bob"}, ""))

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			sendRaw(t, t.Context(), http.MethodGet, front.URL+"/", nil)
			<-got
		})
	}
	p.SetHeaders(proxy.OriginalHeaderNames())
	wg.Wait()

	if p.Headers().User != "X-User-ID" {
		t.Fatalf("Headers().User = %q after reload", p.Headers().User)
	}
	sendRaw(t, t.Context(), http.MethodGet, front.URL+"/", map[string]string{"X-Forwarded-User": "mallory"})
	h := receive(t, got)
	if h.Get("X-User-ID") != "bob" {
		t.Errorf("X-User-ID = %q, want bob", h.Get("X-User-ID"))
	}
	if vs := normalisedValues(h, "X-Forwarded-User"); len(vs) != 0 {
		t.Errorf("old-preset header still forwarded: %q", vs)
	}
}

// TestClientForwardingHeaders: every header some upstream stack reads as
// "where the request came from" or "what the URL was" is removed, in every
// spelling, unless the direct peer is a trusted ingress; from a trusted
// ingress, the ones ingresses set (X-Forwarded-For/-Host/-Proto/-Port/
// -Prefix, X-Real-IP) pass in their canonical spelling, and the rest never
// pass: they override the path (X-Original-URL), claim a client address
// the ingress did not vouch for (True-Client-IP behind an ingress that
// does not set it) or contradict X-Forwarded-Proto.
func TestClientForwardingHeaders(t *testing.T) {
	trusted := mustTrusted(t, "127.0.0.1/32").Trusts
	untrusted := mustTrusted(t, "192.0.2.0/24").Trusts
	tests := []struct {
		key   string // raw key as the client sends it
		check string // name the upstream would read it under
		// fromTrusted is the value the upstream sees when a trusted
		// ingress sent it ("" = removed); from an untrusted peer every
		// one of them is removed or replaced with this hop's value.
		fromTrusted string
	}{
		{key: "X-Real-IP", check: "X-Real-Ip", fromTrusted: "203.0.113.9"},
		{key: "x_real_ip", check: "X-Real-Ip"},
		{key: "X-Forwarded-Port", check: "X-Forwarded-Port", fromTrusted: "203.0.113.9"},
		{key: "X_FORWARDED_PORT", check: "X-Forwarded-Port"},
		{key: "X-Forwarded-Prefix", check: "X-Forwarded-Prefix", fromTrusted: "203.0.113.9"},
		{key: "x-forwarded_prefix", check: "X-Forwarded-Prefix"},
		{key: "X-Forwarded-Server", check: "X-Forwarded-Server"},
		{key: "X-Forwarded-Ssl", check: "X-Forwarded-Ssl"},
		{key: "X-Forwarded-Scheme", check: "X-Forwarded-Scheme"},
		{key: "X-Forwarded-Protocol", check: "X-Forwarded-Protocol"},
		{key: "X-Forwarded-Uri", check: "X-Forwarded-Uri"},
		{key: "X-Forwarded-Method", check: "X-Forwarded-Method"},
		{key: "X-Forwarded-Client-Cert", check: "X-Forwarded-Client-Cert"},
		{key: "X-Forwarded-Tls-Client-Cert", check: "X-Forwarded-Tls-Client-Cert"},
		{key: "X-Forwarded", check: "X-Forwarded"},
		{key: "Forwarded-For", check: "Forwarded-For"},
		{key: "X-Original-URL", check: "X-Original-Url"},
		{key: "x_original_url", check: "X-Original-Url"},
		{key: "X-Original-URI", check: "X-Original-Uri"},
		{key: "X-Rewrite-URL", check: "X-Rewrite-Url"},
		{key: "X-Original-Host", check: "X-Original-Host"},
		{key: "X-Original-Forwarded-For", check: "X-Original-Forwarded-For"},
		{key: "X-Host", check: "X-Host"},
		{key: "X-Scheme", check: "X-Scheme"},
		{key: "X-Url-Scheme", check: "X-Url-Scheme"},
		{key: "Front-End-Https", check: "Front-End-Https"},
		{key: "X-Client-IP", check: "X-Client-Ip"},
		{key: "Client-IP", check: "Client-Ip"},
		{key: "True-Client-IP", check: "True-Client-Ip"},
		{key: "CF-Connecting-IP", check: "Cf-Connecting-Ip"},
		{key: "Fastly-Client-IP", check: "Fastly-Client-Ip"},
		{key: "X-Cluster-Client-IP", check: "X-Cluster-Client-Ip"},
		{key: "X-Envoy-External-Address", check: "X-Envoy-External-Address"},
		{key: "Forwarded", check: "Forwarded"},
		{key: "x_forwarded_host", check: "X-Forwarded-Host", fromTrusted: "127.0.0.1:"}, // this hop's Host: never the spoof
		{key: "HTTP2-Settings", check: "Http2-Settings"},
		// The identity assertion is the proxy's alone, even from an ingress.
		{key: "X-MCP-Identity-Assertion", check: "X-Mcp-Identity-Assertion"},
		{key: "X-MCP_Identity-Assertion", check: "X-Mcp-Identity-Assertion"},
		{key: "x_mcp_identity_assertion", check: "X-Mcp-Identity-Assertion"},
	}
	for _, peer := range []struct {
		name  string
		trust func(*http.Request) bool
	}{{"untrusted", untrusted}, {"trusted", trusted}} {
		for _, tt := range tests {
			t.Run(peer.name+"/"+tt.key, func(t *testing.T) {
				up, got := headerCapture(t)
				p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL), TrustForwarded: peer.trust, AssertionHeader: assertionHeader})
				front := frontServer(t, withIdentity(p, &identity.Identity{Subject: "alice"}, ""))
				sendRaw(t, t.Context(), http.MethodGet, front.URL+"/mcp", map[string]string{tt.key: "203.0.113.9"})
				h := receive(t, got)
				vs := normalisedValues(h, tt.check)
				want := ""
				if peer.name == "trusted" {
					want = tt.fromTrusted
				}
				switch {
				case want == "" && len(vs) > 0 && strings.Contains(strings.Join(vs, ","), "203.0.113.9"):
					t.Errorf("%s from a peer that is %s reached the upstream as %s: %q", tt.key, peer.name, tt.check, vs)
				case want != "" && (len(vs) != 1 || !strings.HasPrefix(vs[0], want)):
					t.Errorf("%s from a trusted ingress: upstream %s = %q, want [%s...]", tt.key, tt.check, vs, want)
				}
			})
		}
	}
}

// assertionHeader is resource.AssertionHeader (not imported: the proxy does
// not depend on the resource package either).
const assertionHeader = "X-MCP-Identity-Assertion"

// TestAssertionOnlyFromTheAuthenticationLayer: the upstream gets exactly
// the assertion the authentication layer put into the context, never one
// of the client's, whatever the spelling or the peer.
func TestAssertionOnlyFromTheAuthenticationLayer(t *testing.T) {
	forged := map[string]string{
		"X-MCP-Identity-Assertion": "forged-1", "X-MCP_Identity-Assertion": "forged-2",
		"x_mcp_identity_assertion": "forged-3", "X-MCP-IDENTITY-ASSERTION": "forged-4",
	}
	tests := []struct {
		name      string
		assertion string // what the authentication layer hands over
		trust     func(*http.Request) bool
	}{
		{name: "signed assertion replaces forged ones", assertion: "signed.jws.value"},
		{name: "signed assertion, trusted ingress", assertion: "signed.jws.value", trust: mustTrusted(t, "127.0.0.1/32").Trusts},
		{name: "no assertion: forged ones removed", assertion: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, got := headerCapture(t)
			p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL), AssertionHeader: assertionHeader, TrustForwarded: tt.trust})
			h := withIdentity(p, &identity.Identity{Subject: "alice"}, "")
			if tt.assertion != "" {
				inner := h
				h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					inner.ServeHTTP(w, r.WithContext(identity.NewAssertionContext(r.Context(), tt.assertion)))
				})
			}
			front := frontServer(t, h)
			sendRaw(t, t.Context(), http.MethodGet, front.URL+"/mcp", forged)
			vs := normalisedValues(receive(t, got), assertionHeader)
			var want []string
			if tt.assertion != "" {
				want = []string{tt.assertion}
			}
			if strings.Join(vs, "|") != strings.Join(want, "|") {
				t.Fatalf("upstream %s = %q, want %q", assertionHeader, vs, want)
			}
		})
	}
}
