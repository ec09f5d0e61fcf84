package config

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
)

func TestValidatePolicy(t *testing.T) {
	rule := func(name, effect, when string) PolicyRule { return PolicyRule{Name: name, Effect: effect, When: when} }
	tests := []struct {
		name   string
		policy func(*PolicyConfig)
		// want maps each field path with a problem to a text its message
		// contains; nil means valid.
		want map[string]string
	}{
		{name: "no rules", policy: func(*PolicyConfig) {}},
		{name: "good rules", policy: func(p *PolicyConfig) {
			p.Claims = []string{"department"}
			p.Rules = []PolicyRule{
				rule("admins", "allow", `"mcp-admins" in groups`),
				rule("finance", "allow", `name == "run_payroll" && claims.?department.orValue("") == "finance"`),
				rule("payroll", "deny", `name == "run_payroll"`),
			}
		}},
		{name: "misspelt variable", policy: func(p *PolicyConfig) {
			p.Rules = []PolicyRule{rule("a", "allow", "true"), rule("b", "deny", `name == "x"`), rule("c", "allow", `"admins" in gruops`)}
		}, want: map[string]string{"policy.rules[2].when": "undeclared reference to 'gruops'"}},
		{name: "unknown effect", policy: func(p *PolicyConfig) { p.Rules = []PolicyRule{rule("a", "permit", "true")} },
			want: map[string]string{"policy.rules[0].effect": `"permit" is not allow or deny`}},
		{name: "duplicate and missing names", policy: func(p *PolicyConfig) {
			p.Rules = []PolicyRule{rule("a", "allow", "true"), rule("a", "deny", "true"), rule("", "deny", "true")}
		}, want: map[string]string{"policy.rules[1].name": "duplicate", "policy.rules[2].name": "required"}},
		{name: "claim not listed", policy: func(p *PolicyConfig) {
			p.Rules = []PolicyRule{rule("a", "allow", `claims.departmnet == "finance"`)}
		}, want: map[string]string{"policy.rules[0].when": "add it to policy.claims"}},
		{name: "type mismatch", policy: func(p *PolicyConfig) { p.Rules = []PolicyRule{rule("a", "allow", `email_verified == "true"`)} },
			want: map[string]string{"policy.rules[0].when": "no matching overload"}},
		{name: "never matches", policy: func(p *PolicyConfig) { p.Rules = []PolicyRule{rule("a", "deny", `sub == "x" && false`)} },
			want: map[string]string{"policy.rules[0].when": "can never match"}},
		{name: "bad default", policy: func(p *PolicyConfig) { p.Default = "permit" },
			want: map[string]string{"policy.default": `"permit" is not allow or deny`}},
		{name: "size caps", policy: func(p *PolicyConfig) { p.MaxBodyBytes, p.MaxListBytes = 0, -1 },
			want: map[string]string{"policy.max_body_bytes": "positive", "policy.max_list_bytes": "positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validOIDC()
			tt.policy(&c.Policy)
			err := c.Validate()
			var want []string
			for p := range tt.want {
				want = append(want, p)
			}
			slices.Sort(want)
			if got := errorPaths(t, err); !slices.Equal(got, want) {
				t.Fatalf("error paths %v, want %v (err: %v)", got, want, err)
			}
			for path, text := range tt.want {
				if fe := mustFieldError(t, err, path); !strings.Contains(fe.Msg, text) {
					t.Errorf("%q does not contain %q", fe, text)
				}
			}
		})
	}
}

