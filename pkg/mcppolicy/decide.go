package mcppolicy

import (
	"fmt"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// Governed reports whether rules are written for method: tools/call,
// prompts/get and resources/read. The MCP middleware (pkg/mcpguard) also
// decides the methods that reach the same things by name with these rules
// (completion/complete, resources/subscribe) and filters lists with
// Visible.
func Governed(method string) bool {
	switch method {
	case MethodToolsCall, MethodPromptsGet, MethodResourcesRead:
		return true
	}
	return false
}

// Bound is a policy bound to one caller: the caller's CEL values are built
// once, however many requests (a batch) or list items are decided. It is
// safe for concurrent use.
type Bound struct {
	p *Policy
	// The caller's variables, as CEL values.
	sub, email, emailVerified, groups, claims, clientID, scopes, auth ref.Val
}

// Bind prepares the caller's part of every evaluation. c must not be nil;
// the Bound reads its Groups, Scopes and Claims in place, so they must not
// change while it is in use.
func (p *Policy) Bind(c *Caller) *Bound {
	a := p.adapter
	groups := types.NewStringList(a, nonNil(c.Groups))
	merged := make(map[string]any, len(c.Claims)+6)
	for k, v := range c.Claims {
		merged[k] = v
	}
	// The standard claims always come from the caller's fields, so every
	// caller has them and a raw claim cannot contradict them.
	merged["sub"] = types.String(c.Subject)
	merged["email"] = types.String(c.Email)
	merged["email_verified"] = types.Bool(c.EmailVerified)
	merged["name"] = types.String(c.Name)
	merged["preferred_username"] = types.String(c.Username)
	merged["groups"] = groups
	return &Bound{
		p:             p,
		sub:           types.String(c.Subject),
		email:         types.String(c.Email),
		emailVerified: types.Bool(c.EmailVerified),
		groups:        groups,
		claims:        types.NewStringInterfaceMap(a, merged),
		clientID:      types.String(c.ClientID),
		scopes:        types.NewStringList(a, nonNil(c.Scopes)),
		auth:          types.String(c.Auth),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Decide decides one request for caller c; see Bound.Decide.
func (p *Policy) Decide(c *Caller, r *Request) Decision {
	return p.Bind(c).Decide(r)
}

// Decide decides one request. A method the policy does not govern is
// allowed with no rule named. Otherwise the rules are tried in order and the
// first whose expression is true decides; when none is, Options.Default
// does (Rule is DefaultRule). A rule that fails to evaluate (a missing map
// key, the cost limit) denies the request with Err set and Rule naming it:
// the policy fails closed and never skips a rule it could not evaluate.
func (b *Bound) Decide(r *Request) Decision {
	if !Governed(r.Method) {
		return Decision{Allow: true}
	}
	act := &activation{b: b, method: types.String(r.Method), name: types.String(r.Name), arguments: b.p.noArgs}
	if r.Arguments != nil {
		act.arguments = types.NewStringInterfaceMap(b.p.adapter, r.Arguments)
	}
	for i := range b.p.rules {
		rule := &b.p.rules[i]
		out, _, err := rule.prog.Eval(act)
		if err != nil {
			return Decision{Rule: rule.name, Err: fmt.Errorf("rule %q: %w", rule.name, err)}
		}
		if out == types.True {
			return Decision{Allow: rule.allow, Rule: rule.name}
		}
		if out != types.False {
			return Decision{Rule: rule.name, Err: fmt.Errorf("rule %q: evaluated to %v, not a bool", rule.name, out)}
		}
	}
	return Decision{Allow: b.p.defaultAllow, Rule: DefaultRule}
}

// Visible reports whether a list should show the item name to the caller:
// whether some call of the governed method to it might be allowed, whatever
// its arguments. The rules are evaluated in order with arguments unknown: a
// rule that is true decides by its effect; an allow rule that depends on the
// arguments shows the item (some call may be allowed), a deny rule that
// depends on them does not decide (some call may pass it); a rule that is
// false is skipped; one that fails to evaluate hides the item (fail closed);
// with no rule deciding, Default does. An item of a method the policy does
// not govern is visible.
func (b *Bound) Visible(method, name string) bool {
	if !Governed(method) {
		return true
	}
	act := &partialActivation{activation: activation{b: b, method: types.String(method), name: types.String(name)}, unknowns: b.p.unknownArgs}
	for i := range b.p.rules {
		rule := &b.p.rules[i]
		out, _, err := rule.partial.Eval(act)
		switch {
		case err != nil:
			return false
		case out == types.True:
			return rule.allow
		case types.IsUnknown(out):
			if rule.allow {
				return true
			}
		case out != types.False:
			return false
		}
	}
	return b.p.defaultAllow
}

// activation resolves the rule variables from precomputed values, without
// the map an activation is usually built from.
type activation struct {
	b                       *Bound
	method, name, arguments any
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(n string) (any, bool) {
	var v any
	switch n {
	case VarMethod:
		v = a.method
	case VarName:
		v = a.name
	case VarArguments:
		v = a.arguments
	case VarSub:
		v = a.b.sub
	case VarEmail:
		v = a.b.email
	case VarEmailVerified:
		v = a.b.emailVerified
	case VarGroups:
		v = a.b.groups
	case VarClaims:
		v = a.b.claims
	case VarClientID:
		v = a.b.clientID
	case VarScopes:
		v = a.b.scopes
	case VarAuth:
		v = a.b.auth
	}
	return v, v != nil
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// partialActivation is an activation whose arguments are unknown (Visible).
type partialActivation struct {
	activation
	unknowns []*interpreter.AttributePattern
}

// UnknownAttributePatterns implements interpreter.PartialActivation.
func (a *partialActivation) UnknownAttributePatterns() []*interpreter.AttributePattern {
	return a.unknowns
}

// AsPartialActivation lets the interpreter find the unknowns (it looks for
// this method on the activation and its parents).
func (a *partialActivation) AsPartialActivation() (interpreter.PartialActivation, bool) {
	return a, true
}
