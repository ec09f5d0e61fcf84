// Package authz decides whether an authenticated caller may reach the MCP
// server. It is separate from authentication so cookie and bearer callers
// are held to the same rules, and its rules can be swapped at runtime.
package authz

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/apierror"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
)

// Rules are allow-lists; an empty list does not restrict. A caller must pass
// every non-empty list: the e-mail rule (domain OR address, and the provider
// must have verified the address), the group rule and every required claim.
type Rules struct {
	// AllowUnverifiedEmail lets the e-mail rules match addresses the
	// provider did not mark verified. Some providers (Entra ID among them)
	// never send email_verified; enable it only where the provider itself
	// guarantees the address.
	AllowUnverifiedEmail bool
	AllowedEmailDomains  []string
	AllowedEmails        []string
	AllowedGroups        []string
	// RequiredClaims maps a claim name to the value it must have; for an
	// array claim the value must be one of its elements. Claims are read
	// from identity.Identity.Claims, which bearer tokens fill with every
	// claim; cookie sessions (and façade tokens) carry only the claims
	// listed in policy.claims, so a cookie caller passes a required claim
	// for those and for the standard fields, mapped by name: sub, email,
	// email_verified, name, preferred_username and groups.
	RequiredClaims map[string]string
}

// Policy holds the current rules and can be updated while serving.
type Policy struct {
	rules atomic.Pointer[compiled]
}

// compiled is a normalised rule set with what Check would otherwise work
// out on every request.
type compiled struct {
	Rules
	// claimNames are RequiredClaims' names, sorted so the reason names the
	// same claim every time.
	claimNames []string
}

// New returns a policy enforcing r.
func New(r Rules) *Policy {
	p := &Policy{}
	p.Set(r)
	return p
}

// Set replaces the rules; requests already past the check are unaffected.
func (p *Policy) Set(r Rules) {
	norm := Rules{AllowUnverifiedEmail: r.AllowUnverifiedEmail}
	for _, d := range r.AllowedEmailDomains {
		norm.AllowedEmailDomains = append(norm.AllowedEmailDomains, strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@")))
	}
	for _, e := range r.AllowedEmails {
		norm.AllowedEmails = append(norm.AllowedEmails, strings.ToLower(strings.TrimSpace(e)))
	}
	norm.AllowedGroups = append(norm.AllowedGroups, r.AllowedGroups...)
	if len(r.RequiredClaims) > 0 {
		norm.RequiredClaims = maps.Clone(r.RequiredClaims)
	}
	p.rules.Store(&compiled{Rules: norm, claimNames: slices.Sorted(maps.Keys(norm.RequiredClaims))})
}

// Check returns nil when id may pass, or an error whose text is safe to show
// the caller (it names the rule, not the allow-list).
func (p *Policy) Check(id *identity.Identity) error {
	r := p.rules.Load()
	if id == nil {
		return fmt.Errorf("no authenticated identity")
	}
	if len(r.AllowedEmailDomains) > 0 || len(r.AllowedEmails) > 0 {
		// An unverified address proves nothing: many providers let anyone
		// sign up as alice@example.com without owning that mailbox.
		if !id.EmailVerified && !r.AllowUnverifiedEmail {
			return fmt.Errorf("your e-mail address is not verified by the identity provider, so it cannot be used to allow you in")
		}
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
	for _, name := range r.claimNames {
		if !claimHas(claimValue(id, name), r.RequiredClaims[name]) {
			return fmt.Errorf("the required claim %q is missing or does not have the required value", name)
		}
	}
	return nil
}

// claimValue is the claim name of id: the raw claim when present, else the
// standard field of that name (so cookie sessions can meet rules on them).
func claimValue(id *identity.Identity, name string) any {
	if v, ok := id.Claims[name]; ok {
		return v
	}
	switch name {
	case "sub":
		return id.Subject
	case "email":
		return id.Email
	case "email_verified":
		return id.EmailVerified
	case "name":
		return id.Name
	case "preferred_username":
		return id.Username
	case "groups":
		return id.Groups
	}
	return nil
}

// claimHas reports whether a claim value is want, or contains it when it is
// an array. Booleans and numbers compare by their JSON text ("true", "42").
func claimHas(v any, want string) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != "" && v == want
	case bool:
		return strconv.FormatBool(v) == want
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64) == want
	case []string:
		return slices.Contains(v, want)
	case []any:
		return slices.ContainsFunc(v, func(e any) bool {
			_, nested := e.([]any)
			return !nested && claimHas(e, want)
		})
	}
	return false
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
