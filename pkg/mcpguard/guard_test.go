package mcpguard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpguard"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppolicy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// fakePolicy allows each subject the names listed for it.
type fakePolicy map[string][]string

func (p fakePolicy) Bind(c *mcppolicy.Caller) mcpguard.Binding {
	return fakeBinding{names: p[c.Subject], sub: c.Subject}
}

type fakeBinding struct {
	names []string
	sub   string
}

func (b fakeBinding) Decide(r *mcppolicy.Request) mcppolicy.Decision {
	if slices.Contains(b.names, r.Name) {
		return mcppolicy.Decision{Allow: true, Rule: "allow-" + b.sub}
	}
	return mcppolicy.Decision{Rule: mcppolicy.DefaultRule}
}

func (b fakeBinding) Visible(method, name string) bool { return slices.Contains(b.names, name) }

// recorder is a fake audit logger.
type recorder struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (r *recorder) Record(e audit.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
}

// waitFor polls until ok holds for the entries with the request id rid
// ("" for all) and returns them: an entry is recorded when the guard's
// handler returns, which can be just after the client read the answer.
func (r *recorder) waitFor(t *testing.T, rid string, ok func([]audit.Entry) bool) []audit.Entry {
	t.Helper()
	var e []audit.Entry
	waitfor.Poll(5*time.Second, 5*time.Millisecond, func() bool {
		e = e[:0]
		for _, x := range r.all() {
			if rid == "" || x.RequestID == rid {
				e = append(e, x)
			}
		}
		return ok(e)
	})
	return e
}

func (r *recorder) all() []audit.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

// policy: alice may use everything, bob only echo, the gate, the greeting
// prompt and the public resources.
var policy = fakePolicy{
	"alice": {"whoami", "echo", "countdown", "ticks", "gate", "greeting", "secret-prompt", "file:///public.txt", "file:///secret.txt",
		"file:///public/{name}", "file:///secret/{name}"},
	"bob": {"echo", "gate", "greeting", "file:///public.txt", "file:///public/{name}"},
}

// upstream is the real SDK server behind httputil.ReverseProxy, with the
// guard in front and a test header standing in for authentication.
type upstream struct {
	url   string
	rec   *recorder
	guard *mcpguard.Guard
	mu    sync.Mutex
	// bodies are the POST bodies that reached the SDK server.
	bodies []string
	gate   chan struct{}
}

func (u *upstream) reached() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.bodies)
}

type serverMode struct {
	stateless, json bool
}

func newUpstream(t *testing.T, mode serverMode) *upstream {
	t.Helper()
	u := &upstream{rec: &recorder{}, gate: make(chan struct{})}
	s := mcpserver.NewServer()
	// gate sends a progress notification, then waits until the client
	// has seen it: a guard holding the stream would deadlock it.
	mcp.AddTool(s, &mcp.Tool{Name: "gate", Description: "waits for the client"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, struct{}, error) {
			if tok := req.Params.GetProgressToken(); tok != nil {
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: 1, Message: "waiting"}); err != nil {
					return nil, struct{}{}, err
				}
				select {
				case <-u.gate:
				case <-ctx.Done():
					return nil, struct{}{}, ctx.Err()
				case <-time.After(10 * time.Second):
					return nil, struct{}{}, context.DeadlineExceeded
				}
			}
			return nil, struct{}{}, nil
		})
	for _, name := range []string{"greeting", "secret-prompt"} {
		s.AddPrompt(&mcp.Prompt{Name: name}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: name}}}}, nil
		})
	}
	for _, uri := range []string{"file:///public.txt", "file:///secret.txt"} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, Text: uri}}}, nil
		})
	}
	u.serve(t, s, mode)
	return u
}

