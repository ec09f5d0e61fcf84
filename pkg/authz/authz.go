// Package authz decides whether an authenticated caller may reach the MCP
// server. It is separate from authentication so cookie and bearer callers
// are held to the same rules, and its rules can be swapped at runtime.
package authz

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

// Rules are allow-lists; an empty list does not restrict. A caller must pass
// every non-empty list: the e-mail rule (domain OR address) and the group rule.
type Rules struct {
	AllowedEmailDomains []string
	AllowedEmails       []string
	AllowedGroups       []string
}

// Policy holds the current rules and can be updated while serving.
type Policy struct {
	rules atomic.Pointer[Rules]
}

// New returns a policy enforcing r.
func New(r Rules) *Policy {
	p := &Policy{}
	p.Set(r)
	return p
}

// Set replaces the rules; requests already past the check are unaffected.
func (p *Policy) Set(r Rules) {
	norm := Rules{}
	for _, d := range r.AllowedEmailDomains {
		norm.AllowedEmailDomains = append(norm.AllowedEmailDomains, strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@")))
	}
	for _, e := range r.AllowedEmails {
		norm.AllowedEmails = append(norm.AllowedEmails, strings.ToLower(strings.TrimSpace(e)))
	}
	norm.AllowedGroups = append(norm.AllowedGroups, r.AllowedGroups...)
	p.rules.Store(&norm)
}

// Check returns nil when id may pass, or an error whose text is safe to show
// the caller (it names the rule, not the allow-list).
func (p *Policy) Check(id *identity.Identity) error {
	r := p.rules.Load()
	if id == nil {
		return fmt.Errorf("no authenticated identity")
	}
	if len(r.AllowedEmailDomains) > 0 || len(r.AllowedEmails) > 0 {
		email := strings.ToLower(id.Email)
		ok := email != "" && slices.Contains(r.AllowedEmails, email)
		if at := strings.LastIndexByte(email, '@'); !ok && at > 0 {
			ok = slices.Contains(r.AllowedEmailDomains, email[at+1:])
		}
		if !ok {
			return fmt.Errorf("your e-mail address is not allowed to use this MCP server")
		}
	}
	if len(r.AllowedGroups) > 0 && !slices.ContainsFunc(id.Groups, func(g string) bool {
		return slices.Contains(r.AllowedGroups, g)
	}) {
		return fmt.Errorf("you are not in a group allowed to use this MCP server")
	}
	return nil
}

// Middleware answers 403 with a JSON reason when the caller in the request
// context is not allowed.
func (p *Policy) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := p.Check(identity.FromContext(r.Context())); err != nil {
			apierror.Write(w, r, http.StatusForbidden, apierror.CodeForbidden, err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}
