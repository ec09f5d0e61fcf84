package proxy

import (
	"context"
	"net/http"
	"strings"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/headername"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

// HeaderNames are the request headers through which the upstream MCP server
// learns who the caller is. An empty name means "do not send this field".
// Every name listed here (and in both presets) is removed from the incoming
// request in any spelling before the proxy sets its own values, so a client
// can never claim to be someone else.
type HeaderNames struct {
	// User carries identity.Identity.Subject (the stable user ID).
	User string `json:"user,omitempty"`
	// Email carries identity.Identity.Email.
	Email string `json:"email,omitempty"`
	// Groups carries identity.Identity.Groups joined by ",".
	Groups string `json:"groups,omitempty"`
	// Name carries identity.Identity.Name (a display name).
	Name string `json:"name,omitempty"`
	// Username carries identity.Identity.Username (preferred_username).
	Username string `json:"username,omitempty"`
	// Extra lists further headers the upstream trusts for identity (for
	// example a tenant header set by another layer). They are never set by the
	// proxy, only stripped from incoming requests in any spelling.
	Extra []string `json:"extra,omitempty"`
}

// DefaultHeaderNames is the oauth2-proxy style set most MCP servers and
// frameworks already understand.
func DefaultHeaderNames() HeaderNames {
	return HeaderNames{
		User:     "X-Forwarded-User",
		Email:    "X-Forwarded-Email",
		Groups:   "X-Forwarded-Groups",
		Username: "X-Forwarded-Preferred-Username",
	}
}

// OriginalHeaderNames is the header set of the original mcp-oidc-proxy, so
// upstreams written against it keep working after moving over.
func OriginalHeaderNames() HeaderNames {
	return HeaderNames{
		User:   "X-User-ID",
		Email:  "X-User-Email",
		Name:   "X-User-Name",
		Groups: "X-User-Groups",
	}
}

// all returns every name in n, including Extra, skipping empty ones.
func (n HeaderNames) all() []string {
	out := make([]string, 0, 5+len(n.Extra))
	for _, s := range []string{n.User, n.Email, n.Groups, n.Name, n.Username} {
		if s != "" {
			out = append(out, s)
		}
	}
	for _, s := range n.Extra {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// trustedForwarding are the forwarding headers a trusted ingress sets and
// the upstream may rely on: from such a peer they pass in their canonical
// spelling (X-Forwarded-For extended by this hop). From any other peer they
// are removed, and X-Forwarded-For/-Host/-Proto replaced with what this hop
// saw. ReverseProxy removes only the canonical spelling of the first three;
// the policy removes every spelling of all of them (x_forwarded_for, ...),
// because CGI-style upstreams map "_" and "-" to the same variable.
// X-Forwarded-For must stay first: it is extended, the others are copied.
var trustedForwarding = [...]string{
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-Ip",
}

// untrustedForwarding are request headers that some reverse proxy,
// framework or CDN integration reads as the client's address, the public
// scheme, host or port, the original URL, or the client's TLS certificate
// (Spring, Symfony, Rails/Rack, Werkzeug, gunicorn, ASP.NET, Tornado, IIS,
// ingress-nginx, Traefik, Envoy, Cloudflare, Akamai, Fastly ...). The proxy
// removes them in every spelling from every request, even from a trusted
// ingress: the ones the URL depends on would contradict X-Forwarded-*, the
// URL overrides (X-Original-URL, X-Rewrite-URL) would route the upstream
// to a path other than the one authorized here, and an ingress that does
// not set the others itself passes its client's values through unchecked.
var untrustedForwarding = [...]string{
	"Forwarded", "Forwarded-For", "X-Forwarded", "X-Forwarded-By",
	"X-Forwarded-Server", "X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Forwarded-Protocol",
	"X-Forwarded-Https", "X-Forwarded-Uri", "X-Forwarded-Path", "X-Forwarded-Method",
	"X-Forwarded-Client-Cert", "X-Forwarded-Tls-Client-Cert", "X-Forwarded-Tls-Client-Cert-Info",
	"X-Original-Url", "X-Original-Uri", "X-Rewrite-Url", "X-Original-Host",
	"X-Original-For", "X-Original-Proto", "X-Original-Prefix", "X-Original-Forwarded-For",
	"X-Host", "X-Scheme", "X-Url-Scheme", "Front-End-Https", "X-Arr-Ssl", "X-Arr-Clientcert",
	"X-Client-Ip", "Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "Cf-Connecting-Ipv6",
	"Fastly-Client-Ip", "Fly-Client-Ip", "X-Cluster-Client-Ip", "X-Appengine-Remote-Addr",
	"X-Azure-Clientip", "X-Azure-Socketip", "X-Envoy-External-Address", "X-Envoy-Internal",
	"X-Client-Cert", "X-Ssl-Client-Cert", "Ssl-Client-Cert",
	// Only meaningful next to "Upgrade: h2c", which is never forwarded.
	"Http2-Settings",
}

// headerPolicy is the immutable, precomputed form of the header settings that
// the hot path reads through an atomic pointer.
type headerPolicy struct {
	names HeaderNames
	// canonical is names in canonical form, so setting them needs no
	// per-request canonicalisation.
	canonical HeaderNames
	// assertion is the canonical name of the identity assertion header, ""
	// when none is configured.
	assertion string
	// strip holds normalised names (lower case, "_" -> "-") removed from every
	// forwarded request.
	strip map[string]struct{}
}

// newHeaderPolicy builds the policy for names, always including both presets
// so switching presets can never re-open a spoofing hole, plus stripHeaders,
// every forwarding header and the identity assertion header.
func newHeaderPolicy(names HeaderNames, stripHeaders []string, assertion string) *headerPolicy {
	p := &headerPolicy{
		names:     names,
		assertion: http.CanonicalHeaderKey(assertion),
		canonical: HeaderNames{
			User:     http.CanonicalHeaderKey(names.User),
			Email:    http.CanonicalHeaderKey(names.Email),
			Groups:   http.CanonicalHeaderKey(names.Groups),
			Name:     http.CanonicalHeaderKey(names.Name),
			Username: http.CanonicalHeaderKey(names.Username),
		},
		strip: make(map[string]struct{}),
	}
	add := func(list []string) {
		for _, h := range list {
			p.strip[headername.Normalize(h)] = struct{}{}
		}
	}
	add(DefaultHeaderNames().all())
	add(OriginalHeaderNames().all())
	add(names.all())
	add(stripHeaders)
	add(trustedForwarding[:])
	add(untrustedForwarding[:])
	if assertion != "" {
		add([]string{assertion})
	}
	return p
}

// maxNormalisedKey bounds the stack buffer used on the hot path; longer keys
// take the allocating path.
const maxNormalisedKey = 64

// matches reports whether the header key k is one the policy strips. It does
// not allocate for keys up to maxNormalisedKey bytes.
func (p *headerPolicy) matches(k string) bool {
	if len(k) > maxNormalisedKey {
		_, ok := p.strip[headername.Normalize(k)]
		return ok
	}
	var buf [maxNormalisedKey]byte
	_, ok := p.strip[string(headername.AppendNormalized(buf[:0], k))]
	return ok
}

// stripFrom removes every header of h that the policy manages, in any
// spelling, including the forwarding headers the proxy sets afterwards.
func (p *headerPolicy) stripFrom(h http.Header) {
	for k := range h {
		if p.matches(k) {
			delete(h, k)
		}
	}
}

// setIdentity writes id into h under the configured names. A nil identity
// sets nothing: the upstream then sees an anonymous request. The values share
// one backing array: this runs on every request.
func (p *headerPolicy) setIdentity(h http.Header, id *identity.Identity) {
	if id == nil {
		return
	}
	var groups string
	if len(id.Groups) > 0 {
		groups = strings.Join(id.Groups, ",")
	}
	fields := [...]struct{ name, value string }{
		{p.canonical.User, id.Subject},
		{p.canonical.Email, id.Email},
		{p.canonical.Name, id.Name},
		{p.canonical.Username, id.Username},
		{p.canonical.Groups, groups},
	}
	values := make([]string, 0, len(fields))
	for _, f := range fields {
		if f.name == "" || f.value == "" {
			continue
		}
		values = append(values, headerSafe(f.value))
		n := len(values)
		h[f.name] = values[n-1 : n : n]
	}
}

// setAssertion writes the signed identity assertion the authentication layer
// put into ctx (identity.NewAssertionContext), if any, as the only value of
// the assertion header.
func (p *headerPolicy) setAssertion(h http.Header, ctx context.Context) {
	if p.assertion == "" {
		return
	}
	if jws := identity.AssertionFromContext(ctx); jws != "" {
		h[p.assertion] = []string{jws}
	}
}

// headerSafe drops control characters an identity provider might release in
// a claim (a display name with a newline, say): net/http refuses to send
// such a header and the request would fail with a 502.
func headerSafe(v string) string {
	clean := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return v
	}
	return strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

// cookieFilter removes named cookies from Cookie headers.
type cookieFilter struct {
	exact    map[string]struct{}
	prefixes []string
}

// newCookieFilter accepts exact cookie names and names ending in "*", which
// match by prefix (for session cookies split into numbered chunks).
func newCookieFilter(names []string) *cookieFilter {
	f := &cookieFilter{exact: make(map[string]struct{})}
	for _, n := range names {
		switch {
		case n == "":
		case strings.HasSuffix(n, "*"):
			f.prefixes = append(f.prefixes, strings.TrimSuffix(n, "*"))
		default:
			f.exact[n] = struct{}{}
		}
	}
	return f
}

func (f *cookieFilter) empty() bool { return len(f.exact) == 0 && len(f.prefixes) == 0 }

func (f *cookieFilter) drop(name string) bool {
	if _, ok := f.exact[name]; ok {
		return true
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// anyDropped reports whether any cookie in values is filtered, so the
// common case (no session cookie, e.g. bearer clients) costs no allocation.
func (f *cookieFilter) anyDropped(values []string) bool {
	for _, line := range values {
		for part := range strings.SplitSeq(line, ";") {
			name, _, _ := strings.Cut(part, "=")
			if f.drop(strings.TrimSpace(name)) {
				return true
			}
		}
	}
	return false
}

// apply rewrites the Cookie headers of h without the filtered cookies. It
// works on the raw text rather than parsing and re-serialising so that the
// cookies the upstream does get are byte-for-byte what the client sent.
func (f *cookieFilter) apply(h http.Header) {
	if f.empty() {
		return
	}
	values, ok := h["Cookie"]
	if !ok || !f.anyDropped(values) {
		return
	}
	var kept []string
	for _, line := range values {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			name, _, _ := strings.Cut(part, "=")
			if f.drop(strings.TrimSpace(name)) {
				continue
			}
			kept = append(kept, part)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(kept, "; ")}
}
