package config

import (
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/cookiename"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/memlimit"
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
// Redis is a runtime concern reported by readiness and metrics. Each
// section has its own validator below, which gets the path of its section.
func (c *Config) Validate() error {
	var errs errorList
	errs = append(errs, validateListeners(c, root)...)
	errs = append(errs, validateRouting(c, root)...)
	errs = append(errs, validateLogLevel(c.LogLevel, root.Child("log_level"))...)
	errs = append(errs, validateMemoryLimit(c.MemoryLimit, root.Child("memory_limit"))...)
	errs = append(errs, validateAuthMode(c, root)...)
	errs = append(errs, validateStore(c, root)...)
	errs = append(errs, validateSession(&c.Session, c.AuthMode, root.Child("session"))...)
	errs = append(errs, validateHeaders(&c.Headers, root.Child("headers"))...)
	errs = append(errs, validateAuthz(&c.Authz, root.Child("authz"))...)
	errs = append(errs, validateUpstreamPolicy(&c.UpstreamPolicy, root.Child("upstream_policy"))...)
	errs = append(errs, validateTracing(&c.Tracing, root.Child("tracing"))...)
	errs = append(errs, validateRateLimit(&c.RateLimit, root.Child("rate_limit"))...)
	errs = append(errs, validateExposure(c, root)...)
	errs = append(errs, validateOAuth(&c.OAuth, root.Child("oauth"))...)
	errs = append(errs, validatePolicy(&c.Policy, root.Child("policy"))...)
	errs = append(errs, validateAudit(&c.Audit, root.Child("audit"))...)
	errs = append(errs, validateTokenExchange(&c.TokenExchange, root.Child("token_exchange"))...)
	errs = append(errs, validateTokenExchangeFit(c, root.Child("token_exchange"))...)
	errs = append(errs, validateMCPSession(&c.MCPSession, root.Child("mcp_session"))...)
	return errors.Join(errs...)
}

// validateListeners checks the two listeners, the serving one's TLS files
// and how long requests and shutdown may take.
func validateListeners(c *Config, fld fieldPath) errorList {
	var errs errorList
	errs.checkHostPort(fld.Child("listen"), c.Listen)
	errs.checkHostPort(fld.Child("admin_listen"), c.AdminListen)
	if sameListener(c.Listen, c.AdminListen) {
		errs.add(fld.Child("admin_listen"), "must differ from listen so health and metrics are never served on the protected port")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs.add(fld.Child("tls"), "cert_file and key_file must be given together")
	}
	if c.ShutdownGrace < 0 {
		errs.add(fld.Child("shutdown_grace"), "must not be negative")
	}
	if c.RequestBodyTimeout <= 0 {
		errs.add(fld.Child("request_body_timeout"), "must be positive")
	}
	return errs
}

// validateMemoryLimit checks the container memory limit parses (pkg/memlimit).
func validateMemoryLimit(limit string, fld fieldPath) errorList {
	var errs errorList
	if _, err := memlimit.Parse(limit); err != nil {
		errs.add(fld, "%v", err)
	}
	return errs
}

// validateRouting checks where requests go (upstream), the base of every
// advertised URL (external_url) and the paths with their own treatment
// (mcp_path, public_paths).
func validateRouting(c *Config, fld fieldPath) errorList {
	var errs errorList
	errs.checkURL(fld.Child("upstream"), c.Upstream, true)
	errs.checkURL(fld.Child("external_url"), c.ExternalURL, false)
	if u, err := url.Parse(c.ExternalURL); err == nil && c.ExternalURL != "" && (u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
		// It prefixes every URL the proxy advertises (callback, resource,
		// issuer), which a query, fragment or user info would break.
		errs.add(fld.Child("external_url"), "%q must be a base URL like https://mcp.example.com, without query, fragment or user info", u.Redacted())
	}
	if !strings.HasPrefix(c.MCPPath, "/") || strings.HasPrefix(c.MCPPath, "/oauth2") || strings.HasPrefix(c.MCPPath, "/.well-known") {
		errs.add(fld.Child("mcp_path"), "%q must start with / and not be under /oauth2 or /.well-known", c.MCPPath)
	}
	for _, p := range c.PublicPaths {
		errs = append(errs, validatePublicPath(p, fld.Child("public_paths"))...)
	}
	return errs
}

// validatePublicPath checks one public_paths entry.
func validatePublicPath(p string, fld fieldPath) errorList {
	var errs errorList
	if !strings.HasPrefix(p, "/") {
		errs.add(fld, "%q must start with /", p)
	}
	if strings.Contains(strings.TrimSuffix(p, "/*"), "*") {
		errs.add(fld, "%q: only a trailing /* wildcard is supported", p)
	}
	if strings.HasPrefix(p, "/oauth2/") {
		errs.add(fld, "%q: the proxy's own /oauth2/ endpoints cannot be made public", p)
	}
	return errs
}

// validateLogLevel checks log_level.
func validateLogLevel(level string, fld fieldPath) errorList {
	var errs errorList
	switch level {
	case "debug", "info", "warn", "error":
	default:
		errs.add(fld, "%q is not one of debug, info, warn, error", level)
	}
	return errs
}

// validateAuthMode checks auth_mode and what it needs: the oidc section, or
// the explicit acknowledgement that bypass lets anyone in.
func validateAuthMode(c *Config, fld fieldPath) errorList {
	var errs errorList
	switch c.AuthMode {
	case "oidc":
		errs = append(errs, validateOIDC(&c.OIDC, fld.Child("oidc"))...)
	case "bypass":
		if !c.AllowInsecureBypass {
			errs.add(fld.Child("auth_mode"), "bypass lets anyone in without logging in; it is for local development only and also needs allow_insecure_bypass=true (%s)", howToSet(fld.Child("allow_insecure_bypass")))
		}
	default:
		errs.add(fld.Child("auth_mode"), "%q is not oidc or bypass", c.AuthMode)
	}
	return errs
}

// validateOIDC checks the oidc section (auth_mode oidc only).
func validateOIDC(o *OIDCConfig, fld fieldPath) errorList {
	var errs errorList
	errs.checkURL(fld.Child("discovery_url"), o.DiscoveryURL, true)
	if o.ClientID == "" {
		errs.add(fld.Child("client_id"), "required when auth mode is oidc; %s", howToSet(fld.Child("client_id")))
	}
	errs.checkURL(fld.Child("redirect_url"), o.RedirectURL, false)
	errs.checkURL(fld.Child("post_logout_redirect_url"), o.PostLogoutURL, false)
	if o.GroupsClaim == "" {
		errs.add(fld.Child("groups_claim"), "must not be empty")
	}
	if o.DiscoveryRetry <= 0 {
		errs.add(fld.Child("discovery_retry"), "must be positive")
	}
	return errs
}

// validateStore checks session.store and, for Redis, the redis section.
func validateStore(c *Config, fld fieldPath) errorList {
	var errs errorList
	switch c.Session.Store {
	case "memory":
	case "redis":
		errs = append(errs, validateRedis(&c.Redis, fld.Child("redis"))...)
	default:
		errs.add(fld.Child("session").Child("store"), "%q is not memory or redis", c.Session.Store)
	}
	return errs
}

// validateRedis checks the redis section (session.store redis only).
func validateRedis(r *RedisConfig, fld fieldPath) errorList {
	var errs errorList
	if r.URL == "" && len(r.Addrs) == 0 {
		errs.add(fld.Child("url"), "required when session.store is redis; %s (or %s)", howToSet(fld.Child("url")), fld.Child("addrs"))
	}
	if r.URL != "" && len(r.Addrs) > 0 {
		errs.add(fld.Child("addrs"), "set either %s or %s, not both", fld.Child("url"), fld.Child("addrs"))
	}
	if r.URL != "" {
		if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			// Never echo the URL: it may carry a password.
			errs.add(fld.Child("url"), "must be a redis:// or rediss:// URL")
		}
	}
	if r.MasterName != "" && r.Cluster {
		errs.add(fld.Child("cluster"), "Sentinel (master_name) and Cluster cannot both be set")
	}
	if r.Cluster && r.DB != 0 {
		errs.add(fld.Child("db"), "Redis Cluster supports only database 0")
	}
	if r.KeyPrefix == "" {
		errs.add(fld.Child("key_prefix"), "must not be empty; keys of different deployments sharing a Redis would collide")
	}
	return errs
}

