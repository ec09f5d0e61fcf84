package mcppolicy

import (
	"encoding/json"
	"strings"
	"testing"
)

func mustCompile(t testing.TB, opts Options) *Policy {
	t.Helper()
	p, err := Compile(opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

// ada is a bearer caller with every variable set.
func ada() *Caller {
	return &Caller{
		Subject: "u-ada", Email: "ada@example.com", EmailVerified: true, Name: "Ada Lovelace", Username: "ada",
		Groups: []string{"engineering", "mcp-users"},
		Claims: map[string]any{
			"sub": "raw-sub-is-overridden", "department": "finance", "level": float64(3),
			"roles": []any{"reader", "writer"}, "org": map[string]any{"id": "acme"},
		},
		ClientID: "claude-desktop", Scopes: []string{"openid", "mcp.write"}, Auth: AuthBearer,
	}
}

// bob is a cookie caller with little about him.
func bob() *Caller {
	return &Caller{Subject: "u-bob", Email: "bob@example.org", Auth: AuthCookie}
}

func call(name string, args map[string]any) *Request {
	return &Request{Method: MethodToolsCall, Name: name, Arguments: args}
}

// TestVariables proves each variable holds what the documentation says, for
// a bearer and a cookie caller: a rule that tests it allows, its negation
// falls to the default (deny).
func TestVariables(t *testing.T) {
	tests := []struct {
		when   string
		caller func() *Caller
		req    *Request
	}{
		{`sub == "u-ada"`, ada, call("t", nil)},
		{`email == "ada@example.com"`, ada, call("t", nil)},
		{`email_verified`, ada, call("t", nil)},
		{`!email_verified`, bob, call("t", nil)},
		{`groups == ["engineering", "mcp-users"]`, ada, call("t", nil)},
		{`"mcp-users" in groups`, ada, call("t", nil)},
		{`groups == [] && size(groups) == 0`, bob, call("t", nil)},
		{`claims.sub == "u-ada"`, ada, call("t", nil)}, // the standard claim wins over a raw one
		{`claims.email == email && claims.email_verified == true`, ada, call("t", nil)},
		{`claims.name == "Ada Lovelace" && claims.preferred_username == "ada"`, ada, call("t", nil)},
		{`claims.groups == groups`, ada, call("t", nil)},
		{`claims.name == "" && claims.preferred_username == "" && claims.groups == []`, bob, call("t", nil)},
		{`claims.department == "finance"`, ada, call("t", nil)},
		{`claims.level == 3 && claims.level >= 2`, ada, call("t", nil)}, // JSON numbers are doubles
		{`"writer" in claims.roles && claims.org.id == "acme"`, ada, call("t", nil)},
		{`!has(claims.department) && claims.?department.orValue("none") == "none"`, bob, call("t", nil)},
		{`client_id == "claude-desktop"`, ada, call("t", nil)},
		{`client_id == ""`, bob, call("t", nil)},
		{`scopes == ["openid", "mcp.write"]`, ada, call("t", nil)},
		{`scopes == []`, bob, call("t", nil)},
		{`auth == "bearer"`, ada, call("t", nil)},
		{`auth == "cookie"`, bob, call("t", nil)},
		{`method == "tools/call" && name == "read_file"`, ada, call("read_file", nil)},
		{`method == "prompts/get" && name == "summary"`, ada, &Request{Method: MethodPromptsGet, Name: "summary", Arguments: map[string]any{"lang": "en"}}},
		{`method == "resources/read" && name == "file:///srv/a.txt" && arguments == {}`, ada, &Request{Method: MethodResourcesRead, Name: "file:///srv/a.txt"}},
		{`arguments.path.startsWith("/srv/") && arguments.limit <= 100 && arguments.opts.deep == true`, ada,
			call("read_file", map[string]any{"path": "/srv/x", "limit": float64(10), "opts": map[string]any{"deep": true}})},
		{`size(arguments) == 0`, ada, call("t", nil)},
		{`arguments.limit == 10 && arguments.limit < 10.5 && arguments.ratio > 0.25 && arguments.big > 1e300`, ada, // json.Number (UseNumber)
			call("t", map[string]any{"limit": json.Number("10"), "ratio": json.Number("0.5"), "big": json.Number("1e301")})},
		{`claims.level == 3 && claims.nested.n == 2 && claims.nested.l[0] == 1`, func() *Caller {
			c := bob()
			c.Claims = map[string]any{"level": json.Number("3"), "nested": map[string]any{"n": json.Number("2"), "l": []any{json.Number("1")}}}
			return c
		}, call("t", nil)},
		{`name.lowerAscii() == "read" && sets.intersects(groups, ["x", "engineering"])`, ada, call("READ", nil)},
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			p := mustCompile(t, Options{Rules: []Rule{allow("it", tt.when)}, Default: EffectDeny, Claims: []string{"department", "level", "roles", "org", "nested"}})
			if d := p.Decide(tt.caller(), tt.req); !d.Allow || d.Rule != "it" || d.Err != nil {
				t.Errorf("Decide = %+v, want allowed by rule it", d)
			}
			neg := mustCompile(t, Options{Rules: []Rule{allow("it", "!("+tt.when+")")}, Default: EffectDeny, Claims: []string{"department", "level", "roles", "org", "nested"}})
			if d := neg.Decide(tt.caller(), tt.req); d.Allow || d.Rule != DefaultRule || d.Err != nil {
				t.Errorf("negated: Decide = %+v, want the default deny", d)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	rules := []Rule{
		deny("no-delete", `name.startsWith("delete_")`),
		allow("engineers", `"engineering" in groups`),
		deny("never-shell", `name == "shell"`), // after engineers: engineers still get shell
		allow("small-reads", `name == "read_file" && arguments.limit <= 10`),
	}
	tests := []struct {
		name      string
		def       string
		caller    *Caller
		req       *Request
		wantAllow bool
		wantRule  string
		wantErr   string
	}{
		{"first match denies", EffectAllow, ada(), call("delete_repo", nil), false, "no-delete", ""},
		{"first match allows", EffectDeny, ada(), call("shell", nil), true, "engineers", ""},
		{"a later rule decides", EffectAllow, bob(), call("shell", nil), false, "never-shell", ""},
		{"default deny", EffectDeny, bob(), call("write_file", nil), false, DefaultRule, ""},
		{"default allow", EffectAllow, bob(), call("write_file", nil), true, DefaultRule, ""},
		{"arguments allow", EffectDeny, bob(), call("read_file", map[string]any{"limit": float64(5)}), true, "small-reads", ""},
		{"arguments do not allow", EffectDeny, bob(), call("read_file", map[string]any{"limit": float64(50)}), false, DefaultRule, ""},
		{"missing argument fails closed", EffectAllow, bob(), call("read_file", map[string]any{}), false, "small-reads", "no such key"},
		{"ungoverned method passes", EffectDeny, bob(), &Request{Method: "tools/list"}, true, "", ""},
		{"initialize passes", EffectDeny, bob(), &Request{Method: "initialize"}, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, Options{Rules: rules, Default: tt.def})
			d := p.Decide(tt.caller, tt.req)
			if d.Allow != tt.wantAllow || d.Rule != tt.wantRule {
				t.Errorf("Decide = %+v, want allow=%v rule=%q", d, tt.wantAllow, tt.wantRule)
			}
			switch {
			case tt.wantErr == "" && d.Err != nil:
				t.Errorf("Decide error %v", d.Err)
			case tt.wantErr != "" && (d.Err == nil || !strings.Contains(d.Err.Error(), tt.wantErr)):
				t.Errorf("Decide error %v, want one containing %q", d.Err, tt.wantErr)
			}
		})
	}
}

// TestDecideFailsClosedOnCost: a rule that exceeds the runtime cost limit
// denies, with the error, even under a default allow; the rules after it
// are not consulted.
func TestDecideFailsClosedOnCost(t *testing.T) {
	p := mustCompile(t, Options{Default: EffectAllow, Rules: []Rule{
		// One pass over a list argument: accepted at load, too costly for a
		// large list at run time.
		deny("no-secret", `arguments.items.exists(x, x.contains("secret"))`),
		allow("everything", "true"),
	}})
	items := make([]any, 200)
	for i := range items {
		items[i] = strings.Repeat("a", 100_000)
	}
	d := p.Decide(bob(), call("t", map[string]any{"items": items}))
	if d.Allow || d.Rule != "no-secret" || d.Err == nil || !strings.Contains(d.Err.Error(), "cost limit") {
		t.Errorf("Decide = %+v, want a denial by no-secret for the cost limit", d)
	}
	if d := p.Decide(bob(), call("t", map[string]any{"items": []any{"a", "b"}})); !d.Allow || d.Rule != "everything" {
		t.Errorf("small input: Decide = %+v, want allowed by everything", d)
	}
}

// TestDecideFailsClosedOnCallerCost: the caller's data is bounded the same
// way (a token with a huge groups claim cannot make a rule run long).
func TestDecideFailsClosedOnCallerCost(t *testing.T) {
	p := mustCompile(t, Options{Default: EffectAllow, Rules: []Rule{deny("no-interns", `"interns" in groups`)}})
	c := bob()
	c.Groups = make([]string, 2*RuntimeCostLimit)
	d := p.Decide(c, call("t", nil))
	if d.Allow || d.Rule != "no-interns" || d.Err == nil || !strings.Contains(d.Err.Error(), "cost limit") {
		t.Errorf("Decide = %+v, want a denial by no-interns for the cost limit", d)
	}
	if p.Bind(c).Visible(MethodToolsCall, "t") {
		t.Error("Visible = true for a rule that exceeds the cost limit")
	}
}

func TestVisible(t *testing.T) {
	rules := []Rule{
		deny("no-delete", `name.startsWith("delete_")`),
		deny("no-root", `name == "read_file" && arguments.path == "/"`),
		allow("small-reads", `name == "read_file" && arguments.limit <= 10`),
		allow("admins", `"mcp-admins" in groups`),
		deny("no-big-writes", `name == "write_file" && size(arguments.data) > 100`),
		allow("missing-claim", `name == "broken" && claims.missing == "x"`),
		allow("read-prompts", `method == "prompts/get" && name == "summary"`),
	}
	admin := bob()
	admin.Groups = []string{"mcp-admins"}
	tests := []struct {
		name   string
		def    string
		caller *Caller
		method string
		item   string
		want   bool
	}{
		{"denied outright is hidden", EffectAllow, admin, MethodToolsCall, "delete_repo", false},
		{"allowed with certain arguments stays listed", EffectDeny, bob(), MethodToolsCall, "read_file", true},
		{"allowed outright", EffectDeny, admin, MethodToolsCall, "write_file", true},
		{"no rule matches: default deny hides", EffectDeny, bob(), MethodToolsCall, "write_file", false},
		{"deny on arguments only, default allow shows", EffectAllow, bob(), MethodToolsCall, "write_file", true},
		{"no rule matches: default allow shows", EffectAllow, bob(), MethodToolsCall, "list_files", true},
		{"evaluation error hides", EffectAllow, bob(), MethodToolsCall, "broken", false},
		{"method is the listed one", EffectDeny, bob(), MethodPromptsGet, "summary", true},
		{"same name, other method", EffectDeny, bob(), MethodToolsCall, "summary", false},
		{"ungoverned method shows", EffectDeny, bob(), "tools/list", "anything", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustCompile(t, Options{Rules: rules, Default: tt.def, Claims: []string{"missing"}})
			if got := p.Bind(tt.caller).Visible(tt.method, tt.item); got != tt.want {
				t.Errorf("Visible(%s, %s) = %v, want %v", tt.method, tt.item, got, tt.want)
			}
		})
	}
}

// TestVisibleAgreesWithDecide: when a rule does not read arguments, an item
// is listed exactly when calling it is allowed.
func TestVisibleAgreesWithDecide(t *testing.T) {
	p := mustCompile(t, Options{Default: EffectDeny, Rules: []Rule{
		deny("no-delete", `name.startsWith("delete_")`),
		allow("reads", `name.startsWith("read_") || name.startsWith("list_")`),
		allow("engineers", `"engineering" in groups && auth == "bearer"`),
	}})
	for _, c := range []*Caller{ada(), bob()} {
		b := p.Bind(c)
		for _, tool := range []string{"read_file", "list_dir", "delete_repo", "write_file", "shell"} {
			d := b.Decide(call(tool, nil))
			if v := b.Visible(MethodToolsCall, tool); v != d.Allow {
				t.Errorf("%s, %s: Visible %v, Decide %+v", c.Subject, tool, v, d)
			}
		}
	}
}

func TestGoverned(t *testing.T) {
	for _, m := range []string{MethodToolsCall, MethodPromptsGet, MethodResourcesRead} {
		if !Governed(m) {
			t.Errorf("Governed(%q) = false", m)
		}
	}
	for _, m := range []string{"tools/list", "initialize", "ping", "resources/subscribe", "completion/complete", ""} {
		if Governed(m) {
			t.Errorf("Governed(%q) = true", m)
		}
	}
}

// TestBoundConcurrent: one Bound serves a batch's requests and a list's
// items from several goroutines (run with -race).
func TestBoundConcurrent(t *testing.T) {
	p := mustCompile(t, Options{Default: EffectDeny, Rules: []Rule{
		allow("engineers", `"engineering" in groups && has(arguments.path) && arguments.path.startsWith("/srv/")`),
	}})
	b := p.Bind(ada())
	errs := make(chan string, 16)
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 50; i++ {
				if d := b.Decide(call("t", map[string]any{"path": "/srv/x"})); !d.Allow {
					errs <- "allowed call denied"
					return
				}
				if d := b.Decide(call("t", map[string]any{"path": "/etc"})); d.Allow {
					errs <- "denied call allowed"
					return
				}
				if !b.Visible(MethodToolsCall, "t") {
					errs <- "tool hidden"
					return
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
