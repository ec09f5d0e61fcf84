package metrics

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
)

func TestMCPRequestsByMethodAndDecision(t *testing.T) {
	m := New("v1")
	c := m.MCPRequests()
	for _, r := range []struct{ method, decision, tool string }{
		{"tools/call", audit.DecisionAllowed, "search"},
		{"tools/call", audit.DecisionAllowed, "other_tool"},
		{"tools/call", audit.DecisionDenied, "delete"},
		{"tools/list", audit.DecisionUngoverned, ""},
		{"notifications/initialized", audit.DecisionUngoverned, ""},
		{"notifications/cancelled", audit.DecisionUngoverned, ""},
		{"evil/" + strings.Repeat("x", 100), audit.DecisionUngoverned, ""},
		{"sampling/createMessage", audit.DecisionUngoverned, ""},
		{"", audit.DecisionInvalid, ""},
		{"ping", "made-up", ""},
	} {
		c.Count(r.method, r.decision, r.tool)
	}
	want := map[[2]string]float64{
		{"tools/call", "allowed"}:      2,
		{"tools/call", "denied"}:       1,
		{"tools/list", "ungoverned"}:   1,
		{"notification", "ungoverned"}: 2,
		{"other", "ungoverned"}:        2,
		{"other", "invalid"}:           1,
		{"ping", "other"}:              1,
	}
	for l, w := range want {
		if got := testutil.ToFloat64(m.mcpRequests.vec.WithLabelValues(l[0], l[1])); got != w {
			t.Errorf("mcp_requests_total{method=%q,decision=%q} = %v, want %v", l[0], l[1], got, w)
		}
	}
	// No other series: unknown methods did not create their own.
	if n := testutil.CollectAndCount(m.mcpRequests.vec); n != len(want) {
		t.Errorf("%d series, want %d", n, len(want))
	}
	const exposition = `
# HELP mcp_oidc_proxy_mcp_requests_total MCP JSON-RPC requests by method (known MCP methods; notification for notifications/*; other for the rest) and decision (allowed, denied, ungoverned, invalid).
# TYPE mcp_oidc_proxy_mcp_requests_total counter
mcp_oidc_proxy_mcp_requests_total{decision="allowed",method="tools/call"} 2
mcp_oidc_proxy_mcp_requests_total{decision="denied",method="tools/call"} 1
mcp_oidc_proxy_mcp_requests_total{decision="invalid",method="other"} 1
mcp_oidc_proxy_mcp_requests_total{decision="other",method="ping"} 1
mcp_oidc_proxy_mcp_requests_total{decision="ungoverned",method="notification"} 2
mcp_oidc_proxy_mcp_requests_total{decision="ungoverned",method="other"} 2
mcp_oidc_proxy_mcp_requests_total{decision="ungoverned",method="tools/list"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(exposition), "mcp_oidc_proxy_mcp_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestMCPRequestsKnownMethodsKeepTheirName(t *testing.T) {
	m := New("v1")
	for _, method := range mcpMethods {
		m.MCPRequests().Count(method, audit.DecisionAllowed, "")
		if got := testutil.ToFloat64(m.mcpRequests.vec.WithLabelValues(method, "allowed")); got != 1 {
			t.Errorf("%s counted %v under its own name, want 1", method, got)
		}
	}
}

func TestMCPRequestsToolLabel(t *testing.T) {
	m := New("v1", WithMCPToolLabel(true))
	c := m.MCPRequests()
	c.Count("tools/call", audit.DecisionAllowed, "search_docs")
	c.Count("tools/call", audit.DecisionAllowed, "search_docs")
	c.Count("tools/call", audit.DecisionDenied, "ns.delete-repo")
	c.Count("tools/list", audit.DecisionUngoverned, "")
	c.Count("tools/call", audit.DecisionDenied, "bad name with spaces")
	c.Count("tools/call", audit.DecisionDenied, strings.Repeat("a", maxToolNameBytes+1))
	c.Count("tools/call", audit.DecisionDenied, "caf\u00e9")
	want := map[[3]string]float64{
		{"tools/call", "allowed", "search_docs"}:   2,
		{"tools/call", "denied", "ns.delete-repo"}: 1,
		{"tools/list", "ungoverned", ""}:           1,
		{"tools/call", "denied", "other"}:          3,
	}
	for l, w := range want {
		if got := testutil.ToFloat64(m.mcpRequests.vec.WithLabelValues(l[0], l[1], l[2])); got != w {
			t.Errorf("mcp_requests_total%v = %v, want %v", l, got, w)
		}
	}
	if n := testutil.CollectAndCount(m.mcpRequests.vec); n != len(want) {
		t.Errorf("%d series, want %d", n, len(want))
	}
}

// A client inventing tool names creates at most maxToolLabels series, even
// from many goroutines at once; names seen before the cap keep counting
// under their own label afterwards.
func TestMCPRequestsToolLabelCap(t *testing.T) {
	m := New("v1", WithMCPToolLabel(true))
	c := m.MCPRequests()
	c.Count("tools/call", audit.DecisionAllowed, "early")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				c.Count("tools/call", audit.DecisionAllowed, fmt.Sprintf("t%d_%d", g, i))
			}
		}()
	}
	wg.Wait()
	c.Count("tools/call", audit.DecisionAllowed, "early")
	if n := testutil.CollectAndCount(m.mcpRequests.vec); n != maxToolLabels+1 {
		t.Errorf("%d series, want %d distinct tools + other", n, maxToolLabels+1)
	}
	if got := testutil.ToFloat64(m.mcpRequests.vec.WithLabelValues("tools/call", "allowed", "early")); got != 2 {
		t.Errorf("early = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.mcpRequests.vec.WithLabelValues("tools/call", "allowed", "other")); got != 4*300-(maxToolLabels-1) {
		t.Errorf("other = %v, want %d", got, 4*300-(maxToolLabels-1))
	}
}

// Without the option the metric has no tool label at all.
func TestMCPRequestsNoToolLabelByDefault(t *testing.T) {
	m := New("v1")
	m.MCPRequests().Count("tools/call", audit.DecisionAllowed, "search")
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "mcp_oidc_proxy_mcp_requests_total" {
			continue
		}
		found = true
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if lp.GetName() == "tool" {
					t.Errorf("tool label present without the option")
				}
			}
		}
	}
	if !found {
		t.Error("mcp_oidc_proxy_mcp_requests_total not registered")
	}
}

// The audit logger counts into the real counter.
func TestAuditRecordCountsIntoMetric(t *testing.T) {
	m := New("v1")
	l := audit.New(audit.Options{Counter: m.MCPRequests()})
	l.Record(audit.Entry{Method: "tools/call", Name: "x", Decision: audit.DecisionDenied})
	if got := testutil.ToFloat64(m.mcpRequests.vec.WithLabelValues("tools/call", "denied")); got != 1 {
		t.Errorf("counted %v, want 1", got)
	}
}

func BenchmarkMCPRequestsCount(b *testing.B) {
	for _, withTool := range []bool{false, true} {
		b.Run(fmt.Sprintf("tool_label=%v", withTool), func(b *testing.B) {
			c := New("v1", WithMCPToolLabel(withTool)).MCPRequests()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.Count("tools/call", audit.DecisionAllowed, "search_docs")
				}
			})
		})
	}
}