// TestPolicyFromFileAndEnvironment: a policy given in the file or as YAML
// text in the environment is validated with the same field paths.
func TestPolicyFromFileAndEnvironment(t *testing.T) {
	oidc := []string{"OIDC_DISCOVERY_URL=https://idp.invalid", "OIDC_CLIENT_ID=mcp"}
	files := memFiles{"/p.yaml": "policy:\n  rules:\n    - name: ok\n      effect: allow\n      when: 'true'\n    - name: bad\n      effect: deny\n      when: 'name == gruops'\n"}
	l := mustLoad(t, Source{Args: []string{"--config", "/p.yaml"}, Env: oidc, ReadFile: files.ReadFile})
	if fe := mustFieldError(t, l.Config.Validate(), "policy.rules[1].when"); !strings.Contains(fe.Msg, "gruops") {
		t.Errorf("file: %v", fe)
	}
	env := append(slices.Clone(oidc), `MCP_OIDC_PROXY_POLICY_RULES=[{name: a, effect: allow, when: "claims.team == 'x'"}]`)
	l = mustLoad(t, Source{Env: env})
	if fe := mustFieldError(t, l.Config.Validate(), "policy.rules[0].when"); !strings.Contains(fe.Msg, `"team"`) {
		t.Errorf("environment: %v", fe)
	}
	l = mustLoad(t, Source{Env: append(env, "MCP_OIDC_PROXY_POLICY_CLAIMS=team")})
	if err := l.Config.Validate(); err != nil {
		t.Errorf("with policy.claims listing the claim: %v", err)
	}
}

// TestReloaderRefusesBadPolicy: a reload with a rule that does not compile
// is refused with its field path and the running policy is kept; a fixed
// one is applied.
func TestReloaderRefusesBadPolicy(t *testing.T) {
	withPolicy := func(when string) string {
		return configYAML("http://127.0.0.1:8080", "info", "a@x.test") +
			"policy:\n  rules:\n    - name: admins\n      effect: allow\n      when: '" + when + "'\n"
	}
	file, src := tempConfig(t, withPolicy(`"admins" in groups`))
	h := startReloader(t, src)

	writeAtomic(t, file, withPolicy(`"admins" in gruops`))
	h.waitLog(t, "reload refused")
	if n := len(h.applied); n != 0 {
		t.Fatalf("bad policy applied: %+v", <-h.applied)
	}
	refused := h.logs.FilterMessageSnippet("reload refused").All()
	err, _ := refused[0].Context[0].Interface.(error)
	if fe := mustFieldError(t, err, "policy.rules[0].when"); !strings.Contains(fe.Msg, "gruops") {
		t.Errorf("refusal: %v", fe)
	}

	writeAtomic(t, file, withPolicy(`"operators" in groups`))
	c := h.waitApply(t)
	if len(c.Policy.Rules) != 1 || c.Policy.Rules[0].When != `"operators" in groups` {
		t.Errorf("applied rules %+v", c.Policy.Rules)
	}
}