// validateSession checks the session section but its store (see
// validateStore): the cookie's secret and name, lifetimes and the per-user
// limit.
func validateSession(s *SessionConfig, authMode string, fld fieldPath) errorList {
	var errs errorList
	if authMode == "oidc" {
		switch {
		case s.CookieSecret == "" && s.Store == "redis":
			errs.add(fld.Child("cookie_secret"), "required with the redis store so every replica accepts every cookie; generate one with `openssl rand -base64 32` and %s", howToSet(fld.Child("cookie_secret")))
		case s.CookieSecret != "" && len(s.CookieSecret) < MinCookieSecretLen:
			errs.add(fld.Child("cookie_secret"), "must be at least %d bytes (it is %d); generate one with `openssl rand -base64 32`", MinCookieSecretLen, len(s.CookieSecret))
		}
	}
	if s.TTL <= 0 {
		errs.add(fld.Child("ttl"), "must be positive")
	}
	if s.IdleTimeout < 0 {
		errs.add(fld.Child("idle_timeout"), "must not be negative (0 disables it)")
	}
	if s.MaxPerUser < 0 {
		errs.add(fld.Child("max_per_user"), "must not be negative (0 = unlimited)")
	}
	switch s.LimitPolicy {
	case "evict-oldest", "refuse":
	default:
		errs.add(fld.Child("limit_policy"), "%q is not evict-oldest or refuse", s.LimitPolicy)
	}
	if s.RefreshBefore < 0 {
		errs.add(fld.Child("refresh_before"), "must not be negative")
	}
	if s.LocalCacheTTL < 0 {
		errs.add(fld.Child("local_cache_ttl"), "must not be negative (0 disables the cache)")
	}
	if s.CookieName != "" {
		if err := cookiename.Check(s.CookieName, s.InsecureCookies); err != nil {
			errs.add(fld.Child("cookie_name"), "%v", err)
		}
	}
	return errs
}

