package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestIDSeq: every request of a numbered body gets the next id and is the
// captured body otherwise; a body that does not name its id once is
// refused.
func TestIDSeq(t *testing.T) {
	body := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bench"}}}`
	s, err := newIDSeq(body, json.RawMessage(`2`))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 3 {
		b, id := s.next()
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if err := json.Unmarshal([]byte(b), &m); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
		if string(m.ID) != string(id) || m.Method != "tools/call" || strings.Replace(b, `"id":`+string(id), `"id":2`, 1) != body {
			t.Errorf("body %q for id %s", b, id)
		}
		if seen[string(id)] {
			t.Errorf("id %s twice", id)
		}
		seen[string(id)] = true
	}
	if base := s.block(10); base != 3 {
		t.Errorf("block after 3 ids starts after %d, want 3", base)
	}
	if b, id := s.next(); string(id) != "14" || !strings.Contains(b, `"id":14,`) {
		t.Errorf("after a block of 10: %s %q", id, b)
	}
	for _, c := range []struct{ body, id string }{
		{`{"jsonrpc":"2.0","id":"a","method":"x"}`, `2`},
		{`{"id":2,"params":{"id":2}}`, `2`},
	} {
		if _, err := newIDSeq(c.body, json.RawMessage(c.id)); err == nil {
			t.Errorf("newIDSeq(%q, %s) accepted", c.body, c.id)
		}
	}
}

// TestWrkScriptIDs: with numbered ids the script builds each body in
// request() from the split body, every thread from its own block, and
// still prints the failure count.
func TestWrkScriptIDs(t *testing.T) {
	ids, err := newIDSeq(`{"id":7,"method":"tools/call","params":{"t":"]=]"}}`, json.RawMessage(`7`))
	if err != nil {
		t.Fatal(err)
	}
	path, err := wrkScript(options{work: t.TempDir(), threads: 2}, target{name: "x", body: `{"id":7,"method":"tools/call","params":{"t":"]=]"}}`, ids: ids})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`local head, tail = [==[{"id":]==], [==[,"method":"tools/call","params":{"t":"]=]"}}]==]`,
		`thread:set("next_id", 0 + #threads * 1000000000)`,
		"function request()", "head .. next_id .. tail", `"JSON-RPC failures: %d\n"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "wrk.body") {
		t.Errorf("a numbered script sets the static wrk.body:\n%s", s)
	}
	// Two threads took two blocks.
	if next := ids.block(1); next != 2*idsPerWrkThread {
		t.Errorf("after the script the ids continue at %d, want %d", next, 2*idsPerWrkThread)
	}
}

// TestParseHopCounts reads the hop counter by result and nothing else.
func TestParseHopCounts(t *testing.T) {
	text := `# HELP mcp_oidc_proxy_mcp_session_hops_total MCP session requests forwarded to their owner, by result.
# TYPE mcp_oidc_proxy_mcp_session_hops_total counter
mcp_oidc_proxy_mcp_session_hops_total{result="forwarded"} 1234
mcp_oidc_proxy_mcp_session_hops_total{result="owner_gone"} 2
mcp_oidc_proxy_mcp_session_hops_total_other{result="forwarded"} 9
mcp_oidc_proxy_requests_total{code="200"} 5
`
	got, err := parseHopCounts(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["forwarded"] != 1234 || got["owner_gone"] != 2 {
		t.Errorf("got %v", got)
	}
	if _, err := parseHopCounts(strings.NewReader(`mcp_oidc_proxy_mcp_session_hops_total{result="forwarded"} x` + "\n")); err == nil {
		t.Error("a sample without a number was accepted")
	}
}

// TestCheckHops: the run fails when B forwarded nothing, fewer than it
// answered or more than it could have, or when A hopped or B refused.
func TestCheckHops(t *testing.T) {
	cases := []struct {
		name    string
		a, b    map[string]float64
		wantErr string
	}{
		{"every answer forwarded", map[string]float64{}, map[string]float64{"forwarded": 100}, ""},
		{"and some in flight", nil, map[string]float64{"forwarded": 110}, ""},
		{"nothing forwarded", nil, map[string]float64{}, "B forwarded nothing"},
		{"fewer than answered", nil, map[string]float64{"forwarded": 99}, "answered 100"},
		{"more than sent", nil, map[string]float64{"forwarded": 111}, "at most 10 more"},
		{"A hopped", map[string]float64{"forwarded": 1}, map[string]float64{"forwarded": 100}, "A, the session's owner"},
		{"B refused", nil, map[string]float64{"forwarded": 100, "refused": 1}, `{result="refused"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hr := &hopResult{hopsA: c.a, hopsB: c.b, answeredB: 100, inFlightB: 10}
			err := hr.checkHops()
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("error %v, want one with %q", err, c.wantErr)
			}
		})
	}
}
