package mcpguard_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpguard"
)

// newFeatureUpstream is an SDK server with completions, subscriptions and
// resource templates: the methods that reach a prompt or resource by name
// without being one of the three the rules are written for. In policy,
// bob may use greeting, file:///public.txt and the file:///public/{name}
// template; alice everything.
func newFeatureUpstream(t *testing.T, mode serverMode) (*upstream, *featureLog) {
	t.Helper()
	log := &featureLog{}
	s := mcp.NewServer(&mcp.Implementation{Name: "features", Version: "v1"}, &mcp.ServerOptions{
		CompletionHandler: func(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			ref := req.Params.Ref
			log.add("complete " + ref.Name + ref.URI)
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{"value-of-" + ref.Name + ref.URI}}}, nil
		},
		SubscribeHandler: func(_ context.Context, req *mcp.SubscribeRequest) error {
			log.add("subscribe " + req.Params.URI)
			return nil
		},
		UnsubscribeHandler: func(_ context.Context, req *mcp.UnsubscribeRequest) error {
			log.add("unsubscribe " + req.Params.URI)
			return nil
		},
	})
	for _, name := range []string{"greeting", "secret-prompt"} {
		s.AddPrompt(&mcp.Prompt{Name: name, Arguments: []*mcp.PromptArgument{{Name: "topic"}}},
			func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
				return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: name}}}}, nil
			})
	}
	for _, uri := range []string{"file:///public.txt", "file:///secret.txt"} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, Text: uri}}}, nil
		})
	}
	for _, tmpl := range []string{"file:///public/{name}", "file:///secret/{name}"} {
		s.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: tmpl, Name: tmpl},
			func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
			})
	}
	u := &upstream{rec: &recorder{}, gate: make(chan struct{})}
	u.serve(t, s, mode)
	return u, log
}

// featureLog is what the server's completion and subscription handlers
// ran.
type featureLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *featureLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, s)
}

func (l *featureLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.seen, s)
}

// TestCompletionsFollowThePolicy: a caller gets completions only for the
// prompts and resource templates they would be shown, for both protocol
// generations; a denied completion never reaches the server.
func TestCompletionsFollowThePolicy(t *testing.T) {
	for _, tt := range generations {
		t.Run(tt.name, func(t *testing.T) {
			u, log := newFeatureUpstream(t, tt.mode)
			bob := connect(t, u, "bob", tt.version, nil)
			alice := connect(t, u, "alice", tt.version, nil)
			ctx := context.Background()
			complete := func(cs *mcp.ClientSession, ref *mcp.CompleteReference) (*mcp.CompleteResult, error) {
				return cs.Complete(ctx, &mcp.CompleteParams{Ref: ref, Argument: mcp.CompleteParamsArgument{Name: "topic", Value: "a"}})
			}
			for _, c := range []struct {
				user    *mcp.ClientSession
				ref     *mcp.CompleteReference
				allowed bool
				denial  string
			}{
				{bob, &mcp.CompleteReference{Type: "ref/prompt", Name: "greeting"}, true, ""},
				{bob, &mcp.CompleteReference{Type: "ref/prompt", Name: "secret-prompt"}, false, `completion for prompt "secret-prompt" is not allowed by this server's policy`},
				{bob, &mcp.CompleteReference{Type: "ref/resource", URI: "file:///public/{name}"}, true, ""},
				{bob, &mcp.CompleteReference{Type: "ref/resource", URI: "file:///secret/{name}"}, false, `completion for resource "file:///secret/{name}" is not allowed by this server's policy`},
				{alice, &mcp.CompleteReference{Type: "ref/prompt", Name: "secret-prompt"}, true, ""},
				{alice, &mcp.CompleteReference{Type: "ref/resource", URI: "file:///secret/{name}"}, true, ""},
			} {
				what := c.ref.Name + c.ref.URI
				before := len(u.reached())
				res, err := complete(c.user, c.ref)
				if c.allowed {
					if err != nil || len(res.Completion.Values) != 1 || res.Completion.Values[0] != "value-of-"+what {
						t.Fatalf("completion for %s: %v %+v", what, err, res)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), c.denial) {
					t.Fatalf("completion for %s: err = %v, want %q", what, err, c.denial)
				}
				for _, b := range u.reached()[before:] {
					if strings.Contains(b, what) {
						t.Fatalf("denied completion reached the server: %s", b)
					}
				}
			}
			// bob's denied ones were checked against the bodies above.
			if !log.has("complete secret-prompt") || !log.has("complete file:///secret/{name}") {
				t.Fatalf("alice's completions did not run: %q", log.seen)
			}

			templates := func(cs *mcp.ClientSession) []string {
				res, err := cs.ListResourceTemplates(ctx, nil)
				if err != nil {
					t.Fatalf("resources/templates/list: %v", err)
				}
				var out []string
				for _, rt := range res.ResourceTemplates {
					out = append(out, rt.URITemplate)
				}
				slices.Sort(out)
				return out
			}
			if got := templates(bob); !slices.Equal(got, []string{"file:///public/{name}"}) {
				t.Fatalf("bob sees templates %q", got)
			}
			if got := templates(alice); !slices.Equal(got, []string{"file:///public/{name}", "file:///secret/{name}"}) {
				t.Fatalf("alice sees templates %q", got)
			}

			denied := func(entries []audit.Entry) bool {
				for _, e := range entries {
					if e.Method == "completion/complete" && e.Subject == "bob" && e.Name == "secret-prompt" &&
						e.Decision == audit.DecisionDenied && e.ErrorCode != nil && *e.ErrorCode == mcpguard.CodeDenied {
						return true
					}
				}
				return false
			}
			if !denied(u.rec.waitFor(t, "", denied)) {
				t.Fatalf("no audit entry for bob's denied completion: %+v", u.rec.all())
			}
		})
	}
}

