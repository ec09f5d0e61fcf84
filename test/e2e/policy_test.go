package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// Two users in different groups: the demo user is in "admins", bob is not.
const (
	bobUsername = "bob"
	bobPassword = "bob-password-0123456789"
	bobEmail    = "bob@example.com"
)

// policyUsers are the provider's users for the policy suite.
func policyUsers() []oidcprovider.User {
	return []oidcprovider.User{
		{
			ID: oidcprovider.DemoUserID, Username: oidcprovider.DemoUsername, Password: oidcprovider.DemoPassword,
			Email: oidcprovider.DemoEmail, EmailVerified: true, GivenName: "Demo", FamilyName: "User",
			Groups: oidcprovider.DemoGroups(),
		},
		{
			ID: "bob-id", Username: bobUsername, Password: bobPassword,
			Email: bobEmail, EmailVerified: true, GivenName: "Bob", FamilyName: "User",
			Groups: []string{"mcp-users"},
		},
	}
}

// toolPolicy lets everyone use whoami and echo, and only admins countdown;
// ticks matches no rule and the default denies it.
const toolPolicy = `
- name: admins-count
  effect: allow
  when: 'name == "countdown" && "admins" in groups'
- name: everyone-reads
  effect: allow
  when: 'name in ["whoami", "echo"]'
`

// loginAs is login for any user of the provider.
func loginAs(tb testing.TB, idp *oidcprovider.Provider, base, username, password string) *http.Cookie {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	client := noRedirects(jar)
	rd := base + "/"
	resp, err := client.Get(base + "/oauth2/start?rd=" + url.QueryEscape(rd))
	if err != nil {
		tb.Fatal(err)
	}
	_ = resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cb, err := idp.LoginAs(ctx, nil, resp.Header.Get("Location"), username, password)
	if err != nil {
		tb.Fatalf("provider login as %s: %v", username, err)
	}
	resp, err = client.Get(cb.String())
	if err != nil {
		tb.Fatal(err)
	}
	_ = resp.Body.Close()
	c := sessionCookieFrom(resp.Header)
	if resp.StatusCode != http.StatusFound || c == nil {
		tb.Fatalf("callback for %s: %d, cookie %v", username, resp.StatusCode, c)
	}
	return &http.Cookie{Name: c.Name, Value: c.Value}
}

// sdkSession connects the official SDK client to endpoint with cookie,
// speaking protocol version ("" is the SDK's default, 2026-07-28).
func sdkSession(tb testing.TB, endpoint string, cookie *http.Cookie, version string) *mcp.ClientSession {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(endpoint)
	jar.SetCookies(u, []*http.Cookie{cookie})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	transport := &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Jar: jar, Timeout: waitFor}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-policy", Version: "v1"}, nil).Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		tb.Fatalf("MCP connect to %s (protocol %q): %v", endpoint, version, err)
	}
	tb.Cleanup(func() { _ = cs.Close() })
	return cs
}

func toolNames(tb testing.TB, cs *mcp.ClientSession) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		tb.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, t := range res.Tools {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return names
}

func callTool(cs *mcp.ClientSession, name string, args any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
}

// auditLines are the replica's audit log lines.
func auditLines(tb testing.TB, r *replica) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, e := range r.Logs.entries(tb) {
		if e["logger"] == "audit" {
			out = append(out, e)
		}
	}
	return out
}

