package mcppolicy

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// fieldErrors returns the *FieldError values joined in err, by field.
func fieldErrors(t *testing.T, err error) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("Compile error is not a joined list: %v", err)
	}
	for _, e := range joined.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("Compile error %v is not a *FieldError", e)
		}
		out[fe.Field] = append(out[fe.Field], fe.Msg)
	}
	return out
}

func allow(name, when string) Rule { return Rule{Name: name, Effect: EffectAllow, When: when} }
func deny(name, when string) Rule  { return Rule{Name: name, Effect: EffectDeny, When: when} }

func TestCompileAccepts(t *testing.T) {
	for _, when := range []string{
		`"mcp-admins" in groups`,
		`sub == "u1" && email.endsWith("@example.com") && email_verified`,
		`claims.name == "Ada" && claims.preferred_username == "ada" && claims.email_verified == true`,
		`has(claims.department) && claims.department == "finance"`,
		`claims.?department.orValue("") == "finance"`,
		`claims["department"] == "finance"`,
		`"department" in claims`,
		`client_id == "" && auth == "cookie" || "mcp.write" in scopes`,
		`method == "tools/call" && name.startsWith("read_")`,
		`name.matches("^(get|list)_[a-z]+$")`,
		`has(arguments.path) && arguments.path.startsWith("/srv/")`,
		`arguments.limit <= 100`,
		`sets.intersects(groups, ["a", "b"])`,
		`groups.exists(g, g.lowerAscii().startsWith("team-"))`,
		`[1, 2].exists(claims, claims == 1)`, // a comprehension variable may shadow claims
		`["tools/list"].exists(method, method == "tools/list")`,
		`method == "resources/read" || auth == "cookie"`,
		`true`,
	} {
		t.Run(when, func(t *testing.T) {
			p, err := Compile(Options{Rules: []Rule{allow("r", when)}, Default: EffectDeny, Claims: []string{"department"}})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if p.Empty() {
				t.Fatal("compiled policy is empty")
			}
		})
	}
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		opts  func(*Options)
		// want maps each field with a problem to a text one of its
		// messages contains.
		want map[string]string
	}{
		{name: "misspelt variable", rules: []Rule{allow("a", `"x" in groups`), allow("b", `true`), allow("c", `"admins" in gruops`)},
			want: map[string]string{"rules[2].when": "undeclared reference to 'gruops' (line 1, column 13)"}},
		{name: "syntax error", rules: []Rule{allow("a", `name == `)},
			want: map[string]string{"rules[0].when": "Syntax error"}},
		{name: "unknown effect", rules: []Rule{{Name: "a", Effect: "permit", When: "true"}},
			want: map[string]string{"rules[0].effect": `"permit" is not allow or deny`}},
		{name: "missing effect", rules: []Rule{{Name: "a", When: "true"}},
			want: map[string]string{"rules[0].effect": `"" is not allow or deny`}},
		{name: "duplicate name", rules: []Rule{allow("a", "true"), deny("a", `name == "x"`)},
			want: map[string]string{"rules[1].name": "duplicate"}},
		{name: "missing name", rules: []Rule{allow("a", "true"), deny(" ", `name == "x"`)},
			want: map[string]string{"rules[1].name": "required"}},
		{name: "missing expression", rules: []Rule{allow("a", " ")},
			want: map[string]string{"rules[0].when": "required"}},
		{name: "not bool", rules: []Rule{allow("a", `name`)},
			want: map[string]string{"rules[0].when": "must be a bool expression, is string"}},
		{name: "dyn is not bool", rules: []Rule{allow("a", `claims.email_verified`)},
			want: map[string]string{"rules[0].when": "must be a bool expression, is dyn"}},
		{name: "misspelt claim", rules: []Rule{allow("a", `claims.departmnet == "x"`)},
			want: map[string]string{"rules[0].when": `reads claim "departmnet"`}},
		{name: "misspelt claim by index", rules: []Rule{allow("a", `claims["departmnet"] == "x"`)},
			want: map[string]string{"rules[0].when": "add it to policy.claims"}},
		{name: "misspelt claim in has", rules: []Rule{allow("a", `has(claims.departmnet)`)},
			want: map[string]string{"rules[0].when": `"departmnet"`}},
		{name: "misspelt claim optional", rules: []Rule{allow("a", `claims.?departmnet.orValue("") == "x"`)},
			want: map[string]string{"rules[0].when": `"departmnet"`}},
		{name: "misspelt claim in", rules: []Rule{allow("a", `"departmnet" in claims`)},
			want: map[string]string{"rules[0].when": `"departmnet"`}},
		{name: "claim inside a macro", rules: []Rule{allow("a", `groups.exists(g, claims.tenant == g)`)},
			want: map[string]string{"rules[0].when": `"tenant"`}},
		{name: "method of a list", rules: []Rule{allow("a", `method == "tools/list" && "x" in groups`)},
			want: map[string]string{"rules[0].when": `method is never "tools/list"`}},
		{name: "method on the right", rules: []Rule{allow("a", `"prompts/list" == method`)},
			want: map[string]string{"rules[0].when": `method is never "prompts/list"`}},
		{name: "auth misspelt", rules: []Rule{allow("a", `auth == "Bearer"`)},
			want: map[string]string{"rules[0].when": `auth is never "Bearer"`}},
		{name: "constant false", rules: []Rule{allow("a", `1 == 2`)},
			want: map[string]string{"rules[0].when": "can never match"}},
		{name: "false after folding", rules: []Rule{deny("a", `"admins" in groups && false`)},
			want: map[string]string{"rules[0].when": "can never match"}},
		{name: "bool compared with a string", rules: []Rule{allow("a", `email_verified == "true"`)},
			want: map[string]string{"rules[0].when": "no matching overload for '_==_' applied to '(bool, string)'"}},
		{name: "list compared with a string", rules: []Rule{allow("a", `groups == "admins"`)},
			want: map[string]string{"rules[0].when": "no matching overload"}},
		{name: "string compared with an int", rules: []Rule{allow("a", `name == 1`)},
			want: map[string]string{"rules[0].when": "no matching overload"}},
		{name: "nested loop", rules: []Rule{allow("a", `groups.all(a, groups.all(b, a == b))`)},
			want: map[string]string{"rules[0].when": "too costly"}},
		{name: "unknown default", rules: []Rule{allow("a", "true")}, opts: func(o *Options) { o.Default = "permit" },
			want: map[string]string{"default": `"permit" is not allow or deny`}},
		{name: "empty claim name", rules: []Rule{allow("a", "true")}, opts: func(o *Options) { o.Claims = []string{"x", ""} },
			want: map[string]string{"claims[1]": "empty"}},
		{name: "several problems at once", rules: []Rule{allow("a", `gruops == []`), {Name: "a", Effect: "permit", When: `claims.x == 1`}},
			want: map[string]string{"rules[0].when": "gruops", "rules[1].name": "duplicate", "rules[1].effect": "permit", "rules[1].when": `"x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{Rules: tt.rules, Default: EffectDeny}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			p, err := Compile(opts)
			if err == nil {
				t.Fatalf("Compile accepted the policy")
			}
			if p != nil {
				t.Errorf("Compile returned a policy with its error")
			}
			got := fieldErrors(t, err)
			var gotFields, wantFields []string
			for f := range got {
				gotFields = append(gotFields, f)
			}
			for f, text := range tt.want {
				wantFields = append(wantFields, f)
				if !slices.ContainsFunc(got[f], func(m string) bool { return strings.Contains(m, text) }) {
					t.Errorf("%s: messages %q do not contain %q", f, got[f], text)
				}
			}
			slices.Sort(gotFields)
			slices.Sort(wantFields)
			if !slices.Equal(gotFields, wantFields) {
				t.Errorf("fields with problems %v, want %v (err: %v)", gotFields, wantFields, err)
			}
			if msg := err.Error(); strings.Contains(msg, "\n |") {
				t.Errorf("error carries CEL's multi-line source excerpt: %q", msg)
			}
		})
	}
}

func TestCompileNoRules(t *testing.T) {
	p, err := Compile(Options{Default: EffectDeny})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if !p.Empty() {
		t.Error("a policy without rules is not Empty")
	}
}
