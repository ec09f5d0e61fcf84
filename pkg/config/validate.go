package config

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem with one setting. The message says what is wrong
// and how to fix it, so an operator can act on the log line alone.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// MinCookieSecretLen is the shortest accepted cookie secret (256 bits).
const MinCookieSecretLen = 32

// Validate returns every problem at once (joined FieldErrors), each with its
// field path. It performs no network I/O: reachability of the provider or
// Redis is a runtime concern reported by readiness and metrics.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	how := func(path string) string {
		for _, f := range Fields() {
			if f.Path == path {
				return fmt.Sprintf("set --%s, %s or %s in the config file", f.Flag, f.Env[len(f.Env)-1], path)
			}
		}
		return ""
	}

	checkAddr := func(path, addr string) {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(path, "%q is not host:port (e.g. :15080 or 0.0.0.0:15080)", addr)
		}
	}
	checkAddr("listen", c.Listen)
	checkAddr("admin_listen", c.AdminListen)
	if sameListener(c.Listen, c.AdminListen) {
		bad("admin_listen", "must differ from listen so health and metrics are never served on the protected port")
	}
	checkURL := func(path, raw string, required bool) {
		if raw == "" {
			if required {
				bad(path, "required; %s", how(path))
			}
			return
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(path, "%q is not an absolute http(s) URL", raw)
		}
	}
	checkURL("upstream", c.Upstream, true)
	checkURL("external_url", c.ExternalURL, false)
	if u, err := url.Parse(c.ExternalURL); err == nil && c.ExternalURL != "" && (u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
		// It prefixes every URL the proxy advertises (callback, resource,
		// issuer), which a query, fragment or user info would break.
		bad("external_url", "%q must be a base URL like https://mcp.example.com, without query, fragment or user info", u.Redacted())
	}

	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	for _, p := range c.PublicPaths {
		if !strings.HasPrefix(p, "/") {
			bad("public_paths", "%q must start with /", p)
		}
		if strings.Contains(strings.TrimSuffix(p, "/*"), "*") {
			bad("public_paths", "%q: only a trailing /* wildcard is supported", p)
		}
		if strings.HasPrefix(p, "/oauth2/") {
			bad("public_paths", "%q: the proxy's own /oauth2/ endpoints cannot be made public", p)
		}
	}
	if c.ShutdownGrace < 0 {
		bad("shutdown_grace", "must not be negative")
	}
	if c.RequestBodyTimeout <= 0 {
		bad("request_body_timeout", "must be positive")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file must be given together")
	}

	switch c.AuthMode {
	case "oidc":
		checkURL("oidc.discovery_url", c.OIDC.DiscoveryURL, true)
		if c.OIDC.ClientID == "" {
			bad("oidc.client_id", "required when auth mode is oidc; %s", how("oidc.client_id"))
		}
		checkURL("oidc.redirect_url", c.OIDC.RedirectURL, false)
		checkURL("oidc.post_logout_redirect_url", c.OIDC.PostLogoutURL, false)
		if c.OIDC.GroupsClaim == "" {
			bad("oidc.groups_claim", "must not be empty")
		}
		if c.OIDC.DiscoveryRetry <= 0 {
			bad("oidc.discovery_retry", "must be positive")
		}
	case "bypass":
		if !c.AllowInsecureBypass {
			bad("auth_mode", "bypass lets anyone in without logging in; it is for local development only and also needs allow_insecure_bypass=true (%s)", how("allow_insecure_bypass"))
		}
	default:
		bad("auth_mode", "%q is not oidc or bypass", c.AuthMode)
	}

	s := c.Session
	switch s.Store {
	case "memory":
	case "redis":
		if c.Redis.URL == "" && len(c.Redis.Addrs) == 0 {
			bad("redis.url", "required when session.store is redis; %s (or redis.addrs)", how("redis.url"))
		}
		if c.Redis.URL != "" && len(c.Redis.Addrs) > 0 {
			bad("redis.addrs", "set either redis.url or redis.addrs, not both")
		}
		if c.Redis.URL != "" {
			if u, err := url.Parse(c.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
				// Never echo the URL: it may carry a password.
				bad("redis.url", "must be a redis:// or rediss:// URL")
			}
		}
		if c.Redis.MasterName != "" && c.Redis.Cluster {
			bad("redis.cluster", "Sentinel (master_name) and Cluster cannot both be set")
		}
		if c.Redis.Cluster && c.Redis.DB != 0 {
			bad("redis.db", "Redis Cluster supports only database 0")
		}
		if c.Redis.KeyPrefix == "" {
			bad("redis.key_prefix", "must not be empty; keys of different deployments sharing a Redis would collide")
		}
	default:
		bad("session.store", "%q is not memory or redis", s.Store)
	}
	if c.AuthMode == "oidc" {
		switch {
		case s.CookieSecret == "" && s.Store == "redis":
			bad("session.cookie_secret", "required with the redis store so every replica accepts every cookie; generate one with `openssl rand -base64 32` and %s", how("session.cookie_secret"))
		case s.CookieSecret != "" && len(s.CookieSecret) < MinCookieSecretLen:
			bad("session.cookie_secret", "must be at least %d bytes (it is %d); generate one with `openssl rand -base64 32`", MinCookieSecretLen, len(s.CookieSecret))
		}
	}
	if s.TTL <= 0 {
		bad("session.ttl", "must be positive")
	}
	if s.IdleTimeout < 0 {
		bad("session.idle_timeout", "must not be negative (0 disables it)")
	}
	if s.MaxPerUser < 0 {
		bad("session.max_per_user", "must not be negative (0 = unlimited)")
	}
	switch s.LimitPolicy {
	case "evict-oldest", "refuse":
	default:
		bad("session.limit_policy", "%q is not evict-oldest or refuse", s.LimitPolicy)
	}
	if s.RefreshBefore < 0 {
		bad("session.refresh_before", "must not be negative")
	}
	if s.LocalCacheTTL < 0 {
		bad("session.local_cache_ttl", "must not be negative (0 disables the cache)")
	}
	if s.InsecureCookies && strings.HasPrefix(s.CookieName, "__Host-") {
		bad("session.cookie_name", "the __Host- prefix requires Secure cookies; drop the prefix or insecure_cookies")
	}

	switch c.Headers.Preset {
	case "default", "original":
	default:
		bad("headers.preset", "%q is not default or original", c.Headers.Preset)
	}
	for _, h := range []struct{ path, v string }{
		{"headers.user", c.Headers.User}, {"headers.email", c.Headers.Email},
		{"headers.groups", c.Headers.Groups}, {"headers.name", c.Headers.Name},
		{"headers.username", c.Headers.Username},
	} {
		if h.v != "" && !validHeaderName(h.v) {
			bad(h.path, "%q is not a valid HTTP header name", h.v)
		}
	}

	for _, rc := range c.Authz.RequiredClaims {
		if k, _, ok := strings.Cut(rc, "="); !ok || strings.TrimSpace(k) == "" {
			bad("authz.required_claims", "%q is not claim=value", rc)
		}
	}
	if c.UpstreamPolicy.RetryAttempts < 1 {
		bad("upstream_policy.retry_attempts", "must be at least 1 (1 = no retry)")
	}
	if c.UpstreamPolicy.BreakerFailures < 1 {
		bad("upstream_policy.breaker_failures", "must be at least 1")
	}
	if c.UpstreamPolicy.BreakerOpenFor <= 0 {
		bad("upstream_policy.breaker_open_for", "must be positive")
	}
	if c.Tracing.SampleRatio < 0 || c.Tracing.SampleRatio > 1 {
		bad("tracing.sample_ratio", "must be between 0 and 1")
	}
	checkURL("tracing.endpoint", c.Tracing.Endpoint, false)
	if c.RateLimit.LoginsPerMinute < 1 {
		bad("rate_limit.logins_per_minute", "must be at least 1")
	}
	if c.RateLimit.LoginBurst < 1 {
		bad("rate_limit.login_burst", "must be at least 1")
	}
	if c.RateLimit.MaxAddresses < 100 {
		bad("rate_limit.max_addresses", "must be at least 100")
	}

	if !strings.HasPrefix(c.MCPPath, "/") || strings.HasPrefix(c.MCPPath, "/oauth2") || strings.HasPrefix(c.MCPPath, "/.well-known") {
		bad("mcp_path", "%q must start with / and not be under /oauth2 or /.well-known", c.MCPPath)
	}
	for _, cidr := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			if net.ParseIP(cidr) == nil {
				bad("trusted_proxies", "%q is not a CIDR (e.g. 10.0.0.0/8) or IP address", cidr)
			}
		}
	}
	for _, o := range c.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			bad("allowed_origins", "%q is not an origin like https://app.example.com", o)
		}
	}
	for _, h := range c.AllowedHosts {
		if !validHostPattern(h) {
			bad("allowed_hosts", "%q is not a host name pattern: use host, host:port, *.example.com or an IP (no scheme or path)", h)
		}
	}
	o := c.OAuth
	switch o.Mode {
	case "facade", "external":
	default:
		bad("oauth.mode", "%q is not facade or external", o.Mode)
	}
	if o.AccessTokenTTL <= 0 || o.AccessTokenTTL > 24*time.Hour {
		bad("oauth.access_token_ttl", "must be between 1s and 24h (short-lived tokens limit the damage of a leak)")
	}
	if o.RefreshTokenTTL <= 0 {
		bad("oauth.refresh_token_ttl", "must be positive")
	}
	if o.RefreshTokenMaxLifetime <= 0 {
		bad("oauth.refresh_token_max_lifetime", "must be positive")
	}
	if o.UpstreamRecheckInterval < time.Minute {
		bad("oauth.upstream_recheck_interval", "must be at least 1m (every refresh would call the OIDC provider)")
	}
	if o.RegistrationsPerMinute < 1 {
		bad("oauth.registrations_per_minute", "must be at least 1")
	}
	if o.SigningKeys != "" {
		if block, _ := pem.Decode([]byte(o.SigningKeys)); block == nil {
			// Never echo the value: it is a private key.
			bad("oauth.signing_keys", "no PEM block found; give PEM private keys (-----BEGIN EC PRIVATE KEY----- …), e.g. from `openssl ecparam -name prime256v1 -genkey -noout`")
		}
	}
	checkURL("oauth.external_issuer", o.ExternalIssuer, false)
	checkURL("oauth.external_jwks_url", o.ExternalJWKSURL, false)
	checkURL("oauth.introspection_url", o.IntrospectionURL, false)
	return errors.Join(errs...)
}

