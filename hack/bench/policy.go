package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
)

// The policy scenario measures what the MCP policy (issue 10) costs: MCP
// POSTs (tools/call of echo, tools/list) through three sidecars that differ
// only in their policy flags, next to the upstream itself and the bare
// proxy. Without rules the sidecar never parses a body; with them it
// parses every JSON-RPC request on mcp_path, decides tools/call by the
// rules and filters tools/list; with the audit trail it also writes a line
// per request.

const (
	// mcpStatelessPath is where the shared upstream serves the example MCP
	// server statelessly with JSON responses, so every POST is one
	// request and one answer; the policy sidecars' mcp_path.
	mcpStatelessPath = "/mcp-stateless"
	// echoText is the echo tool's argument in every measured tools/call.
	echoText = "bench"
	// auditMessage is the message of every audit line (pkg/audit.Message),
	// spelled as the sidecar's JSON log writes it.
	auditMessage = `"msg":"mcp request"`
)

// Sidecar kinds of the policy scenario: cookie sessions on Redis like
// kindRedis, the MCP endpoint at mcpStatelessPath, and
const (
	kindPolicyNone  = "mcp-policy-none"  // no policy;
	kindPolicy      = "mcp-policy"       // benchRules;
	kindPolicyAudit = "mcp-policy-audit" // benchRules and --audit-enabled.
)

var policyKinds = []string{kindPolicyNone, kindPolicy, kindPolicyAudit}

// benchRule is one rule as --policy-rules takes it.
type benchRule struct {
	Name   string `json:"name"`
	Effect string `json:"effect"`
	When   string `json:"when"`
}

// benchRules is a policy a platform team might write for a shared MCP
// server (with --policy-default deny): admin tools for one group, a bound
// on an argument, read-only tools for everyone, and the other tools for
// verified company users in a group. The demo user (demo@example.com,
// verified, groups mcp-users and admins) gets echo and countdown through
// the last rule, so a tools/call of echo evaluates all four rules, and
// sees two of the example server's four tools (visibleTools).
func benchRules() []benchRule {
	return []benchRule{
		{Name: "admin-tools", Effect: "deny", When: `name in ["whoami", "ticks"] && !("mcp-admins" in groups)`},
		{Name: "bounded-text", Effect: "deny", When: `method == "tools/call" && has(arguments.text) && size(arguments.text) > 4096`},
		{Name: "read-only-tools", Effect: "allow", When: `name.matches("^(get|list|search|read)_")`},
		{Name: "company-users", Effect: "allow", When: `email_verified && email.endsWith("@example.com") && "mcp-users" in groups`},
	}
}

// visibleTools is what the demo user's tools/list shows under benchRules.
func visibleTools() []string { return []string{"countdown", "echo"} }

// policyRulesFlag is benchRules as the --policy-rules value (JSON, which
// the flag's YAML accepts).
func policyRulesFlag() (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(benchRules()); err != nil {
		return "", fmt.Errorf("--policy-rules: %w", err)
	}
	return strings.TrimSpace(b.String()), nil
}

func (e *env) auditLogPath() string { return filepath.Join(e.o.work, "policy-audit.log") }

// statelessMCP serves the example MCP server for MCP 2026-07-28 requests
// without sessions, answering each POST with one JSON response.
func statelessMCP() http.Handler {
	s := mcpserver.NewServer()
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{JSONResponse: true, Stateless: true})
}

// mcpRequest is one request as the official SDK client sent it.
type mcpRequest struct {
	method  string   // JSON-RPC method
	headers []string // "Name: value", those the client set
	body    string
	id      json.RawMessage
}

// transportHeaders are set by net/http's transport, not by the MCP client;
// the load generators set their own.
var transportHeaders = []string{"Content-Length", "Accept-Encoding", "User-Agent"}

// captureSDK runs the official MCP Go SDK client (its default protocol
// version, 2026-07-28) against h on its own listener, calls echo and lists
// the tools, and returns those two requests exactly as the client sent
// them, so the load carries what a real client sends rather than a guess.
func captureSDK(ctx context.Context, h http.Handler) (call, list mcpRequest, err error) {
	seen, err := captureMCP(ctx, h, mcpStatelessPath, nil, func(cs *mcp.ClientSession) error {
		if _, err := cs.ListTools(ctx, nil); err != nil {
			return fmt.Errorf("tools/list: %w", err)
		}
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": echoText}}); err != nil {
			return fmt.Errorf("tools/call: %w", err)
		}
		return nil
	})
	if err != nil {
		return call, list, err
	}
	var ok1, ok2 bool
	call, ok1 = seen["tools/call"]
	list, ok2 = seen["tools/list"]
	if !ok1 || !ok2 {
		return call, list, fmt.Errorf("captured %d requests, not a tools/call and a tools/list", len(seen))
	}
	return call, list, nil
}

