package mcppolicy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// Policy is a compiled set of rules. It is immutable and safe for
// concurrent use; a reload compiles a new one.
type Policy struct {
	rules        []compiledRule
	defaultAllow bool
	adapter      types.Adapter
	// unknownArgs marks the arguments variable unknown for Visible.
	unknownArgs []*interpreter.AttributePattern
	// noArgs is the arguments value of a request without arguments.
	noArgs any
}

type compiledRule struct {
	name  string
	allow bool
	// prog decides a request; partial evaluates with arguments unknown
	// (Visible).
	prog, partial cel.Program
}

// FieldError is one problem Compile found, named by its field path relative
// to the policy section (rules[2].when), so the configuration loader can
// report it under its own path (policy.rules[2].when).
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Compile compiles and type-checks every rule once, so that deciding a
// request never compiles anything, and refuses any rule that could never
// match instead of letting it silently deny: a syntax or type error, an
// undeclared variable, an expression that is not bool, a read of a claim
// that is neither standard nor listed in Options.Claims, a comparison of
// method or auth with a value they never hold, an expression that is always
// false, and one whose worst-case cost is out of bounds. The error
// joins one *FieldError per problem.
func Compile(opts Options) (*Policy, error) {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	p := &Policy{}
	switch opts.Default {
	case EffectAllow:
		p.defaultAllow = true
	case EffectDeny:
	default:
		add("default", "%q is not allow or deny", opts.Default)
	}
	claims := make(map[string]bool, len(opts.Claims))
	for i, c := range opts.Claims {
		if strings.TrimSpace(c) == "" {
			add(fmt.Sprintf("claims[%d]", i), "empty claim name")
		}
		claims[c] = true
	}
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	p.adapter = jsonAdapter{env.CELTypeAdapter()}
	p.unknownArgs = []*interpreter.AttributePattern{cel.AttributePattern(VarArguments)}
	p.noArgs = types.NewStringInterfaceMap(p.adapter, map[string]any{})
	seen := make(map[string]int, len(opts.Rules))
	for i, r := range opts.Rules {
		field := fmt.Sprintf("rules[%d]", i)
		switch prev, dup := seen[r.Name]; {
		case strings.TrimSpace(r.Name) == "":
			add(field+".name", "required: audit lines and errors name the rule by it")
		case dup:
			add(field+".name", "duplicate: %q is also the name of rules[%d]", r.Name, prev)
		default:
			seen[r.Name] = i
		}
		if r.Effect != EffectAllow && r.Effect != EffectDeny {
			add(field+".effect", "%q is not allow or deny", r.Effect)
		}
		if strings.TrimSpace(r.When) == "" {
			add(field+".when", "required: a CEL expression, e.g. \"mcp-admins\" in groups")
			continue
		}
		c, problems := compileRule(env, r.When, claims)
		for _, msg := range problems {
			add(field+".when", "%s", msg)
		}
		if len(problems) == 0 {
			c.name, c.allow = r.Name, r.Effect == EffectAllow
			p.rules = append(p.rules, c)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Empty reports whether the policy has no rules. Such a policy governs
// nothing: the proxy does not install the guard, so request bodies are never
// parsed, and Default is not applied to anyone.
func (p *Policy) Empty() bool { return len(p.rules) == 0 }

// compileRule compiles one expression and runs the load-time checks; it
// returns the problems found (the rule is usable only when there are none).
func compileRule(env *cel.Env, src string, claims map[string]bool) (compiledRule, []string) {
	checked, iss := env.Compile(src)
	if iss.Err() != nil {
		return compiledRule{}, issueMessages(iss)
	}
	if out := checked.OutputType(); !out.IsExactType(cel.BoolType) {
		return compiledRule{}, []string{fmt.Sprintf("must be a bool expression, is %s (compare it, e.g. claims.admin == true)", out)}
	}
	expr := checked.NativeRep().Expr()
	if problems := append(unknownClaims(expr, claims), impossibleValues(expr)...); len(problems) > 0 {
		return compiledRule{}, problems
	}
	if alwaysFalse(env, checked) {
		return compiledRule{}, []string{"can never match: the expression is always false"}
	}
	est, err := env.EstimateCost(checked, sizeEstimator{})
	if err != nil {
		return compiledRule{}, []string{fmt.Sprintf("cannot estimate its cost: %v", err)}
	}
	if est.Max > EstimatedCostLimit {
		return compiledRule{}, []string{fmt.Sprintf("too costly: its worst-case cost is %d, over the limit of %d, for variables of %d characters or items and elements of %d (a nested loop over groups, claims or arguments?)", est.Max, uint64(EstimatedCostLimit), EstimateSize, EstimateElementSize)}
	}
	// Tracking the cost of an evaluation is most of what evaluating a
	// simple rule costs. A rule whose cost does not grow with its inputs
	// (name.startsWith("read_"), sub == "x") cannot reach the limit: its
	// estimate without any size hint is already bounded. Only the others
	// are tracked.
	var limit []cel.ProgramOption
	if unhinted, err := env.EstimateCost(checked, unsizedEstimator{}); err != nil || unhinted.Max > RuntimeCostLimit {
		limit = []cel.ProgramOption{cel.CostLimit(RuntimeCostLimit)}
	}
	prog, err := env.Program(checked, append(limit, cel.EvalOptions(cel.OptOptimize))...)
	if err != nil {
		return compiledRule{}, []string{fmt.Sprintf("cannot be planned: %v", err)}
	}
	partial, err := env.Program(checked, append(limit, cel.EvalOptions(cel.OptOptimize, cel.OptPartialEval))...)
	if err != nil {
		return compiledRule{}, []string{fmt.Sprintf("cannot be planned: %v", err)}
	}
	return compiledRule{prog: prog, partial: partial}, nil
}

// issueMessages renders CEL's errors on one line each, without the source
// excerpt (the configuration error names the field; the expression is in
// it).
func issueMessages(iss *cel.Issues) []string {
	var out []string
	for _, e := range iss.Errors() {
		msg := strings.TrimSuffix(e.Message, " (in container '')")
		out = append(out, fmt.Sprintf("%s (line %d, column %d)", msg, e.Location.Line(), e.Location.Column()+1))
	}
	if len(out) == 0 {
		out = append(out, iss.Err().Error())
	}
	return out
}

// alwaysFalse reports whether constant folding reduces the expression to
// false: it then matches no request, whatever the caller (e.g. 1 == 2, or
// "admins" in groups && false).
func alwaysFalse(env *cel.Env, checked *cel.Ast) bool {
	folder, err := cel.NewConstantFoldingOptimizer()
	if err != nil {
		return false
	}
	opt, err := cel.NewStaticOptimizer(folder)
	if err != nil {
		return false
	}
	folded, iss := opt.Optimize(env, checked)
	if iss.Err() != nil {
		return false
	}
	e := folded.NativeRep().Expr()
	return e.Kind() == ast.LiteralKind && e.AsLiteral() == types.False
}

// unknownClaims finds every read of a named claim (claims.x, claims["x"],
// has(claims.x), claims.?x, claims[?"x"], "x" in claims) that is neither a
// standard claim nor in allowed: the caller never has it, so the rule could
// never match.
func unknownClaims(e ast.Expr, allowed map[string]bool) []string {
	var names []string
	note := func(name string) {
		if !IsStandardClaim(name) && !allowed[name] && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	walk(e, nil, func(e ast.Expr, s scope) {
		switch e.Kind() {
		case ast.SelectKind:
			if sel := e.AsSelect(); s.isVar(sel.Operand(), VarClaims) {
				note(sel.FieldName())
			}
		case ast.CallKind:
			c := e.AsCall()
			args := c.Args()
			if len(args) != 2 {
				return
			}
			switch c.FunctionName() {
			case operators.Index, operators.OptIndex, operators.OptSelect:
				if k, ok := stringLiteral(args[1]); ok && s.isVar(args[0], VarClaims) {
					note(k)
				}
			case operators.In:
				if k, ok := stringLiteral(args[0]); ok && s.isVar(args[1], VarClaims) {
					note(k)
				}
			}
		}
	})
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, fmt.Sprintf("reads claim %q, which is neither a standard claim (sub, email, email_verified, name, preferred_username, groups) nor listed in policy.claims; add it to policy.claims if the identity provider sends it", n))
	}
	return out
}

// impossibleValues finds comparisons of method or auth with a value they
// never hold (method == "tools/list", auth == "Bearer"): a rule written
// for a list or with a misspelt value would never match. Lists are
// filtered with the rules of the method they stand for (tools/call for
// tools/list).
func impossibleValues(e ast.Expr) []string {
	var out []string
	walk(e, nil, func(e ast.Expr, s scope) {
		if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != operators.Equals {
			return
		}
		args := e.AsCall().Args()
		for i := range 2 {
			v, ok := stringLiteral(args[1-i])
			switch {
			case !ok:
			case s.isVar(args[i], VarMethod) && !Governed(v):
				out = append(out, fmt.Sprintf("method is never %q: rules decide only tools/call, prompts/get and resources/read (a tools/list is filtered with the tools/call rules; completion/complete and resources/subscribe are decided with the prompts/get and resources/read rules)", v))
			case s.isVar(args[i], VarAuth) && v != AuthCookie && v != AuthBearer:
				out = append(out, fmt.Sprintf("auth is never %q, only %q or %q", v, AuthCookie, AuthBearer))
			}
		}
	})
	return out
}

func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// scope lists the comprehension variables in scope, which hide the rule
// variables of the same name ([1].exists(claims, claims == 1)).
type scope []string

// isVar reports whether e is the rule variable name.
func (s scope) isVar(e ast.Expr, name string) bool {
	return e.Kind() == ast.IdentKind && e.AsIdent() == name && !slices.Contains(s, name)
}

// walk calls visit with every node of e, in pre-order, and the scope it is
// in.
func walk(e ast.Expr, s scope, visit func(ast.Expr, scope)) {
	visit(e, s)
	switch e.Kind() {
	case ast.SelectKind:
		walk(e.AsSelect().Operand(), s, visit)
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			walk(c.Target(), s, visit)
		}
		for _, a := range c.Args() {
			walk(a, s, visit)
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		walk(c.IterRange(), s, visit)
		walk(c.AccuInit(), s, visit)
		inner := append(slices.Clone(s), c.IterVar(), c.AccuVar())
		if c.HasIterVar2() {
			inner = append(inner, c.IterVar2())
		}
		walk(c.LoopCondition(), inner, visit)
		walk(c.LoopStep(), inner, visit)
		walk(c.Result(), inner, visit)
	case ast.ListKind:
		for _, x := range e.AsList().Elements() {
			walk(x, s, visit)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			walk(me.Key(), s, visit)
			walk(me.Value(), s, visit)
		}
	case ast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			walk(f.AsStructField().Value(), s, visit)
		}
	}
}

// sizeEstimator sizes the strings, lists and maps of unknown size for the
// load-time cost estimate: a variable at EstimateSize, an element or field
// of one at EstimateElementSize (all of a request fits in its body, so a
// million items of a million characters each cannot occur).
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if len(n.Path()) > 1 {
		return &checker.SizeEstimate{Min: 0, Max: EstimateElementSize}
	}
	return &checker.SizeEstimate{Min: 0, Max: EstimateSize}
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// unsizedEstimator knows no sizes: the estimate is bounded only for a rule
// whose cost does not depend on its inputs.
type unsizedEstimator struct{}

func (unsizedEstimator) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }

func (unsizedEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}
