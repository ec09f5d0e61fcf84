// Package mcppolicy decides, per MCP JSON-RPC request, whether a caller may
// use a tool, prompt or resource. Rules are CEL expressions (cel-go), the
// language Kubernetes users already write in admission policies; they are
// compiled and type-checked once, when the configuration loads, so a rule
// that could never match is refused then instead of silently denying
// everyone later.
package mcppolicy

// Methods the policy governs: a request for one of them is allowed or
// denied by name. Every other method passes (it names nothing to govern).
const (
	MethodToolsCall     = "tools/call"
	MethodPromptsGet    = "prompts/get"
	MethodResourcesRead = "resources/read"
)

// Effects of a rule.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// DefaultRule names the decision made when no rule matched (Decision.Rule).
const DefaultRule = "(default)"

// Rule is one rule as configured.
type Rule struct {
	Name   string
	Effect string // EffectAllow or EffectDeny
	When   string // CEL expression, type bool
}

// Options configure a Policy.
type Options struct {
	// Rules are tried in order; the first whose expression is true decides.
	Rules []Rule
	// Default (EffectAllow or EffectDeny) decides what no rule matches.
	Default string
	// Claims are the extra claims rules may read as claims.<name>, beyond
	// the standard ones (StandardClaims).
	Claims []string
}

// Caller is who is calling, as rules see it. Cookie and bearer callers are
// described the same way, so one rule decides both identically.
type Caller struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Username      string
	Groups        []string
	// Claims are the caller's raw claims (a bearer token's, or those a
	// cookie session kept), as encoding/json decodes them into any
	// (numbers as float64 or json.Number); read-only.
	Claims map[string]any
	// ClientID is the OAuth client of a bearer caller ("" for cookies).
	ClientID string
	// Scopes are a bearer caller's scopes (none for cookies).
	Scopes []string
	// Auth is how the caller authenticated: "cookie" or "bearer".
	Auth string
}

// Request is the MCP request being decided.
type Request struct {
	// Method is the JSON-RPC method, e.g. tools/call.
	Method string
	// Name is the tool or prompt name, or the resource URI.
	Name string
	// Arguments are a tools/call's or prompts/get's arguments (nil
	// otherwise), as encoding/json decodes them into any; read-only.
	Arguments map[string]any
}

// Decision is the outcome for one request.
type Decision struct {
	Allow bool
	// Rule names the rule that decided, or DefaultRule.
	Rule string
	// Err is set when a rule failed to evaluate (the request is denied:
	// the policy fails closed). Its text is for logs, not for callers.
	Err error
}
