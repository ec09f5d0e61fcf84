package resource

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
)

// CodeHostNotAllowed is the error code of a request for a host the operator
// does not expect (421 Misdirected Request).
const CodeHostNotAllowed = "host_not_allowed"

// LoopbackHosts are always expected: the proxy is reached by these names
// only from the same pod or machine (`make demo`, port-forwards, the MCP
// server's own health checks). Allowing them does not help a DNS rebinding
// page, whose requests carry its own host name; the Origin check stops a
// rebinding browser that reaches a loopback name from another site.
func LoopbackHosts() []string { return []string{"localhost", "127.0.0.1", "[::1]"} }

// HostOptions configure a HostGuard.
type HostOptions struct {
	// ExternalURL, when set, contributes its host (any port unless the URL
	// names one).
	ExternalURL string
	// AllowedHosts are patterns: "host" (any port), "host:port", a leading
	// "*." for any subdomain ("*.ns.svc" matches "a.ns.svc" and
	// "a.b.ns.svc", not "ns.svc"), IPv4 addresses and IPv6 addresses with
	// or without brackets.
	AllowedHosts []string
	// Host returns the host[:port] the client addressed (the Host header,
	// or a trusted proxy's X-Forwarded-Host: forwarded.Resolver.Host). Nil: Host.
	Host func(r *http.Request) string
}

// HostGuard refuses requests for hosts the operator does not expect, the
// MCP transport spec's DNS rebinding defence for the proxy as the server
// clients see. Without it, a page on evil.example resolving to the proxy
// would reach the MCP server (whose own check never fires, since the proxy
// rewrites Host) and make the proxy advertise URLs and validate tokens for
// evil.example.
type HostGuard struct {
	rules []hostRule
	host  func(r *http.Request) string
}

// hostRule is one expected host pattern.
type hostRule struct {
	name     string     // lower-case host name without a trailing dot; the suffix for wildcards
	ip       netip.Addr // valid for IP patterns
	wildcard bool
	port     string // "" matches any port
}

// ErrBadHostPattern marks an allowed_hosts entry that is not a host pattern.
var ErrBadHostPattern = errors.New("not a host, host:port or *.domain pattern")

// NewHostGuard parses opts. Every pattern error is returned at once.
func NewHostGuard(opts HostOptions) (*HostGuard, error) {
	g := &HostGuard{host: opts.Host}
	if g.host == nil {
		g.host = func(r *http.Request) string { return r.Host }
	}
	var errs []error
	add := func(pattern string) {
		rule, err := parseHostPattern(pattern)
		if err != nil {
			errs = append(errs, err)
			return
		}
		g.rules = append(g.rules, rule)
	}
	for _, h := range LoopbackHosts() {
		add(h)
	}
	if opts.ExternalURL != "" {
		u, err := url.Parse(opts.ExternalURL)
		if err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("external URL %q has no host", opts.ExternalURL))
		} else {
			add(u.Host)
		}
	}
	for _, h := range opts.AllowedHosts {
		add(h)
	}
	return g, errors.Join(errs...)
}

// parseHostPattern parses one expected-host pattern (see
// HostOptions.AllowedHosts).
func parseHostPattern(pattern string) (hostRule, error) {
	p := strings.ToLower(strings.TrimSpace(pattern))
	bad := func() (hostRule, error) { return hostRule{}, fmt.Errorf("%q: %w", pattern, ErrBadHostPattern) }
	if a, err := netip.ParseAddr(p); err == nil && a.Zone() == "" {
		return hostRule{ip: a.Unmap()}, nil // a bare IP, IPv6 included
	}
	name, port, ok := splitHost(p)
	if !ok {
		return bad()
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return bad()
		}
	}
	if a, err := netip.ParseAddr(name); err == nil {
		if a.Zone() != "" {
			return bad()
		}
		return hostRule{ip: a.Unmap(), port: port}, nil
	}
	rule := hostRule{port: port}
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		rule.wildcard, name = true, rest
	}
	if !validDNSName(name) {
		return bad()
	}
	rule.name = name
	return rule, nil
}

// splitHost splits host[:port] (IPv6 in brackets) into a lower-case name
// without a trailing dot and the port ("" when absent).
func splitHost(h string) (name, port string, ok bool) {
	h = strings.ToLower(h)
	switch {
	case strings.HasPrefix(h, "["):
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", "", false
		}
		name, rest := h[1:end], h[end+1:]
		if rest != "" {
			var found bool
			if port, found = strings.CutPrefix(rest, ":"); !found || port == "" {
				return "", "", false
			}
		}
		return name, port, name != ""
	case strings.Count(h, ":") > 1:
		return "", "", false // IPv6 without brackets is not a Host header
	case strings.Contains(h, ":"):
		name, port, err := net.SplitHostPort(h)
		if err != nil || port == "" {
			return "", "", false
		}
		return strings.TrimSuffix(name, "."), port, name != ""
	}
	return strings.TrimSuffix(h, "."), "", h != ""
}

// validDNSName accepts letters, digits, hyphens and dots, in labels of 1 to
// 63 characters (underscores too, which some internal names use).
func validDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Expected reports whether host (a Host header value) is one the operator
// expects.
func (g *HostGuard) Expected(host string) bool {
	name, port, ok := splitHost(host)
	if !ok || (port != "" && !validPort(port)) {
		return false
	}
	ip, ipErr := netip.ParseAddr(name)
	for _, rule := range g.rules {
		if rule.port != "" && rule.port != port {
			continue
		}
		switch {
		case rule.ip.IsValid():
			if ipErr == nil && ip.Zone() == "" && ip.Unmap() == rule.ip {
				return true
			}
		case rule.wildcard:
			if strings.HasSuffix(name, "."+rule.name) {
				return true
			}
		case name == rule.name:
			return true
		}
	}
	return false
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// Wrap answers 421 Misdirected Request to requests for unexpected hosts,
// before anything else runs: no login state is written, no token is
// validated and nothing reaches the MCP server for them.
func (g *HostGuard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.Expected(g.host(r)) {
			apierror.Write(w, r, http.StatusMisdirectedRequest, CodeHostNotAllowed,
				"this proxy does not serve that host name (set external_url or allowed_hosts)")
			return
		}
		next.ServeHTTP(w, r)
	})
}
