package mcppolicy

import "testing"

// benchPolicy is a realistic policy: a deny by name, a group allow, an
// argument check and a claim check; the benchmarked requests fall through
// several rules before one decides.
func benchPolicy(b *testing.B) *Policy {
	return mustCompile(b, Options{Default: EffectDeny, Claims: []string{"department"}, Rules: []Rule{
		deny("no-delete", `name.startsWith("delete_")`),
		allow("admins", `"mcp-admins" in groups`),
		allow("payroll", `name == "run_payroll" && claims.?department.orValue("") == "finance" && has(arguments.year) && arguments.year >= 2026`),
		allow("reads", `method == "tools/call" && name.matches("^(get|list|search|read)_")`),
	}})
}

// BenchmarkDecide is the per-request cost once the caller is bound (a
// request decided by the last rule).
func BenchmarkDecide(b *testing.B) {
	bound := benchPolicy(b).Bind(ada())
	req := call("read_file", map[string]any{"path": "/srv/a", "limit": float64(10)})
	if d := bound.Decide(req); !d.Allow || d.Rule != "reads" {
		b.Fatalf("Decide = %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		bound.Decide(req)
	}
}

// BenchmarkBindDecide adds binding the caller, as for a single request.
func BenchmarkBindDecide(b *testing.B) {
	p := benchPolicy(b)
	c := ada()
	req := call("read_file", map[string]any{"path": "/srv/a", "limit": float64(10)})
	b.ReportAllocs()
	for b.Loop() {
		p.Bind(c).Decide(req)
	}
}

// BenchmarkVisible is the cost of one list item.
func BenchmarkVisible(b *testing.B) {
	bound := benchPolicy(b).Bind(ada())
	if !bound.Visible(MethodToolsCall, "run_payroll") {
		b.Fatal("run_payroll hidden")
	}
	b.ReportAllocs()
	for b.Loop() {
		bound.Visible(MethodToolsCall, "run_payroll")
	}
}

// BenchmarkCompile is the cost of a load or reload of a 4-rule policy.
func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchPolicy(b)
	}
}
