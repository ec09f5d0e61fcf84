package config

// Validation of the MCP-aware sections: policy, audit and token exchange.

import (
	"errors"

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

// validateAudit checks the audit section.
func validateAudit(c *AuditConfig, fld fieldPath) errorList {
	var errs errorList
	_ = c
	_ = fld
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