// validateHeaders checks the identity header names.
func validateHeaders(h *HeadersConfig, fld fieldPath) errorList {
	var errs errorList
	switch h.Preset {
	case "default", "original":
	default:
		errs.add(fld.Child("preset"), "%q is not default or original", h.Preset)
	}
	for _, named := range []struct{ name, v string }{
		{"user", h.User}, {"email", h.Email}, {"groups", h.Groups}, {"name", h.Name}, {"username", h.Username},
	} {
		if named.v != "" && !validHeaderName(named.v) {
			errs.add(fld.Child(named.name), "%q is not a valid HTTP header name", named.v)
		}
	}
	return errs
}

// validateAuthz checks the syntax of the authorization rules.
func validateAuthz(a *AuthzConfig, fld fieldPath) errorList {
	var errs errorList
	for _, rc := range a.RequiredClaims {
		if k, _, ok := strings.Cut(rc, "="); !ok || strings.TrimSpace(k) == "" {
			errs.add(fld.Child("required_claims"), "%q is not claim=value", rc)
		}
	}
	return errs
}

// validateUpstreamPolicy checks retries and the circuit breaker.
func validateUpstreamPolicy(u *UpstreamConfig, fld fieldPath) errorList {
	var errs errorList
	if u.RetryAttempts < 1 {
		errs.add(fld.Child("retry_attempts"), "must be at least 1 (1 = no retry)")
	}
	if u.BreakerFailures < 1 {
		errs.add(fld.Child("breaker_failures"), "must be at least 1")
	}
	if u.BreakerOpenFor <= 0 {
		errs.add(fld.Child("breaker_open_for"), "must be positive")
	}
	return errs
}

