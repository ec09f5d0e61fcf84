package mcpguard_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
)

// v2025_03 is the last protocol version with JSON-RPC batches; SDK
// v1.8.0 refuses batches (HTTP 400) for 2025-06-18 and later.
var v2025_03 = map[string]string{"Mcp-Protocol-Version": "2025-03-26"}

func batchAnswers(t *testing.T, body string) map[string]rpcError {
	t.Helper()
	body = sseJSON(body)
	var msgs []rpcError
	if err := json.Unmarshal([]byte(body), &msgs); err != nil {
		t.Fatalf("not a JSON array: %s", body)
	}
	out := map[string]rpcError{}
	for _, m := range msgs {
		if _, dup := out[string(m.ID)]; dup {
			t.Fatalf("two answers for id %s: %s", m.ID, body)
		}
		out[string(m.ID)] = m
	}
	return out
}

// sseJSON turns the data of an SSE body's message events into one JSON
// array; a JSON body is returned as is.
func sseJSON(body string) string {
	if !strings.Contains(body, "data:") {
		return body
	}
	var parts []string
	for _, line := range strings.Split(body, "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok && d != "" {
			if strings.HasPrefix(d, "[") {
				parts = append(parts, d[1:len(d)-1])
			} else {
				parts = append(parts, d)
			}
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// TestBatches sends batches to the real SDK server with protocol version
// 2025-03-26, the only one it accepts batches for, answering in JSON and
// in SSE.
func TestBatches(t *testing.T) {
	for _, mode := range []serverMode{{stateless: true, json: true}, {stateless: true}} {
		name := "SSE"
		if mode.json {
			name = "JSON"
		}
		t.Run(name, func(t *testing.T) {
			u := newUpstream(t, mode)
			t.Run("mixed", func(t *testing.T) {
				before := len(u.reached())
				body := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ok"}}},` +
					`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami"}},` +
					`{"jsonrpc":"2.0","id":3,"method":"tools/list"}]`
				resp, out := post(t, u, "bob", body, map[string]string{"Mcp-Protocol-Version": "2025-03-26", "X-Test-Req": "mixed"})
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, out)
				}
				got := batchAnswers(t, out)
				if len(got) != 3 || got["1"].Error != nil || got["3"].Error != nil || got["2"].Error == nil || got["2"].Error.Code != -32602 {
					t.Fatalf("answers %s", out)
				}
				var list struct {
					Tools []struct {
						Name string `json:"name"`
					} `json:"tools"`
					CacheScope string `json:"cacheScope"`
				}
				if err := json.Unmarshal(got["3"].Result, &list); err != nil || len(list.Tools) != 2 || list.Tools[0].Name != "echo" || list.Tools[1].Name != "gate" || list.CacheScope != "private" {
					t.Fatalf("bob's tools/list in the batch: %s (%v)", got["3"].Result, err)
				}
				t.Logf("answer: %s", out)
				reached := u.reached()[before:]
				if len(reached) != 1 || strings.Contains(reached[0], "whoami") || !strings.HasPrefix(reached[0], `[{"jsonrpc":"2.0","id":1,`) {
					t.Fatalf("forwarded %q, want the allowed subset as a batch", reached)
				}
				want := map[string]string{"echo": audit.DecisionAllowed, "whoami": audit.DecisionDenied, "": audit.DecisionUngoverned}
				entries := u.rec.waitFor(t, "req-mixed", func(e []audit.Entry) bool { return len(e) >= 3 })
				if len(entries) != 3 {
					t.Fatalf("audit entries %+v, want 3", entries)
				}
				for _, e := range entries {
					if want[e.Name] != e.Decision {
						t.Fatalf("entry %+v: decision %q, want %q", e, e.Decision, want[e.Name])
					}
				}
			})
			t.Run("all denied", func(t *testing.T) {
				before := len(u.reached())
				body := `[{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"whoami"}},{"jsonrpc":"2.0","id":"b","method":"prompts/get","params":{"name":"p"}}]`
				resp, out := post(t, u, "bob", body, v2025_03)
				got := batchAnswers(t, out)
				if resp.StatusCode != 200 || len(got) != 2 || got[`"a"`].Error.Code != -32602 || !strings.Contains(got[`"b"`].Error.Message, `prompt "p"`) {
					t.Fatalf("status %d answers %s", resp.StatusCode, out)
				}
				if n := len(u.reached()) - before; n != 0 {
					t.Fatalf("%d bodies reached the server", n)
				}
			})
			t.Run("notification and denial", func(t *testing.T) {
				body := `[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}},{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"whoami"}}]`
				resp, out := post(t, u, "bob", body, v2025_03)
				got := batchAnswers(t, out)
				if resp.StatusCode != 200 || len(got) != 1 || got["5"].Error == nil || got["5"].Error.Code != -32602 {
					t.Fatalf("status %d answers %s", resp.StatusCode, out)
				}
			})
		})
	}
}

// TestSDKRefusesModernBatches records what SDK v1.8.0 does with a batch
// for 2025-06-18 and later: it refuses it with 400, so the guard's
// batch handling only matters for 2025-03-26 clients and other servers.
func TestSDKRefusesModernBatches(t *testing.T) {
	u := newUpstream(t, serverMode{stateless: true, json: true})
	body := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ok"}}}]`
	resp, out := post(t, u, "bob", body, map[string]string{"Mcp-Protocol-Version": "2025-06-18"})
	if resp.StatusCode != 400 || !strings.Contains(out, "batching is not supported") {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
}