// serve puts the SDK server s behind a reverse proxy with the guard in
// front, recording the POST bodies that reach s.
func (u *upstream) serve(t *testing.T, s *mcp.Server, mode serverMode) {
	t.Helper()
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{Stateless: mode.stateless, JSONResponse: mode.json})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			u.mu.Lock()
			u.bodies = append(u.bodies, string(b))
			u.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		sdk.ServeHTTP(w, r)
	}))
	t.Cleanup(backend.Close)
	target, _ := url.Parse(backend.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	u.guard = mcpguard.New(mcpguard.Options{Recorder: u.rec})
	u.guard.Set(mcpguard.Settings{Policy: policy, MaxBodyBytes: 4096, MaxListBytes: 1 << 20})
	front := httptest.NewServer(authenticate(u.guard.Wrap(rp)))
	t.Cleanup(front.Close)
	u.url = front.URL
}

// authenticate plays the authentication middleware: X-Test-User names the
// caller.
func authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if sub := r.Header.Get("X-Test-User"); sub != "" {
			ctx = identity.NewContext(ctx, &identity.Identity{Subject: sub, Email: sub + "@example.com", Method: "cookie"})
		}
		ctx = requestid.NewContext(ctx, "req-"+r.Header.Get("X-Test-Req"))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

type userTransport struct{ user string }

func (t userTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Test-User", t.user)
	return http.DefaultTransport.RoundTrip(r)
}

func connect(t *testing.T, u *upstream, user, version string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &mcp.StreamableClientTransport{Endpoint: u.url, HTTPClient: &http.Client{Transport: userTransport{user}}}
	var so *mcp.ClientSessionOptions
	if version != "" {
		so = &mcp.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-" + user, Version: "v1"}, opts).Connect(ctx, tr, so)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// generations are the protocol generations and response kinds every SDK
// test runs: 2026-07-28 against a stateless server (the SDK client's
// default), 2025-11-25 against a stateful one, each with SSE and JSON
// responses.
var generations = []struct {
	name    string
	mode    serverMode
	version string
}{
	{"2026-07-28 SSE", serverMode{stateless: true}, ""},
	{"2026-07-28 JSON", serverMode{stateless: true, json: true}, ""},
	{"2025-11-25 SSE", serverMode{}, "2025-11-25"},
	{"2025-11-25 JSON", serverMode{json: true}, "2025-11-25"},
}

// TestSDKClients runs the SDK client through the guard for both protocol
// generations and both response kinds.
func TestSDKClients(t *testing.T) {
	for _, tt := range generations {
		t.Run(tt.name, func(t *testing.T) {
			u := newUpstream(t, tt.mode)
			alice := connect(t, u, "alice", tt.version, nil)
			bob := connect(t, u, "bob", tt.version, nil)
			if got, want := toolNames(t, alice), []string{"countdown", "echo", "gate", "ticks", "whoami"}; !slices.Equal(got, want) {
				t.Fatalf("alice sees %q, want %q", got, want)
			}
			if got, want := toolNames(t, bob), []string{"echo", "gate"}; !slices.Equal(got, want) {
				t.Fatalf("bob sees %q, want %q", got, want)
			}
			ctx := context.Background()
			res, err := bob.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
			if err != nil || res.IsError {
				t.Fatalf("bob echo: %v %+v", err, res)
			}
			before := len(u.reached())
			_, err = bob.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
			if err == nil || !strings.Contains(err.Error(), `tool "whoami" is not allowed by this server's policy`) {
				t.Fatalf("bob whoami: err = %v, want the policy denial", err)
			}
			for _, b := range u.reached()[before:] {
				if strings.Contains(b, "whoami") {
					t.Fatalf("denied call reached the server: %s", b)
				}
			}
			if _, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"}); err != nil {
				t.Fatalf("alice whoami: %v", err)
			}
			var prompts []string
			pl, err := bob.ListPrompts(ctx, nil)
			if err != nil {
				t.Fatalf("prompts/list: %v", err)
			}
			for _, p := range pl.Prompts {
				prompts = append(prompts, p.Name)
			}
			var resources []string
			rl, err := bob.ListResources(ctx, nil)
			if err != nil {
				t.Fatalf("resources/list: %v", err)
			}
			for _, r := range rl.Resources {
				resources = append(resources, r.URI)
			}
			if !slices.Equal(prompts, []string{"greeting"}) || !slices.Equal(resources, []string{"file:///public.txt"}) {
				t.Fatalf("bob sees prompts %q and resources %q", prompts, resources)
			}
			if _, err := bob.GetPrompt(ctx, &mcp.GetPromptParams{Name: "greeting"}); err != nil {
				t.Fatalf("bob greeting: %v", err)
			}
			if _, err := bob.GetPrompt(ctx, &mcp.GetPromptParams{Name: "secret-prompt"}); err == nil || !strings.Contains(err.Error(), `prompt "secret-prompt" is not allowed`) {
				t.Fatalf("bob secret-prompt: %v", err)
			}
			if _, err := bob.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///public.txt"}); err != nil {
				t.Fatalf("bob public.txt: %v", err)
			}
			if _, err := bob.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///secret.txt"}); err == nil || !strings.Contains(err.Error(), `resource "file:///secret.txt" is not allowed`) {
				t.Fatalf("bob secret.txt: %v", err)
			}
			if _, err := alice.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///secret.txt"}); err != nil {
				t.Fatalf("alice secret.txt: %v", err)
			}
			var denied, allowed int
			count := func(entries []audit.Entry) bool {
				denied, allowed = 0, 0
				for _, e := range entries {
					if e.Method != "tools/call" {
						continue
					}
					switch {
					case e.Decision == audit.DecisionDenied && e.Subject == "bob" && e.Name == "whoami" && e.ErrorCode != nil && *e.ErrorCode == mcpguard.CodeDenied:
						denied++
					case e.Decision == audit.DecisionAllowed && e.ErrorCode == nil:
						allowed++
					}
				}
				return denied == 1 && allowed == 2
			}
			if !count(u.rec.waitFor(t, "", count)) {
				t.Fatalf("audit: %d denied, %d allowed tools/call entries, want 1 and 2: %+v", denied, allowed, u.rec.all())
			}
		})
	}
}