// captureMCP connects the official MCP Go SDK client (with opts) to h,
// served at path on its own listener, runs use on the session, and returns
// the JSON-RPC POSTs the client sent, the last of each method, as sent.
func captureMCP(ctx context.Context, h http.Handler, path string, opts *mcp.ClientSessionOptions, use func(*mcp.ClientSession) error) (map[string]mcpRequest, error) {
	var mu sync.Mutex
	seen := map[string]mcpRequest{}
	rec := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var msg struct {
			Method string          `json:"method"`
			ID     json.RawMessage `json:"id"`
		}
		if r.Method == http.MethodPost && json.Unmarshal(body, &msg) == nil {
			var hs []string
			for name, vs := range r.Header {
				if !slices.Contains(transportHeaders, name) {
					hs = append(hs, name+": "+strings.Join(vs, ", "))
				}
			}
			slices.Sort(hs)
			mu.Lock()
			seen[msg.Method] = mcpRequest{method: msg.Method, headers: hs, body: string(body), id: msg.ID}
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
	ln, err := stack.Listen()
	if err != nil {
		return nil, err
	}
	base, stop := stack.Serve(ln, rec)
	defer stop()
	client := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "v1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + path}, opts)
	if err != nil {
		return nil, fmt.Errorf("MCP SDK client: %w", err)
	}
	err = use(cs)
	_ = cs.Close()
	if err != nil {
		return nil, fmt.Errorf("MCP SDK client: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(seen), nil
}

// policyPath is one row of the policy table.
type policyPath struct {
	label string
	kind  string // "" for the upstream itself
}

func policyPaths() []policyPath {
	return []policyPath{
		{"direct upstream", ""},
		{"bare ReverseProxy", kindBare},
		{"sidecar, no policy", kindPolicyNone},
		{"sidecar, policy", kindPolicy},
		{"sidecar, policy + audit", kindPolicyAudit},
	}
}

// Row indexes into policyPaths for the report.
const (
	ppDirect = iota
	ppBare
	ppNone
	ppPolicy
	ppAudit
)

// policyResult is the policy scenario's numbers: targets are tools/call on
// every path of policyPaths, then tools/list on every path.
type policyResult struct {
	targets []target
	load    [][]loadResult
	latency []latencyResult
	headers []string // the names of the headers the SDK client set
	allTools,
	visible []string
	audit auditStats
}

// auditStats is what the audited sidecar wrote while it was measured.
type auditStats struct {
	lines, bytes, answered int64
	sample                 string // one line, as written
}

func (p *policyResult) index(method string, path int) int {
	if method == "tools/list" {
		return len(policyPaths()) + path
	}
	return path
}

// runPolicy runs the policy scenario on the procs measure launched.
func (e *env) runPolicy(ctx context.Context, res *results) (*policyResult, error) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	call, list, err := captureSDK(pctx, statelessMCP())
	if err != nil {
		return nil, err
	}
	pr := &policyResult{visible: visibleTools()}
	for _, h := range call.headers {
		name, _, _ := strings.Cut(h, ": ")
		pr.headers = append(pr.headers, name)
	}
	// Every tool the server has, from the upstream itself.
	if pr.allTools, err = listTools(pctx, e.upstream+mcpStatelessPath, list); err != nil {
		return nil, fmt.Errorf("tools/list from the upstream: %w", err)
	}
	if slices.Equal(pr.allTools, pr.visible) {
		return nil, fmt.Errorf("the upstream has the tools %v, all of which the policy shows: it would filter nothing", pr.allTools)
	}
	cookies := map[string]string{}
	for _, kind := range policyKinds {
		if cookies[kind], err = sessionCookie(pctx, e.procs[kind].url, e.idp); err != nil {
			return nil, fmt.Errorf("browser login (%s): %w", kind, err)
		}
	}
	for _, req := range []mcpRequest{call, list} {
		for _, path := range policyPaths() {
			base := e.upstream
			if path.kind != "" {
				base = e.procs[path.kind].url
			}
			t := target{name: req.method + ", " + path.label, kind: path.kind, url: base + mcpStatelessPath,
				headers: slices.Clone(req.headers), body: req.body}
			if c := cookies[path.kind]; c != "" {
				t.headers = append(t.headers, "Cookie: "+c)
			}
			want := pr.allTools
			if path.kind == kindPolicy || path.kind == kindPolicyAudit {
				want = pr.visible
			}
			if req.method == "tools/call" {
				t.check = checkEcho(req.id)
			} else {
				t.check = checkList(req.id, want)
			}
			if err := probe(pctx, t); err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			pr.targets = append(pr.targets, t)
		}
	}
	if pr.load, err = e.closedLoop(ctx, res, pr.targets, e.o.policyDuration); err != nil {
		return nil, err
	}
	if pr.latency, err = e.openLoop(pr.targets, e.o.policyRate, e.o.policyRateDuration); err != nil {
		return nil, err
	}
	pr.audit = e.audit
	return pr, nil
}

// rpcAnswer is the part of a JSON-RPC answer the checks read.
type rpcAnswer struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Result *struct {
		IsError           bool `json:"isError"`
		StructuredContent struct {
			Text string `json:"text"`
		} `json:"structuredContent"`
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	} `json:"result"`
}

// parseAnswer checks the envelope: HTTP 200, a JSON body, a JSON-RPC
// result (no error) for the request's id.
func parseAnswer(status int, header http.Header, body []byte, id json.RawMessage) (rpcAnswer, error) {
	var a rpcAnswer
	if status != http.StatusOK {
		return a, fmt.Errorf("answered %d %q, want 200", status, clipBody(body))
	}
	if ct, _, _ := mime.ParseMediaType(header.Get("Content-Type")); ct != "application/json" {
		return a, fmt.Errorf("answered Content-Type %q, want application/json (a stateless JSON response)", header.Get("Content-Type"))
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("answer %q is not JSON-RPC: %w", clipBody(body), err)
	}
	switch {
	case a.JSONRPC != "2.0" || !bytes.Equal(a.ID, id):
		return a, fmt.Errorf("answer %q is not JSON-RPC 2.0 for id %s", clipBody(body), id)
	case a.Error != nil:
		return a, fmt.Errorf("JSON-RPC error %d: %s", a.Error.Code, a.Error.Message)
	case a.Result == nil:
		return a, fmt.Errorf("answer %q has no result", clipBody(body))
	case !jsonrpcSuccess(body):
		return a, fmt.Errorf("answer %q fails the load loops' check", clipBody(body))
	}
	return a, nil
}

// checkEcho accepts the echo tool's successful answer.
func checkEcho(id json.RawMessage) func(int, http.Header, []byte) error {
	return func(status int, header http.Header, body []byte) error {
		a, err := parseAnswer(status, header, body, id)
		if err != nil {
			return err
		}
		if a.Result.IsError || a.Result.StructuredContent.Text != echoText {
			return fmt.Errorf("echo answered %q, want the text %q back", clipBody(body), echoText)
		}
		return nil
	}
}

// checkList accepts a tools/list answer listing exactly want.
func checkList(id json.RawMessage, want []string) func(int, http.Header, []byte) error {
	return func(status int, header http.Header, body []byte) error {
		a, err := parseAnswer(status, header, body, id)
		if err != nil {
			return err
		}
		if got := toolNames(a); !slices.Equal(got, want) {
			return fmt.Errorf("tools/list shows %v, want %v", got, want)
		}
		return nil
	}
}

func toolNames(a rpcAnswer) []string {
	var names []string
	for _, t := range a.Result.Tools {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return names
}

// listTools sends the captured tools/list to url and returns the names.
func listTools(ctx context.Context, url string, list mcpRequest) ([]string, error) {
	var names []string
	t := target{url: url, headers: list.headers, body: list.body, check: func(status int, header http.Header, body []byte) error {
		a, err := parseAnswer(status, header, body, list.id)
		if err != nil {
			return err
		}
		names = toolNames(a)
		return nil
	}}
	if err := probe(ctx, t); err != nil {
		return nil, err
	}
	return names, nil
}

// afterRun is called after every load of a target. For B of the session
// hop scenario it counts the answered requests (hopTally). For the audited
// sidecar it checks that a line was written for every answered request
// (waiting briefly for the last ones), adds them to e.audit, and empties
// the file for the next run.
func (e *env) afterRun(t target, answered int64) error {
	if t.kind == kindHopB {
		e.hopB.answered += answered
		e.hopB.runs++
	}
	if t.kind != kindPolicyAudit {
		return nil
	}
	path := e.auditLogPath()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines, size, sample, err := countAuditLines(path)
		if err != nil {
			return err
		}
		if lines >= answered {
			if e.audit.sample == "" {
				e.audit.sample = sample
			}
			e.audit.lines += lines
			e.audit.bytes += size
			e.audit.answered += answered
			if err := os.Truncate(path, 0); err != nil {
				return fmt.Errorf("emptying the audit log: %w", err)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the audited sidecar wrote %d audit lines for %d answered requests (%s); is --audit-enabled wired?", lines, answered, path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countAuditLines counts the audit lines in the sidecar's log and their
// bytes, and returns the last one.
func countAuditLines(path string) (lines, size int64, last string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, "", fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var lastLine []byte
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(auditMessage)) {
			lines++
			size += int64(len(sc.Bytes())) + 1
			lastLine = sc.Bytes()
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, "", fmt.Errorf("audit log: %w", err)
	}
	return lines, size, string(lastLine), nil
}