// TestPolicyPerUserOverJSONAndSSE: two users in different groups see
// different tools/list results and get different tools/call decisions, with
// the MCP server answering in SSE (/mcp) and in JSON (/mcp-json), for a
// 2026-07-28 client (the SDK's default) and one pinned to 2025-11-25.
func TestPolicyPerUserOverJSONAndSSE(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: oidcprovider.Options{Users: policyUsers()}})
	// The SDK serves 2026-07-28 clients statelessly and 2025-11-25 ones
	// with a session; each in SSE and in JSON.
	for _, tc := range []struct{ path, version string }{
		{"/mcp-stateless", "2026-07-28"},
		{"/mcp-stateless-json", "2026-07-28"},
		{"/mcp", "2025-11-25"},
		{"/mcp-json", "2025-11-25"},
	} {
		path, version := tc.path, tc.version
		r := e.start(t, proxyOptions{args: []string{"--mcp-path", path, "--policy-rules", toolPolicy, "--audit-enabled"}})
		alice := loginAs(t, e.idp, r.URL, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
		bob := loginAs(t, e.idp, r.URL, bobUsername, bobPassword)
		t.Run(fmt.Sprintf("%s protocol %s", path, version), func(t *testing.T) {
			as := sdkSession(t, r.URL+path, alice, version)
			bs := sdkSession(t, r.URL+path, bob, version)
			if got := bs.InitializeResult().ProtocolVersion; got != version {
				t.Fatalf("negotiated protocol %q, want %q", got, version)
			}
			if got, want := toolNames(t, as), []string{"countdown", "echo", "whoami"}; !slices.Equal(got, want) {
				t.Errorf("admin's tools/list = %v, want %v", got, want)
			}
			if got, want := toolNames(t, bs), []string{"echo", "whoami"}; !slices.Equal(got, want) {
				t.Errorf("bob's tools/list = %v, want %v", got, want)
			}
			if _, err := callTool(bs, "countdown", map[string]any{"from": 1}); err == nil || !strings.Contains(err.Error(), "not allowed") {
				t.Errorf("bob's countdown: err = %v, want a JSON-RPC error saying it is not allowed", err)
			}
			if res, err := callTool(as, "countdown", map[string]any{"from": 1}); err != nil || res.IsError {
				t.Errorf("admin's countdown: %v %+v, want success", err, res)
			}
			who := whoami(t, bs)
			if got := who.Headers["X-Forwarded-Email"]; got != bobEmail {
				t.Errorf("whoami as bob: X-Forwarded-Email = %q, want %q", got, bobEmail)
			}
			if _, err := callTool(as, "ticks", map[string]any{"count": 1, "intervalMs": 10}); err == nil {
				t.Error("ticks matches no rule and the default denies it, but the call succeeded")
			}
		})
		// Every audit line has its fields; the denied call names the rule
		// that decided and the JSON-RPC error code; no credential appears.
		lines := auditLines(t, r)
		var denied map[string]any
		for _, l := range lines {
			for _, f := range []string{"request_id", "sub", "email", "method", "decision", "duration"} {
				if _, ok := l[f]; !ok {
					t.Errorf("audit line without %s: %v", f, l)
				}
			}
			if l["method"] == "tools/call" && l["name"] == "countdown" && l["email"] == bobEmail {
				denied = l
			}
		}
		if denied == nil {
			t.Fatalf("no audit line for bob's denied countdown among %d lines", len(lines))
		}
		want := map[string]any{"sub": "bob-id", "decision": "denied", "rule": "(default)", "error_code": float64(-32602)}
		for k, v := range want {
			if denied[k] != v {
				t.Errorf("denied audit line %s = %v, want %v (line %v)", k, denied[k], v, denied)
			}
		}
		for _, secret := range []string{alice.Value, bob.Value, cookieSecret, oidcprovider.DefaultClientSecret, bobPassword} {
			if strings.Contains(r.Logs.String(), secret) {
				t.Errorf("the logs contain a credential (%.6s...)", secret)
			}
		}
	}
}

