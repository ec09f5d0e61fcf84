package mcpguard_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpguard"
)

// TestBodyOnlyWithPost: while a policy is on, a body sent with any method
// but POST is refused (400, JSON-RPC -32600, one audit entry) and never
// reaches the next handler: the guard decides POST bodies only, and a
// server honouring a method override, or matching methods ignoring case,
// would run what such a body holds. Without a body, those methods pass;
// with no policy, nothing is looked at.
func TestBodyOnlyWithPost(t *testing.T) {
	const call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}`
	var mu sync.Mutex
	var reached []string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reached = append(reached, r.Method+" "+string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	rec := &recorder{}
	g := mcpguard.New(mcpguard.Options{Recorder: rec})
	srv := httptest.NewServer(authenticate(g.Wrap(next)))
	t.Cleanup(srv.Close)

	for _, tt := range []struct {
		name, method, body string
		chunked, policy    bool
		refused            bool
	}{
		{name: "GET with a body", method: http.MethodGet, body: call, policy: true, refused: true},
		{name: "GET with a chunked body", method: http.MethodGet, body: call, chunked: true, policy: true, refused: true},
		{name: "DELETE with a body", method: http.MethodDelete, body: call, policy: true, refused: true},
		{name: "PUT with a body", method: http.MethodPut, body: call, policy: true, refused: true},
		{name: "lower-case post", method: "post", body: call, policy: true, refused: true},
		{name: "GET without a body", method: http.MethodGet, policy: true},
		{name: "DELETE without a body", method: http.MethodDelete, policy: true},
		{name: "GET with a body, no policy", method: http.MethodGet, body: call},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var pol mcpguard.Policy
			if tt.policy {
				pol = policy
			}
			g.Set(mcpguard.Settings{Policy: pol})
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
				if tt.chunked {
					body = io.MultiReader(body) // unknown length: sent chunked
				}
			}
			req, err := http.NewRequest(tt.method, srv.URL, body)
			if err != nil {
				t.Fatal(err)
			}
			rid := strings.ReplaceAll(tt.name, " ", "-")
			req.Header.Set("X-Test-User", "alice")
			req.Header.Set("X-Test-Req", rid)
			mu.Lock()
			before := len(reached)
			mu.Unlock()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			mu.Lock()
			got := reached[before:]
			mu.Unlock()
			if !tt.refused {
				if resp.StatusCode != http.StatusNoContent || len(got) != 1 || got[0] != tt.method+" "+tt.body {
					t.Fatalf("%d %s, reached %q; want it passed on unchanged", resp.StatusCode, b, got)
				}
				return
			}
			if len(got) != 0 {
				t.Fatalf("the refused request reached the next handler: %q", got)
			}
			var e struct {
				ID    json.RawMessage `json:"id"`
				Error struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(b, &e) != nil || e.Error.Code != mcpguard.CodeInvalidRequest || string(e.ID) != "null" {
				t.Fatalf("%d %s, want 400 with JSON-RPC error -32600 and id null", resp.StatusCode, b)
			}
			entries := rec.waitFor(t, "req-"+rid, func(e []audit.Entry) bool { return len(e) > 0 })
			if len(entries) != 1 || entries[0].Decision != audit.DecisionInvalid || entries[0].Subject != "alice" {
				t.Fatalf("audit entries %+v, want one invalid entry for alice", entries)
			}
		})
	}
}

// TestEveryContentEncodingCounts: a body is refused (415) when any
// Content-Encoding line or list item names a coding other than identity,
// not only the first line, which Header.Get returns.
func TestEveryContentEncodingCounts(t *testing.T) {
	const call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}}`
	var mu sync.Mutex
	reached := 0
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	g := mcpguard.New(mcpguard.Options{})
	g.Set(mcpguard.Settings{Policy: policy})
	srv := httptest.NewServer(authenticate(g.Wrap(next)))
	t.Cleanup(srv.Close)
	for _, tt := range []struct {
		name     string
		encoding []string
		status   int
	}{
		{name: "none", status: http.StatusNoContent},
		{name: "identity", encoding: []string{"identity"}, status: http.StatusNoContent},
		{name: "IDENTITY, identity", encoding: []string{"IDENTITY, identity"}, status: http.StatusNoContent},
		{name: "gzip", encoding: []string{"gzip"}, status: http.StatusUnsupportedMediaType},
		{name: "identity, gzip in one line", encoding: []string{"identity, gzip"}, status: http.StatusUnsupportedMediaType},
		{name: "identity, then br in a second line", encoding: []string{"identity", "br"}, status: http.StatusUnsupportedMediaType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(call))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Test-User", "bob")
			req.Header.Set("Content-Type", "application/json")
			req.Header["Content-Encoding"] = tt.encoding
			mu.Lock()
			before := reached
			mu.Unlock()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			mu.Lock()
			got := reached - before
			mu.Unlock()
			if resp.StatusCode != tt.status || (got == 1) != (tt.status == http.StatusNoContent) {
				t.Fatalf("%d %s, reached %d time(s); want %d", resp.StatusCode, b, got, tt.status)
			}
		})
	}
}
