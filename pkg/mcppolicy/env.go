package mcppolicy

import (
	"encoding/json"
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
)

// Variables a rule can read. The caller's:
//
//	sub            string        the subject ("sub" claim), e.g. sub == "248289761001"
//	email          string        e.g. email.endsWith("@example.com")
//	email_verified bool          e.g. email_verified && email.endsWith("@example.com")
//	groups         list(string)  e.g. "mcp-admins" in groups
//	claims         map(string, dyn) the caller's claims: the standard ones (sub,
//	               email, email_verified, name, preferred_username, groups; always
//	               present) and those named in policy.claims when the caller has
//	               them, e.g. claims.name, has(claims.department) &&
//	               claims.department == "finance"
//	client_id      string        the OAuth client of a bearer caller, "" for a
//	               cookie caller, e.g. client_id == "claude-desktop"
//	scopes         list(string)  a bearer caller's scopes (empty for cookies)
//	auth           string        "cookie" or "bearer"
//
// The request's:
//
//	method         string        tools/call, prompts/get or resources/read
//	name           string        the tool or prompt name, or the resource URI
//	arguments      map(string, dyn) a tools/call's or prompts/get's arguments
//	               (empty for resources/read), e.g. arguments.path.startsWith("/srv/")
const (
	VarSub           = "sub"
	VarEmail         = "email"
	VarEmailVerified = "email_verified"
	VarGroups        = "groups"
	VarClaims        = "claims"
	VarClientID      = "client_id"
	VarScopes        = "scopes"
	VarAuth          = "auth"
	VarMethod        = "method"
	VarName          = "name"
	VarArguments     = "arguments"
)

// Ways a caller authenticates (Caller.Auth and the auth variable).
const (
	AuthCookie = "cookie"
	AuthBearer = "bearer"
)

// IsStandardClaim reports whether every caller has the claim under claims
// (filled from Caller's fields: sub, email, email_verified, name,
// preferred_username, groups), so rules may read it without listing it in
// Options.Claims.
func IsStandardClaim(name string) bool {
	switch name {
	case "sub", "email", "email_verified", "name", "preferred_username", "groups":
		return true
	}
	return false
}

// Cost bounds. CEL counts the work an evaluation does in cost units (about
// one per operation and per few characters a string function walks).
const (
	// RuntimeCostLimit stops an evaluation that does more work than this;
	// the request is then denied (Decision.Err says why). It is the
	// per-expression limit Kubernetes applies to admission expressions:
	// far above what a sensible rule costs (tens of units), low enough that
	// no rule burns a meaningful amount of CPU.
	RuntimeCostLimit = 1_000_000
	// EstimatedCostLimit refuses at load a rule whose worst-case cost,
	// estimated with variables of EstimateSize and their elements of
	// EstimateElementSize, exceeds it: in practice a nested loop over the
	// caller's or the request's lists (whose cost grows with the square of
	// their size), which the runtime limit would turn into denials for large
	// inputs. One pass over them, even one that transforms every element,
	// stays under it.
	EstimatedCostLimit = 10_000 * RuntimeCostLimit
	// EstimateSize is the size (characters, list items, map entries) the
	// load-time estimate assumes for a variable: the default cap on a
	// request body (policy.max_body_bytes).
	EstimateSize = 1 << 20
	// EstimateElementSize is the size it assumes for an element of a list
	// or a value in a map (a group name, an argument's value).
	EstimateElementSize = 1 << 10
	// maxRangeSize bounds lists.range(n), which would otherwise allocate up
	// to a million elements before any cost is counted.
	maxRangeSize = 10_000
)

// newEnv declares the variables and the libraries rules may use: the
// standard CEL functions and macros, the strings, lists and sets extensions
// (e.g. name.lowerAscii(), sets.intersects(groups, ["a", "b"])) and optional
// values (claims.?department.orValue("")). Numbers compare across int,
// uint and double, since JSON arguments and claims arrive as doubles
// (arguments.limit <= 100 works).
func newEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.Variable(VarSub, cel.StringType),
		cel.Variable(VarEmail, cel.StringType),
		cel.Variable(VarEmailVerified, cel.BoolType),
		cel.Variable(VarGroups, cel.ListType(cel.StringType)),
		cel.Variable(VarClaims, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(VarClientID, cel.StringType),
		cel.Variable(VarScopes, cel.ListType(cel.StringType)),
		cel.Variable(VarAuth, cel.StringType),
		cel.Variable(VarMethod, cel.StringType),
		cel.Variable(VarName, cel.StringType),
		cel.Variable(VarArguments, cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
		ext.Lists(ext.ListsMaxRangeSize(maxRangeSize)),
		ext.Sets(),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
	)
	if err != nil {
		return nil, fmt.Errorf("policy CEL environment: %w", err)
	}
	return env, nil
}

// jsonAdapter converts claim and argument values to CEL values as they are
// read, like the environment's adapter, and also accepts json.Number (a
// decoder with UseNumber): an integer becomes an int, another number a
// double, so arguments.limit <= 100 holds whichever way the JSON was
// decoded.
type jsonAdapter struct{ types.Adapter }

func (a jsonAdapter) NativeToValue(v any) ref.Val {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return types.Int(i)
		}
		if f, err := v.Float64(); err == nil {
			return types.Double(f)
		}
		return types.String(v)
	// Containers keep this adapter for what they hold (the environment's
	// would take over below the first level).
	case map[string]any:
		return types.NewStringInterfaceMap(a, v)
	case []any:
		return types.NewDynamicList(a, v)
	}
	return a.Adapter.NativeToValue(v)
}