// TestREADMEPolicyExamples loads each YAML example of the README's Policies
// section as a configuration file, validates it, and checks it decides what
// the README says.
func TestREADMEPolicyExamples(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start, end := strings.Index(readme, "\n## Policies\n"), strings.Index(readme, "<!-- policies end -->")
	if start < 0 || end < start {
		t.Fatal("README has no Policies section ending in <!-- policies end -->")
	}
	var examples []string
	for _, block := range strings.Split(readme[start:end], "```yaml\n")[1:] {
		examples = append(examples, block[:strings.Index(block, "```")])
	}
	if len(examples) != 3 {
		t.Fatalf("README Policies section has %d YAML examples, want 3", len(examples))
	}

	type check struct {
		caller    mcppolicy.Caller
		req       mcppolicy.Request
		allow     bool
		rule      string
		listed    bool // Visible for req's method and name
		listedSet bool
	}
	user := mcppolicy.Caller{Subject: "u1", Email: "u1@example.com", Auth: mcppolicy.AuthCookie}
	admin := mcppolicy.Caller{Subject: "u2", Groups: []string{"mcp-admins"}, Auth: mcppolicy.AuthBearer, ClientID: "c"}
	finance := mcppolicy.Caller{Subject: "u3", Claims: map[string]any{"department": "finance"}, Auth: mcppolicy.AuthBearer}
	sales := mcppolicy.Caller{Subject: "u4", Claims: map[string]any{"department": "sales"}, Auth: mcppolicy.AuthCookie}
	tool := func(name string, args map[string]any) mcppolicy.Request {
		return mcppolicy.Request{Method: mcppolicy.MethodToolsCall, Name: name, Arguments: args}
	}
	checks := [][]check{
		{ // read-only tools for everyone
			{caller: user, req: tool("get_weather", nil), allow: true, rule: "read-only-tools", listed: true, listedSet: true},
			{caller: admin, req: tool("search_docs", nil), allow: true, rule: "read-only-tools"},
			{caller: user, req: tool("delete_file", nil), allow: false, rule: mcppolicy.DefaultRule, listed: false, listedSet: true},
			{caller: user, req: tool("forget_list_", nil), allow: false, rule: mcppolicy.DefaultRule},
			{caller: user, req: mcppolicy.Request{Method: mcppolicy.MethodPromptsGet, Name: "summary"}, allow: true, rule: "prompts-and-resources", listed: true, listedSet: true},
			{caller: user, req: mcppolicy.Request{Method: mcppolicy.MethodResourcesRead, Name: "file:///a"}, allow: true, rule: "prompts-and-resources"},
		},
		{ // admin tools for one group
			{caller: admin, req: tool("admin_reset", nil), allow: true, rule: "admins", listed: true, listedSet: true},
			{caller: user, req: tool("admin_reset", nil), allow: false, rule: "admin-tools", listed: false, listedSet: true},
			{caller: user, req: tool("get_weather", nil), allow: true, rule: mcppolicy.DefaultRule, listed: true, listedSet: true},
		},
		{ // a tool allowed only for a claim value
			{caller: finance, req: tool("run_payroll", map[string]any{"year": float64(2026)}), allow: true, rule: "payroll-for-finance", listed: true, listedSet: true},
			{caller: finance, req: tool("run_payroll", map[string]any{"year": float64(2025)}), allow: false, rule: "no-payroll-otherwise"},
			{caller: finance, req: tool("run_payroll", map[string]any{}), allow: false, rule: "no-payroll-otherwise"},
			{caller: sales, req: tool("run_payroll", map[string]any{"year": float64(2026)}), allow: false, rule: "no-payroll-otherwise", listed: false, listedSet: true},
			{caller: user, req: tool("run_payroll", map[string]any{"year": float64(2026)}), allow: false, rule: "no-payroll-otherwise", listed: false, listedSet: true},
			{caller: sales, req: tool("get_weather", nil), allow: true, rule: mcppolicy.DefaultRule, listed: true, listedSet: true},
		},
	}
	for i, example := range examples {
		files := memFiles{"/policy.yaml": example}
		l := mustLoad(t, Source{Args: []string{"--config", "/policy.yaml"}, Env: []string{"OIDC_DISCOVERY_URL=https://idp.invalid", "OIDC_CLIENT_ID=mcp"}, ReadFile: files.ReadFile})
		if err := l.Config.Validate(); err != nil {
			t.Fatalf("README example %d does not validate: %v\n%s", i+1, err, example)
		}
		p, err := CompilePolicy(&l.Config.Policy)
		if err != nil {
			t.Fatalf("README example %d: %v", i+1, err)
		}
		for _, c := range checks[i] {
			b := p.Bind(&c.caller)
			if d := b.Decide(&c.req); d.Allow != c.allow || d.Rule != c.rule || d.Err != nil {
				t.Errorf("example %d: %s %s by %s: Decide = %+v, want allow=%v rule=%s", i+1, c.req.Method, c.req.Name, c.caller.Subject, d, c.allow, c.rule)
			}
			if c.listedSet {
				if got := b.Visible(c.req.Method, c.req.Name); got != c.listed {
					t.Errorf("example %d: %s %s for %s: Visible = %v, want %v", i+1, c.req.Method, c.req.Name, c.caller.Subject, got, c.listed)
				}
			}
		}
	}
}