// validateTracing checks the trace export settings.
func validateTracing(t *TracingConfig, fld fieldPath) errorList {
	var errs errorList
	if t.SampleRatio < 0 || t.SampleRatio > 1 {
		errs.add(fld.Child("sample_ratio"), "must be between 0 and 1")
	}
	errs.checkURL(fld.Child("endpoint"), t.Endpoint, false)
	return errs
}

// validateRateLimit checks the per-address login limits.
func validateRateLimit(r *RateLimitConfig, fld fieldPath) errorList {
	var errs errorList
	if r.LoginsPerMinute < 1 {
		errs.add(fld.Child("logins_per_minute"), "must be at least 1")
	}
	if r.LoginBurst < 1 {
		errs.add(fld.Child("login_burst"), "must be at least 1")
	}
	if r.MaxAddresses < 100 {
		errs.add(fld.Child("max_addresses"), "must be at least 100")
	}
	return errs
}

// validateExposure checks whom the proxy believes and accepts: the
// proxies it trusts, and the browser origins and hosts it serves.
func validateExposure(c *Config, fld fieldPath) errorList {
	var errs errorList
	for _, cidr := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(cidr); err != nil && net.ParseIP(cidr) == nil {
			errs.add(fld.Child("trusted_proxies"), "%q is not a CIDR (e.g. 10.0.0.0/8) or IP address", cidr)
		}
	}
	for _, o := range c.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs.add(fld.Child("allowed_origins"), "%q is not an origin like https://app.example.com", o)
		}
	}
	for _, h := range c.AllowedHosts {
		if !validHostPattern(h) {
			errs.add(fld.Child("allowed_hosts"), "%q is not a host name pattern: use host, host:port, *.example.com or an IP (no scheme or path)", h)
		}
	}
	return errs
}

// validateOAuth checks the oauth section: the mode, token lifetimes,
// signing keys and the external-mode endpoints.
func validateOAuth(o *OAuthConfig, fld fieldPath) errorList {
	var errs errorList
	switch o.Mode {
	case "facade", "external":
	default:
		errs.add(fld.Child("mode"), "%q is not facade or external", o.Mode)
	}
	if o.AccessTokenTTL <= 0 || o.AccessTokenTTL > 24*time.Hour {
		errs.add(fld.Child("access_token_ttl"), "must be between 1s and 24h (short-lived tokens limit the damage of a leak)")
	}
	if o.RefreshTokenTTL <= 0 {
		errs.add(fld.Child("refresh_token_ttl"), "must be positive")
	}
	if o.RefreshTokenMaxLifetime <= 0 {
		errs.add(fld.Child("refresh_token_max_lifetime"), "must be positive")
	}
	if o.UpstreamRecheckInterval < time.Minute {
		errs.add(fld.Child("upstream_recheck_interval"), "must be at least 1m (every refresh would call the OIDC provider)")
	}
	if o.RegistrationsPerMinute < 1 {
		errs.add(fld.Child("registrations_per_minute"), "must be at least 1")
	}
	if o.SigningKeys != "" {
		if block, _ := pem.Decode([]byte(o.SigningKeys)); block == nil {
			// Never echo the value: it is a private key.
			errs.add(fld.Child("signing_keys"), "no PEM block found; give PEM private keys (-----BEGIN EC PRIVATE KEY----- …), e.g. from `openssl ecparam -name prime256v1 -genkey -noout`")
		}
	}
	errs.checkURL(fld.Child("external_issuer"), o.ExternalIssuer, false)
	errs.checkURL(fld.Child("external_jwks_url"), o.ExternalJWKSURL, false)
	errs.checkURL(fld.Child("introspection_url"), o.IntrospectionURL, false)
	return errs
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
