package mcppolicy_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
)

// FuzzCompile compiles arbitrary rules (expression, effect, name, default,
// a listed claim) and decides arbitrary requests of arbitrary callers with
// what compiles. Properties: Compile never panics and reports every problem
// as a *FieldError under the field it is about; Decide and Visible never
// panic; a Decision with Err set never allows; a method the policy does not
// govern is allowed by no rule; an item a call without arguments may use is
// shown in lists.
func FuzzCompile(f *testing.F) {
	for _, s := range []struct{ when, effect, claim, value, args string }{
		{`"admins" in groups`, "allow", "team", "admins", `{}`},
		{`name.startsWith("read_")`, "allow", "", "read_x", `null`},
		{`method == "tools/call" && arguments.path.startsWith("/srv/")`, "allow", "", "x", `{"path":"/srv/a"}`},
		{`arguments.n > 2`, "deny", "", "x", `{"n":3}`},
		{`claims.team == "a"`, "allow", "team", "a", `{"x":[1,2]}`},
		{`has(claims.team) && claims.team == name`, "allow", "team", "a", `{}`},
		{`1/0 == 1 || sub == "x"`, "allow", "", "x", `{}`},
		{`int(name) > 3`, "allow", "", "12", `{}`},
		{`groups.exists(g, g.matches(name))`, "allow", "", "(a+)+$", `{}`},
		{`arguments.all(k, arguments[k] != null)`, "deny", "", "x", `{"a":null}`},
		{`auth == "bearer" && "mcp" in scopes && client_id != ""`, "allow", "", "x", `{}`},
		{`claims.team`, "allow", "team", "x", `{}`},
		{`email_verified && email.endsWith("@example.com")`, "deny", "", "x", `{}`},
		{`"x"`, "allow", "", "", ``},
		{`method == "tools/list"`, "allow", "", "", `{}`},
		{`false`, "allow", "", "", `{}`},
		{`[1,2].map(x, [1,2,3,4].map(y, groups)).size() > 0`, "allow", "", "", `{}`},
	} {
		f.Add(s.when, s.effect, "r1", "deny", s.claim, "bob", s.value, "tools/call", s.value, s.args)
	}
	f.Fuzz(func(t *testing.T, when, effect, ruleName, def, claim, sub, group, method, name, args string) {
		opts := mcppolicy.Options{Rules: []mcppolicy.Rule{{Name: ruleName, Effect: effect, When: when}}, Default: def}
		if claim != "" {
			opts.Claims = []string{claim}
		}
		p, err := mcppolicy.Compile(opts)
		if err != nil {
			if p != nil {
				t.Fatalf("Compile returned a policy and %v", err)
			}
			checkFieldErrors(t, err)
			return
		}
		var arguments map[string]any
		d := json.NewDecoder(strings.NewReader(args))
		d.UseNumber()
		if d.Decode(&arguments) != nil {
			arguments = nil
		}
		callers := []*mcppolicy.Caller{
			{Subject: sub, Email: group, Groups: []string{group}, Claims: map[string]any{claim: group}, Auth: mcppolicy.AuthCookie},
			{Subject: sub, Groups: nil, Claims: map[string]any{claim: arguments}, ClientID: group, Scopes: []string{group}, Auth: mcppolicy.AuthBearer},
			{},
		}
		for _, c := range callers {
			b := p.Bind(c)
			for _, m := range []string{method, mcppolicy.MethodToolsCall, mcppolicy.MethodPromptsGet, mcppolicy.MethodResourcesRead} {
				dec := b.Decide(&mcppolicy.Request{Method: m, Name: name, Arguments: arguments})
				if dec.Err != nil && dec.Allow {
					t.Fatalf("rule %q: Decide(%q, %q) allowed with error %v", when, m, name, dec.Err)
				}
				if !mcppolicy.Governed(m) && (!dec.Allow || dec.Rule != "" || dec.Err != nil) {
					t.Fatalf("ungoverned method %q decided %+v", m, dec)
				}
				visible := b.Visible(m, name)
				bare := b.Decide(&mcppolicy.Request{Method: m, Name: name})
				if bare.Allow && !visible {
					t.Fatalf("rule %q: %s of %q without arguments is allowed (%+v) but hidden from lists", when, m, name, bare)
				}
			}
		}
	})
}

// checkFieldErrors asserts that every problem of a Compile error is a
// *FieldError naming a field of the section.
func checkFieldErrors(t *testing.T, err error) {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var fe *mcppolicy.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("Compile error %q (%T) is not a *FieldError", e, e)
		}
		if !strings.HasPrefix(fe.Field, "rules[0].") && fe.Field != "default" && fe.Field != "claims[0]" {
			t.Fatalf("Compile error %q names field %q", e, fe.Field)
		}
	}
}