// TestSubscribeIsARead: subscribing to a resource is decided as reading
// it; unsubscribing passes.
func TestSubscribeIsARead(t *testing.T) {
	u, log := newFeatureUpstream(t, serverMode{})
	bob := connect(t, u, "bob", "2025-11-25", nil)
	ctx := context.Background()
	if err := bob.Subscribe(ctx, &mcp.SubscribeParams{URI: "file:///public.txt"}); err != nil {
		t.Fatalf("bob subscribes to public.txt: %v", err)
	}
	err := bob.Subscribe(ctx, &mcp.SubscribeParams{URI: "file:///secret.txt"})
	if err == nil || !strings.Contains(err.Error(), `resource "file:///secret.txt" is not allowed by this server's policy`) {
		t.Fatalf("bob subscribes to secret.txt: err = %v, want the policy denial", err)
	}
	if !log.has("subscribe file:///public.txt") || log.has("subscribe file:///secret.txt") {
		t.Fatalf("the server ran %q; want the public subscription only", log.seen)
	}
	if err := bob.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: "file:///public.txt"}); err != nil || !log.has("unsubscribe file:///public.txt") {
		t.Fatalf("bob unsubscribes: %v (server ran %q)", err, log.seen)
	}
}

// TestCompletionRefs covers what an SDK client never sends: every ref
// that does not name a prompt or resource is denied, a case-variant
// member is refused, and a denied completion sent as a notification is
// dropped.
func TestCompletionRefs(t *testing.T) {
	u, log := newFeatureUpstream(t, serverMode{stateless: true, json: true})
	complete := func(id, params string) string {
		return `{"jsonrpc":"2.0"` + id + `,"method":"completion/complete","params":` + params + `}`
	}
	arg := `"argument":{"name":"topic","value":"a"}`
	for _, tt := range []struct {
		name   string
		body   string
		status int
		code   int
		msg    string
	}{
		{"tool ref", complete(`,"id":1`, `{"ref":{"type":"ref/tool","name":"greeting"},`+arg+`}`), 200, -32602, "without a valid ref"},
		{"no ref", complete(`,"id":1`, `{`+arg+`}`), 200, -32602, "without a valid ref"},
		{"null params", complete(`,"id":1`, `null`), 200, -32602, "without a valid ref"},
		{"ref not an object", complete(`,"id":1`, `{"ref":"greeting",`+arg+`}`), 200, -32602, "without a valid ref"},
		{"prompt ref by uri", complete(`,"id":1`, `{"ref":{"type":"ref/prompt","uri":"greeting"},`+arg+`}`), 200, -32602, "without a valid ref"},
		{"numeric name", complete(`,"id":1`, `{"ref":{"type":"ref/prompt","name":7},`+arg+`}`), 200, -32602, "without a valid ref"},
		{"denied prompt", complete(`,"id":1`, `{"ref":{"type":"ref/prompt","name":"secret-prompt"},`+arg+`}`), 200, -32602, `completion for prompt "secret-prompt"`},
		{"case-variant Ref", complete(`,"id":1`, `{"Ref":{"type":"ref/prompt","name":"secret-prompt"},`+arg+`}`), 400, -32600, "another case"},
		{"case-variant Name", complete(`,"id":1`, `{"ref":{"type":"ref/prompt","Name":"secret-prompt"},`+arg+`}`), 400, -32600, "another case"},
		{"denied notification", complete(``, `{"ref":{"type":"ref/prompt","name":"secret-prompt"},`+arg+`}`), 202, 0, ""},
		{"denied subscribe notification", `{"jsonrpc":"2.0","method":"resources/subscribe","params":{"uri":"file:///secret.txt"}}`, 202, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(u.reached())
			resp, body := post(t, u, "bob", tt.body, v2026)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if n := len(u.reached()) - before; n != 0 {
				t.Fatalf("%d bodies reached the server: %q", n, u.reached()[before:])
			}
			if tt.code != 0 {
				if e := decodeError(t, body); e.Error.Code != tt.code || !strings.Contains(e.Error.Message, tt.msg) {
					t.Fatalf("error %s, want code %d with %q", body, tt.code, tt.msg)
				}
			}
		})
	}
	if len(log.seen) != 0 {
		t.Fatalf("the server ran %q", log.seen)
	}
	// The same request for an allowed prompt does reach the server, so the
	// rows above are denials and not a broken request.
	meta := `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	hdr := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "completion/complete"}
	resp, body := post(t, u, "bob", complete(`,"id":1`, `{"ref":{"type":"ref/prompt","name":"greeting"},`+arg+meta+`}`), hdr)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "value-of-greeting") {
		t.Fatalf("allowed completion: %d %s", resp.StatusCode, body)
	}
}
