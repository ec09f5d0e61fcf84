// Package forwarded decides what a request says about where it came from:
// which peers are trusted reverse proxies, and so which X-Forwarded-* headers
// are believed for the host and scheme the client used (the proxy's external
// base URL) and for the client's address. It is one package so that the
// advertised URLs, the allowed-hosts check, the per-client limits and the
// headers passed upstream can never disagree about a peer.
package forwarded

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

// Options say how to find the external base URL and whom to believe.
type Options struct {
	// ExternalURL, when set, is always used (for example
	// "https://mcp.example.com").
	ExternalURL string
	// TrustedProxies are CIDRs (or bare IPs) of reverse proxies whose
	// X-Forwarded-Proto and X-Forwarded-Host are believed. From any other
	// peer those headers are ignored: a client must not choose the URL the
	// proxy tells other clients to trust.
	TrustedProxies []string
}

// Resolver makes the forwarding decisions for one configuration. The
// configuration is parsed once, by NewResolver; the decisions about one
// request are made once, by Middleware, and read back through BaseURL, Host
// and Trusts, which every consumer takes as a plain func(*http.Request).
// Safe for concurrent use.
type Resolver struct {
	external string // normalised ExternalURL; "" when not configured
	trusted  TrustedProxies
	// last is the base URL built for the last scheme and host seen, so
	// that without an external URL the requests to one host do not build
	// the same string again and again.
	last atomic.Pointer[builtBase]
}

// builtBase is a base URL and the scheme and host it was built from.
type builtBase struct {
	scheme, host, url string
}

// NewResolver checks opts and returns their Resolver.
func NewResolver(opts Options) (*Resolver, error) {
	res := &Resolver{}
	if opts.ExternalURL != "" {
		u, err := url.Parse(opts.ExternalURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("forwarded: external URL %q must be an absolute http(s) URL without query, fragment or user info", opts.ExternalURL)
		}
		res.external = strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimSuffix(u.EscapedPath(), "/")
	}
	trusted, err := ParseTrustedProxies(opts.TrustedProxies)
	if err != nil {
		return nil, err
	}
	res.trusted = trusted
	return res, nil
}

// TrustedProxies are the parsed trusted proxies (for ClientAddr).
func (res *Resolver) TrustedProxies() TrustedProxies { return res.trusted }

// Decision is what the proxy believes about one request.
type Decision struct {
	// Trusted: the direct peer is a trusted proxy, so its X-Forwarded-*
	// headers are believed (and may be passed upstream).
	Trusted bool
	// Host is the host[:port] the client addressed, lower-cased: the first
	// X-Forwarded-Host from a trusted proxy, otherwise the Host header.
	Host string
	// BaseURL is the absolute base URL (scheme://host[/prefix], no trailing
	// slash) under which the client reaches the proxy. Precedence: the
	// configured external URL; X-Forwarded-Proto/-Host from a trusted
	// proxy; the request's own scheme and Host. Absolute URLs in
	// challenges, metadata and redirects, and the expected token audience,
	// are built from it.
	BaseURL string
}