// sameListener reports whether two listen addresses would claim the same
// socket: equal strings, or the same port where either host is the wildcard
// (":15080" and "0.0.0.0:15080" collide at bind time).
func sameListener(a, b string) bool {
	if a == b {
		return true
	}
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// RestartRequired lists the settings that differ between c and next but are
// not reloadable. A reload applies the reloadable part and logs these.
func (c *Config) RestartRequired(next *Config) []string {
	var out []string
	for _, f := range Fields() {
		if f.Reload {
			continue
		}
		if !reflect.DeepEqual(f.value(c).Interface(), f.value(next).Interface()) {
			out = append(out, f.Path)
		}
	}
	return out
}

// validHostPattern checks the syntax of an allowed_hosts entry: a host name
// (a leading "*." allowed), an IPv4 address or an IPv6 address (bracketed
// when a port follows), with an optional port. pkg/resource parses it.
func validHostPattern(p string) bool {
	p = strings.TrimSpace(p)
	if ip := net.ParseIP(p); ip != nil {
		return true
	}
	host, port := p, ""
	if h, pt, err := net.SplitHostPort(p); err == nil {
		host, port = h, pt
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return false
		}
	} else if strings.HasPrefix(p, "[") {
		host = strings.TrimSuffix(strings.TrimPrefix(p, "["), "]")
	}
	if net.ParseIP(host) != nil {
		return !strings.Contains(host, "%")
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "*."), ".")
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || strings.TrimFunc(label, func(r rune) bool {
			return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		}) != "" {
			return false
		}
	}
	return true
}
