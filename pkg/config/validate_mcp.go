package config

// Validation of the MCP-aware sections: policy, audit and token exchange.

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"unicode"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/headername"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
)

// validatePolicy checks the policy section: the default, the size caps and
// every rule (compiled and type-checked, so a rule that could never match is
// refused with its field path). Start-up and a hot reload both validate, so
// a bad policy never runs: the proxy does not start, or keeps the old one.
func validatePolicy(c *PolicyConfig, fld fieldPath) errorList {
	var errs errorList
	if c.MaxBodyBytes <= 0 {
		errs.add(fld.Child("max_body_bytes"), "must be positive")
	}
	if c.MaxListBytes <= 0 {
		errs.add(fld.Child("max_list_bytes"), "must be positive")
	}
	if _, err := CompilePolicy(c); err != nil {
		var fe *mcppolicy.FieldError
		for _, e := range unjoin(err) {
			if errors.As(e, &fe) {
				errs.add(fld.Child(fe.Field), "%s", fe.Msg)
			} else {
				errs.add(fld, "%v", e)
			}
		}
	}
	return errs
}

// CompilePolicy compiles the policy section's rules: what validation checks
// and what the proxy runs are the same compilation.
func CompilePolicy(c *PolicyConfig) (*mcppolicy.Policy, error) {
	rules := make([]mcppolicy.Rule, len(c.Rules))
	for i, r := range c.Rules {
		rules[i] = mcppolicy.Rule{Name: r.Name, Effect: r.Effect, When: r.When}
	}
	return mcppolicy.Compile(mcppolicy.Options{Rules: rules, Default: c.Default, Claims: c.Claims})
}

// unjoin lists the errors errors.Join combined (or err alone).
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// validateAudit checks the audit section: every redact key must name
// something. The audit logger matches keys with case folded and everything
// but letters and digits removed, by containment, so an entry with no
// letter or digit ("", "-", "_") would match every key and hide all
// arguments; it is refused instead of silently doing that.
func validateAudit(c *AuditConfig, fld fieldPath) errorList {
	var errs errorList
	for i, k := range c.RedactKeys {
		if !strings.ContainsFunc(k, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) {
			errs.add(fld.Child("redact_keys"), "entry %d (%q) has no letter or digit; give a key name such as password", i+1, k)
		}
	}
	return errs
}

// validateTokenExchange checks the token exchange section: an audience and
// scopes the provider can parse, and a header the proxy may set without
// clobbering one it or the transport owns.
func validateTokenExchange(c *TokenExchangeConfig, fld fieldPath) errorList {
	var errs errorList
	if !c.Enabled {
		return errs
	}
	if c.Audience == "" {
		errs.add(fld.Child("audience"), "required when token_exchange.enabled is true; %s", howToSet(fld.Child("audience")))
	} else if strings.ContainsFunc(c.Audience, unicode.IsSpace) {
		errs.add(fld.Child("audience"), "%q must not contain spaces (one audience, e.g. https://api.example.com)", c.Audience)
	}
	for _, s := range c.Scopes {
		if !validScopeToken(s) {
			errs.add(fld.Child("scopes"), "%q is not a scope (printable ASCII without spaces, quotes or backslashes)", s)
		}
	}
	switch {
	case c.Header == "":
		errs.add(fld.Child("header"), "required when token_exchange.enabled is true")
	case !validHeaderName(c.Header):
		errs.add(fld.Child("header"), "%q is not a valid HTTP header name", c.Header)
	case reservedExchangeHeader(c.Header):
		errs.add(fld.Child("header"), "%q is a header the proxy or HTTP itself sets; use Authorization or a header of your own such as X-Downstream-Token", c.Header)
	}
	errs.checkURL(fld.Child("endpoint"), c.Endpoint, false)
	if c.ExpiryMargin < 0 {
		errs.add(fld.Child("expiry_margin"), "must not be negative")
	}
	if c.FailureBackoff < 0 {
		errs.add(fld.Child("failure_backoff"), "must not be negative")
	}
	return errs
}

// validScopeToken is RFC 6749 §3.3's scope-token.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// reservedExchangeHeader reports header names the downstream token must not
// take: hop-by-hop and framing headers, cookies, the MCP transport's own
// headers, the forwarding headers the proxy rewrites and its identity
// assertion. (The configurable identity headers are not compared here.)
func reservedExchangeHeader(h string) bool {
	n := headername.Normalize(h)
	for _, prefix := range []string{"mcp-", "x-forwarded-", "proxy-", "sec-"} {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	switch n {
	case "host", "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
		"content-length", "content-type", "content-encoding", "accept", "cookie", "origin",
		"forwarded", "x-real-ip", "x-request-id", "traceparent", "tracestate", "x-mcp-identity-assertion":
		return true
	}
	return false
}

// validateTokenExchangeFit checks token exchange against the rest of the
// configuration: it needs the OIDC login (its subject tokens come from it),
// and its header must not be one the proxy writes the caller's identity
// into, where one would overwrite the other.
func validateTokenExchangeFit(c *Config, fld fieldPath) errorList {
	var errs errorList
	if !c.TokenExchange.Enabled {
		return errs
	}
	if c.AuthMode != "oidc" {
		errs.add(fld.Child("enabled"), "needs auth_mode oidc: the exchanged tokens are the logged-in users' (auth_mode is %q)", c.AuthMode)
	}
	want := strings.TrimSpace(c.TokenExchange.Header)
	identityHeaders := []string{"X-User-ID", "X-User-Email", "X-User-Name", "X-User-Groups",
		c.Headers.User, c.Headers.Email, c.Headers.Groups, c.Headers.Name, c.Headers.Username}
	for _, h := range identityHeaders {
		if h != "" && headername.Same(strings.TrimSpace(h), want) {
			errs.add(fld.Child("header"), "%q also carries the caller's identity (headers.*); choose another header", c.TokenExchange.Header)
			break
		}
	}
	return errs
}

// validateMCPSession checks the mcp_session section. The advertise address
// must name a host: a bare ":port" is completed from POD_IP at load, so one
// left bare means the sidecar runs without the downward API.
func validateMCPSession(c *MCPSessionConfig, fld fieldPath) errorList {
	var errs errorList
	if a := c.AdvertiseAddress; a != "" {
		host, port, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(port)
		switch {
		case err != nil || perr != nil || n < 1 || n > 65535:
			errs.add(fld.Child("advertise_address"), "%q is not host:port", a)
		case host == "":
			errs.add(fld.Child("advertise_address"), "%q has no host, and %s (the pod IP from the downward API) is not set; give host:port", a, PodIPEnv)
		}
	}
	if c.TTL <= 0 {
		errs.add(fld.Child("ttl"), "must be positive")
	}
	if c.HopTimeout <= 0 {
		errs.add(fld.Child("hop_timeout"), "must be positive")
	}
	return errs
}
