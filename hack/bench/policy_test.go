package main

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestChecks: the probe's checks accept exactly a JSON-RPC success with the
// expected content, and the load loops' cheap check agrees with them on
// denials and tool errors, so neither counts as throughput.
func TestChecks(t *testing.T) {
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	id := json.RawMessage(`3`)
	echo := `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"{\"text\":\"bench\"}"}],"structuredContent":{"text":"bench"}}}`
	list := `{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"},{"name":"countdown"}]}}`
	denied := `{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"denied by policy rule \"admin-tools\""}}`
	toolError := `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"boom"}],"isError":true}}`
	cases := []struct {
		name    string
		check   func(int, http.Header, []byte) error
		status  int
		header  http.Header
		body    string
		wantErr string // "" for accepted
		success bool   // jsonrpcSuccess's verdict
	}{
		{"echo", checkEcho(id), 200, jsonHeader, echo, "", true},
		{"echo with charset", checkEcho(id), 200, http.Header{"Content-Type": {"application/json; charset=utf-8"}}, echo, "", true},
		{"echo, other text", checkEcho(id), 200, jsonHeader, strings.ReplaceAll(echo, "bench", "other"), "want the text", true},
		{"echo, denied", checkEcho(id), 200, jsonHeader, denied, "JSON-RPC error -32602", false},
		{"echo, tool error", checkEcho(id), 200, jsonHeader, toolError, "fails the load loops' check", false},
		{"echo, other id", checkEcho(json.RawMessage(`4`)), 200, jsonHeader, echo, "for id 4", true},
		{"echo, 403", checkEcho(id), 403, jsonHeader, `{}`, "want 200", false},
		// What a replica answers for a session it cannot serve (its owner
		// gone, or a refused id): the session hop scenario must fail on it.
		{"echo, session not found", checkEcho(id), 404, jsonHeader, `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}`, "want 200", false},
		{"echo, SSE", checkEcho(id), 200, http.Header{"Content-Type": {"text/event-stream"}}, "data: " + echo + "\n\n", "want application/json", true},
		// The cheap check does not parse: the probe catches a truncated answer.
		{"echo, not JSON", checkEcho(id), 200, jsonHeader, `{"result":`, "not JSON-RPC", true},
		{"list", checkList(id, []string{"countdown", "echo"}), 200, jsonHeader, list, "", true},
		{"list, unfiltered", checkList(id, []string{"echo"}), 200, jsonHeader, list, "shows [countdown echo], want [echo]", true},
		{"list, no result", checkList(id, nil), 200, jsonHeader, `{"jsonrpc":"2.0","id":3}`, "has no result", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.check(c.status, c.header, []byte(c.body))
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("error %v, want one containing %q", err, c.wantErr)
			}
			if got := jsonrpcSuccess([]byte(c.body)); got != c.success {
				t.Errorf("jsonrpcSuccess = %v, want %v", got, c.success)
			}
		})
	}
}

// TestWrkScript: the body goes into a Lua long bracket whose level it does
// not contain, and the script prints the failure count runWrk reads.
func TestWrkScript(t *testing.T) {
	for _, body := range []string{`{"a":"b"}`, `{"a":"]=]"}`, `{"a":"]=] ]==]"}`} {
		path, err := wrkScript(options{work: t.TempDir(), threads: 1}, target{name: "x", body: body})
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		start := strings.Index(s, "wrk.body = [")
		if start < 0 {
			t.Fatalf("no wrk.body in\n%s", s)
		}
		open := s[start+len("wrk.body = "):]
		level := open[1 : strings.Index(open[1:], "[")+1]
		if strings.Trim(level, "=") != "" {
			t.Fatalf("bracket %q in\n%s", level, s)
		}
		inner := open[len(level)+2:]
		end := strings.Index(inner, "]"+level+"]")
		if end < 0 || inner[:end] != body {
			t.Errorf("body %q came out as %q", body, inner[:max(end, 0)])
		}
		if !strings.Contains(s, `"JSON-RPC failures: %d\n"`) || !failedRe.MatchString("JSON-RPC failures: 0\n") {
			t.Errorf("the script's failure line and failedRe disagree:\n%s", s)
		}
	}
}

// TestPolicyRulesFlag: the rules go to --policy-rules as JSON without HTML
// escaping, four rules with the names the report shows.
func TestPolicyRulesFlag(t *testing.T) {
	v, err := policyRulesFlag()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, `\u0026`) || !strings.Contains(v, `&&`) {
		t.Errorf("flag value escapes &&: %s", v)
	}
	var rules []benchRule
	if err := json.Unmarshal([]byte(v), &rules); err != nil {
		t.Fatal(err)
	}
	if len(rules) != 4 || rules[0].Name != "admin-tools" || rules[3].Effect != "allow" {
		t.Errorf("rules %+v", rules)
	}
}
