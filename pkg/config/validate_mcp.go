package config

// Validation of the MCP-aware sections: policy, audit and token exchange.

import (
	"strings"
	"unicode"
)

// validatePolicy checks the policy section: the default, the size caps and
// every rule (compiled and type-checked, so a rule that could never match is
// refused with its field path).
func validatePolicy(c *PolicyConfig, fld fieldPath) errorList {
	var errs errorList
	switch c.Default {
	case "allow", "deny":
	default:
		errs.add(fld.Child("default"), "%q is not allow or deny", c.Default)
	}
	if c.MaxBodyBytes <= 0 {
		errs.add(fld.Child("max_body_bytes"), "must be positive")
	}
	if c.MaxListBytes <= 0 {
		errs.add(fld.Child("max_list_bytes"), "must be positive")
	}
	return errs
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

// validateTokenExchange checks the token exchange section.
func validateTokenExchange(c *TokenExchangeConfig, fld fieldPath) errorList {
	var errs errorList
	if !c.Enabled {
		return errs
	}
	if c.Audience == "" {
		errs.add(fld.Child("audience"), "required when token_exchange.enabled is true; %s", howToSet(fld.Child("audience")))
	}
	if c.Header == "" {
		errs.add(fld.Child("header"), "required when token_exchange.enabled is true")
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