// Decide makes the decisions about r. Middleware calls it once per request;
// everything else reads the result through For.
func (res *Resolver) Decide(r *http.Request) Decision {
	d := Decision{Trusted: res.trusted.Trusts(r)}
	d.Host = clientHost(r, d.Trusted)
	if res.external != "" {
		d.BaseURL = res.external
		return d
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if d.Trusted {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
	}
	d.BaseURL = res.baseURL(scheme, d.Host)
	return d
}

// baseURL is scheme://host, reusing the last one built when it is the same.
func (res *Resolver) baseURL(scheme, host string) string {
	if b := res.last.Load(); b != nil && b.scheme == scheme && b.host == host {
		return b.url
	}
	u := scheme + "://" + host
	res.last.Store(&builtBase{scheme: scheme, host: host, url: u})
	return u
}

type decisionKey struct{}

// Middleware decides once about each request and stores the Decision in
// its context for For. It goes in front of everything that reads it.
func (res *Resolver) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := &decisionContext{Context: r.Context(), d: res.Decide(r)}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// decisionContext carries a request's Decision. It is context.WithValue
// with the value inside, so storing the Decision costs one allocation
// rather than two on every request.
type decisionContext struct {
	context.Context
	d Decision
}

// Value answers For's key with the Decision and every other key from the
// parent.
func (c *decisionContext) Value(key any) any {
	if _, ok := key.(decisionKey); ok {
		return &c.d
	}
	return c.Context.Value(key)
}

// For returns the Decision Middleware stored for r, or decides now for a
// request that did not pass through it (a handler used on its own), so the
// answer is the same either way.
func (res *Resolver) For(r *http.Request) Decision {
	if d, ok := r.Context().Value(decisionKey{}).(*Decision); ok {
		return *d
	}
	return res.Decide(r)
}

// BaseURL is For(r).BaseURL.
func (res *Resolver) BaseURL(r *http.Request) string { return res.For(r).BaseURL }

// Host is For(r).Host.
func (res *Resolver) Host(r *http.Request) string { return res.For(r).Host }

// Trusts is For(r).Trusted.
func (res *Resolver) Trusts(r *http.Request) bool { return res.For(r).Trusted }

// clientHost is the host[:port] the client addressed, lower-cased: the
// first X-Forwarded-Host when r's peer is a trusted proxy (the host the
// client used in front of it), otherwise the Host header. It is the one
// place that decides this, for the advertised URLs and for the check that
// the host is one the operator expects, so the two cannot disagree.
func clientHost(r *http.Request, trusted bool) string {
	if trusted {
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); validHost(h) {
			return h
		}
	}
	return strings.ToLower(r.Host)
}

// TrustedProxies are the reverse proxies (by network) whose forwarding
// headers are believed. It is the one place that decides this, for the URLs
// the proxy advertises and for the X-Forwarded-* headers it passes upstream,
// so the two can never disagree about a peer.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies parses CIDRs or bare IP addresses. An empty list
// trusts nobody.
func ParseTrustedProxies(list []string) (TrustedProxies, error) {
	var trusted TrustedProxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("forwarded: trusted proxy %q is not a CIDR or IP: %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		trusted = append(trusted, p.Masked())
	}
	return trusted, nil
}

// Trusts reports whether r's direct peer (RemoteAddr, never a header) is a
// trusted proxy.
func (t TrustedProxies) Trusts(r *http.Request) bool {
	return t.contains(remoteAddr(r))
}

func (t TrustedProxies) contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// maxForwardedHops bounds the X-Forwarded-For entries ClientAddr walks.
const maxForwardedHops = 32

// ClientAddr is the address of the client behind r, for per-client limits:
// the direct peer, or, while that hop is a trusted proxy, the address it
// says it received the request from (X-Forwarded-For, read right to left).
// It stops at the first address that is not a trusted proxy, so entries a
// client wrote itself (on the left) are never believed, and a peer that is
// not trusted cannot choose its address at all. An entry that does not
// parse ends the walk at the trusted hop that passed it on.
func (t TrustedProxies) ClientAddr(r *http.Request) netip.Addr {
	cur := remoteAddr(r)
	if !t.contains(cur) {
		return cur
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i, n := len(hops)-1, 0; i >= 0 && n < maxForwardedHops && t.contains(cur); i, n = i-1, n+1 {
		a, ok := parseForwardedAddr(strings.TrimSpace(hops[i]))
		if !ok {
			break
		}
		cur = a
	}
	return cur
}

// parseForwardedAddr accepts an X-Forwarded-For entry: an address, or an
// address with a port (some load balancers add one).
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// remoteAddr is r's direct peer; the zero Addr when RemoteAddr is not an
// IP address (a Unix socket).
func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// firstValue is the first element of a comma-separated header (the value
// the outermost trusted proxy set), lower-cased and trimmed.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.ToLower(strings.TrimSpace(first))
}

// validHost accepts a lower-case host[:port]: a DNS name or IPv4 address,
// or an IPv6 address in brackets, with an optional decimal port. A
// forwarded value can then inject no path, user info or header syntax, and
// the base URL built from it always parses back to the same host.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	name, port := h, ""
	if strings.Contains(h, ":") {
		var err error
		name, port, err = net.SplitHostPort(h)
		switch {
		case err == nil:
			n, aerr := strconv.Atoi(port)
			if aerr != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
				return false
			}
		case strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]"):
			name = h[1 : len(h)-1] // "[::1]" without a port
		default:
			return false
		}
	}
	if strings.HasPrefix(h, "[") {
		a, err := netip.ParseAddr(name)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