// TestSSEEventsAreNotHeld: a progress notification reaches the client
// while the tool still runs (the tool waits for the client to see it).
func TestSSEEventsAreNotHeld(t *testing.T) {
	for _, version := range []string{"", "2025-11-25"} {
		t.Run("version="+version, func(t *testing.T) {
			u := newUpstream(t, serverMode{stateless: version == ""})
			var once sync.Once
			cs := connect(t, u, "bob", version, &mcp.ClientOptions{
				ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
					once.Do(func() { close(u.gate) })
				},
			})
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			params := &mcp.CallToolParams{Name: "gate"}
			params.SetProgressToken("p1")
			res, err := cs.CallTool(ctx, params)
			if err != nil || res.IsError {
				t.Fatalf("gate: %v %+v (a held progress event deadlocks the tool)", err, res)
			}
		})
	}
}

// post sends a raw JSON-RPC body as user.
func post(t *testing.T, u *upstream, user, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Test-User", user)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

type rpcError struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeError(t *testing.T, body string) rpcError {
	t.Helper()
	var e rpcError
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == nil {
		t.Fatalf("not a JSON-RPC error: %s (%v)", body, err)
	}
	return e
}

var v2026 = map[string]string{"Mcp-Protocol-Version": "2026-07-28"}

func call(id, name, args string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args + `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
}

// TestRawRequests covers what an SDK client never sends.
func TestRawRequests(t *testing.T) {
	u := newUpstream(t, serverMode{stateless: true, json: true})
	pad := `{"text":"` + strings.Repeat("x", 5000) + `"}`
	for _, tt := range []struct {
		name     string
		user     string
		body     string
		hdr      map[string]string
		status   int
		code     int
		id       string
		msg      string
		reaches  bool
		decision string
	}{
		{name: "padded past the cap", user: "alice", body: call("1", "echo", pad), status: 413, code: -32600, id: "null", msg: "policy.max_body_bytes", decision: audit.DecisionInvalid},
		{name: "method header mismatch", user: "bob", body: call("7", "whoami", `{}`), hdr: map[string]string{"Mcp-Method": "tools/list", "Mcp-Protocol-Version": "2026-07-28"},
			status: 400, code: -32020, id: "7", msg: "Mcp-Method", decision: audit.DecisionInvalid},
		{name: "name header mismatch", user: "bob", body: call("8", "whoami", `{}`), hdr: map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "echo", "Mcp-Protocol-Version": "2026-07-28"},
			status: 400, code: -32020, id: "8", msg: "Mcp-Name", decision: audit.DecisionInvalid},
		// The guard accepts a SEP-2243 Base64 Mcp-Name that decodes to
		// the body's name; SDK v1.8.0 compares the raw header and refuses
		// it itself, and the audit entry carries the server's code.
		{name: "base64 name header", user: "bob", body: call("9", "echo", `{"text":"a"}`), hdr: map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "=?base64?ZWNobw==?=", "Mcp-Protocol-Version": "2026-07-28"},
			status: 400, code: -32020, id: "9", reaches: true, decision: audit.DecisionAllowed},
		{name: "duplicate name", user: "bob", body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","name":"whoami"}}`,
			status: 400, code: -32600, id: "null", msg: "twice", decision: audit.DecisionInvalid},
		{name: "case-variant name", user: "bob", body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","NAME":"whoami"}}`,
			status: 400, code: -32600, id: "null", msg: "twice", decision: audit.DecisionInvalid},
		{name: "case-variant method", user: "bob", body: `{"jsonrpc":"2.0","id":2,"Method":"tools/call","params":{"name":"whoami"}}`,
			status: 400, code: -32600, id: "null", decision: audit.DecisionInvalid},
		{name: "Kelvin sign", user: "bob", body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"k":1,"\u212a":2}}}`,
			status: 400, code: -32600, id: "null", decision: audit.DecisionInvalid},
		{name: "trailing data", user: "bob", body: call("3", "echo", `{}`) + `{"x":1}`, status: 400, code: -32700, id: "null", decision: audit.DecisionInvalid},
		{name: "not JSON", user: "bob", body: `{"jsonrpc":`, status: 400, code: -32700, id: "null", decision: audit.DecisionInvalid},
		{name: "missing name", user: "alice", body: `{"jsonrpc":"2.0","id":"n","method":"tools/call","params":{"arguments":{}}}`,
			status: 200, code: -32602, id: `"n"`, msg: "without a valid name", decision: audit.DecisionDenied},
		{name: "denied", user: "bob", body: call(`"abc"`, "whoami", `{}`), hdr: map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "whoami", "Mcp-Protocol-Version": "2026-07-28"},
			status: 200, code: -32602, id: `"abc"`, msg: `tool "whoami" is not allowed by this server's policy`, decision: audit.DecisionDenied},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(u.reached())
			rid := strings.ReplaceAll(tt.name, " ", "-")
			hdr := map[string]string{"X-Test-Req": rid}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			resp, body := post(t, u, tt.user, tt.body, hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if got := len(u.reached()) - before; (got > 0) != tt.reaches {
				t.Fatalf("%d bodies reached the server, want reaches=%v", got, tt.reaches)
			}
			if tt.code != 0 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("Content-Type %q", ct)
				}
				e := decodeError(t, body)
				if e.Error.Code != tt.code || string(e.ID) != tt.id || !strings.Contains(e.Error.Message, tt.msg) {
					t.Fatalf("error %s, want code %d id %s message containing %q", body, tt.code, tt.id, tt.msg)
				}
			}
			entries := u.rec.waitFor(t, "req-"+rid, func(e []audit.Entry) bool { return len(e) > 0 })
			if len(entries) != 1 || entries[0].Decision != tt.decision || entries[0].Subject != tt.user {
				t.Fatalf("audit entries %+v, want one %s entry for %s", entries, tt.decision, tt.user)
			}
			if tt.code != 0 && (entries[0].ErrorCode == nil || *entries[0].ErrorCode != tt.code) {
				t.Fatalf("audit error code %v, want %d", entries[0].ErrorCode, tt.code)
			}
		})
	}
}
