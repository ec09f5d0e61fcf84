package mcpguard

import "github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"

// What the policy decides, by MCP method. Rules are written for the three
// governed methods (mcppolicy.Governed); every other method that reaches a
// tool, prompt or resource by name is decided by the rules of the governed
// method for the same thing, so no method walks around them:
//
//   - resources/subscribe is decided as a resources/read of its URI: a
//     caller who may not read a resource is not told when it changes.
//   - completion/complete is allowed when the prompt (ref/prompt) or the
//     resource template (ref/resource) it completes arguments for would
//     be listed to the caller: completions are values of those arguments,
//     such as file names under a template the caller may not read. A ref
//     of any other type is denied.
//
// resources/unsubscribe passes: it only gives something up.
const (
	methodComplete  = "completion/complete"
	methodSubscribe = "resources/subscribe"
)

// decided reports whether the policy decides requests of method.
func decided(method string) bool {
	return mcppolicy.Governed(method) || method == methodComplete || method == methodSubscribe
}

// governed reports whether method is one the rules are written for (and
// that the 2026-07-28 Mcp-Name header names).
func governed(method string) bool { return mcppolicy.Governed(method) }

// listKind is a list method whose answer is filtered: each item is listed
// when mcppolicy's Visible says some call of the governed method to it
// might be allowed.
type listKind struct {
	method  string // the list method, e.g. tools/list
	decided string // the governed method its items are decided by
	items   string // the result member holding the items
	name    string // the item member holding the name Visible is asked about
}

// listKinds are the filtered list methods. Resource templates are decided
// as resources/read of the template itself (file:///{path}), like the
// completions of their arguments.
var listKinds = map[string]*listKind{
	"tools/list":               {"tools/list", mcppolicy.MethodToolsCall, "tools", "name"},
	"prompts/list":             {"prompts/list", mcppolicy.MethodPromptsGet, "prompts", "name"},
	"resources/list":           {"resources/list", mcppolicy.MethodResourcesRead, "resources", "uri"},
	"resources/templates/list": {"resources/templates/list", mcppolicy.MethodResourcesRead, "resourceTemplates", "uriTemplate"},
}