// TestPolicyBearerCallerDecidedLikeCookie: the façade's bearer caller is
// held to the same rules as a cookie caller of the same user.
func TestPolicyBearerCallerDecidedLikeCookie(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	r := e.start(t, proxyOptions{args: []string{"--policy-rules", `
- name: no-admin-tools-for-bearer-clients-without-scope
  effect: deny
  when: 'name == "countdown" && auth == "bearer" && !("mcp:admin" in scopes)'
- name: everyone
  effect: allow
  when: 'true'
`}})
	c := facadeSession(t, e, r.URL+"/mcp")
	names := toolNames(t, c.Session)
	if slices.Contains(names, "countdown") || !slices.Contains(names, "whoami") {
		t.Errorf("bearer caller's tools/list = %v, want whoami but not countdown", names)
	}
	if _, err := callTool(c.Session, "countdown", map[string]any{"from": 1}); err == nil {
		t.Error("bearer caller without the scope ran countdown")
	}
	cookie := loginAs(t, e.idp, r.URL, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
	cs := sdkSession(t, r.URL+"/mcp", cookie, "")
	if _, err := callTool(cs, "countdown", map[string]any{"from": 1}); err != nil {
		t.Errorf("cookie caller's countdown (the rule names bearer callers only): %v", err)
	}
}

// facadeSession connects the official SDK client to endpoint through the
// façade's OAuth flow as the demo user.
func facadeSession(tb testing.TB, e *env, endpoint string) *mcpclient.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := mcpclient.Connect(ctx, mcpclient.Options{
		Endpoint: endpoint,
		Login:    func(ctx context.Context, u string) (*url.URL, error) { return e.idp.Login(ctx, nil, u) },
	})
	if err != nil {
		tb.Fatalf("SDK client through the OAuth flow: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// rawMCP posts body to the MCP endpoint with cookie and headers.
func rawMCP(tb testing.TB, endpoint string, cookie *http.Cookie, body string, header http.Header) response {
	tb.Helper()
	h := http.Header{"Accept": {"application/json, text/event-stream"}, "Content-Type": {"application/json"}}
	for k, v := range header {
		h[k] = v
	}
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header = h
	req.AddCookie(cookie)
	resp, err := noRedirects(nil).Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	buf, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: buf}
}

type rpcError struct {
	ID    json.RawMessage `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeRPCError(tb testing.TB, r response) rpcError {
	tb.Helper()
	var m rpcError
	if err := json.Unmarshal(r.Body, &m); err != nil || m.Error == nil {
		tb.Fatalf("response is not a JSON-RPC error: %v (%s)", err, r)
	}
	return m
}

// TestPolicyRefusesWhatItCannotDecide: a tools/call padded past the size
// cap, and 2026-07-28 headers that disagree with the body, are refused and
// never reach the MCP server.
func TestPolicyRefusesWhatItCannotDecide(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.start(t, proxyOptions{args: []string{"--policy-rules", toolPolicy, "--policy-max-body-bytes", "4096"}})
	cookie := loginAs(t, e.idp, r.URL, oidcprovider.DemoUsername, oidcprovider.DemoPassword)
	endpoint := r.URL + "/mcp"
	v2026 := http.Header{"Mcp-Protocol-Version": {"2026-07-28"}}

	padded := fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ticks","arguments":{"count":1,"pad":%q}}}`, strings.Repeat("x", 8192))
	got := rawMCP(t, endpoint, cookie, padded, v2026)
	if got.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("padded tools/call: %s, want 413", got)
	}
	decodeRPCError(t, got)

	mismatch := `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"ticks","arguments":{"count":1}}}`
	h := http.Header{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo"}}
	for k, v := range v2026 {
		h[k] = v
	}
	got = rawMCP(t, endpoint, cookie, mismatch, h)
	if got.Status != http.StatusBadRequest {
		t.Fatalf("Mcp-Name disagreeing with the body: %s, want 400", got)
	}
	if m := decodeRPCError(t, got); m.Error.Code != -32020 || string(m.ID) != "8" {
		t.Errorf("header mismatch answer = code %d id %s, want -32020 id 8", m.Error.Code, m.ID)
	}
}

// TestPolicyHotReload: a changed policy decides the next request without a
// restart; a policy with a broken rule is refused, naming the rule's field
// path, and the running policy stays.
func TestPolicyHotReload(t *testing.T) {
	e := newEnv(t, envOptions{idp: oidcprovider.Options{Users: policyUsers()}})
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	write := func(rules string) {
		t.Helper()
		indented := strings.ReplaceAll(strings.TrimSpace(rules), "\n", "\n    ")
		if err := os.WriteFile(file, []byte("policy:\n  rules:\n    "+indented+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(toolPolicy)
	r := e.start(t, proxyOptions{args: []string{"--config", file}})
	bob := loginAs(t, e.idp, r.URL, bobUsername, bobPassword)
	bs := sdkSession(t, r.URL+"/mcp", bob, "")
	if _, err := callTool(bs, "countdown", map[string]any{"from": 1}); err == nil {
		t.Fatal("bob ran countdown before the policy allowed it")
	}

	loaded, err := config.Load(config.Source{Args: r.Args})
	if err != nil {
		t.Fatal(err)
	}
	reloader := config.NewReloader(config.Source{Args: r.Args}, loaded, r.Srv.Apply, zap.NewNop())

	write(`
- name: everyone-counts
  effect: allow
  when: 'name in ["countdown", "whoami", "echo"]'
`)
	if !reloader.Reload() {
		t.Fatal("a valid policy was not applied")
	}
	if _, err := callTool(bs, "countdown", map[string]any{"from": 1}); err != nil {
		t.Errorf("after the reload bob's countdown is still refused: %v", err)
	}

	write(`
- name: misspelt
  effect: allow
  when: '"admins" in gruops'
`)
	if reloader.Reload() {
		t.Fatal("a policy with an undeclared variable was applied")
	}
	bad, _ := config.Load(config.Source{Args: r.Args})
	if err := bad.Config.Validate(); err == nil || !strings.Contains(err.Error(), "policy.rules[0].when") {
		t.Errorf("validation error = %v, want it to name policy.rules[0].when", err)
	}
	if _, err := callTool(bs, "countdown", map[string]any{"from": 1}); err != nil {
		t.Errorf("after the refused reload the running policy changed: %v", err)
	}
}

// TestPolicyOnAClaimValue: a tool allowed only for a claim value, through a
// claim listed in policy.claims, decides the cookie caller and the façade's
// bearer caller of the same user alike.
func TestPolicyOnAClaimValue(t *testing.T) {
	users := policyUsers()
	users[0].Claims = map[string]any{"department": "finance"}
	users[1].Claims = map[string]any{"department": "sales"}
	e := newEnv(t, envOptions{redis: true, idp: oidcprovider.Options{Users: users}})
	r := e.start(t, proxyOptions{args: []string{"--policy-claims", "department", "--policy-rules", `
- name: finance-counts
  effect: allow
  when: 'name == "countdown" && claims.?department.orValue("") == "finance"'
- name: everyone-reads
  effect: allow
  when: 'name in ["whoami", "echo"]'
`}})
	demo := sdkSession(t, r.URL+"/mcp", loginAs(t, e.idp, r.URL, oidcprovider.DemoUsername, oidcprovider.DemoPassword), "")
	bob := sdkSession(t, r.URL+"/mcp", loginAs(t, e.idp, r.URL, bobUsername, bobPassword), "")
	if _, err := callTool(demo, "countdown", map[string]any{"from": 1}); err != nil {
		t.Errorf("finance cookie caller's countdown: %v", err)
	}
	if _, err := callTool(bob, "countdown", map[string]any{"from": 1}); err == nil {
		t.Error("sales cookie caller ran countdown")
	}
	c := facadeSession(t, e, r.URL+"/mcp")
	if names := toolNames(t, c.Session); !slices.Contains(names, "countdown") {
		t.Errorf("finance bearer caller's tools/list = %v, want countdown in it", names)
	}
	if _, err := callTool(c.Session, "countdown", map[string]any{"from": 1}); err != nil {
		t.Errorf("finance bearer caller's countdown: %v", err)
	}
}
