package fault

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// Bounds of the MCP policy and token exchange fault tests.
const (
	// faultAnswer bounds the answer to a list request whose MCP server
	// died or answered something unreadable: an error, at once, never a
	// hang until a timeout.
	faultAnswer = 5 * time.Second
	// reloadedStreamTicks is how many progress events the call that is
	// open across a policy reload streams, tickInterval apart.
	reloadedStreamTicks = 8
	tickInterval        = 150 * time.Millisecond
)

// hiddenTool is the tool the policy hides; every fault below asserts that
// its name never reaches the client.
const hiddenTool = "hidden_admin"

// hidingRules show every tool but hiddenTool (the default denies it).
const hidingRules = `
- name: all-but-hidden
  effect: allow
  when: '!name.startsWith("hidden")'
`

// listAnswer is the unfiltered tools/list answer to id 1.
const listAnswer = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"` + hiddenTool + `","inputSchema":{"type":"object"}}]}}`

// faultyMCP is an MCP server that answers every POST the way the request's
// X-Fault header asks (the proxy forwards it): dying in the middle of the
// answer, or answering something the policy cannot read.
func faultyMCP(tb testing.TB) string {
	tb.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		die := func() {
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				tb.Errorf("hijacking the MCP server's connection: %v", err)
				return
			}
			_ = conn.Close()
		}
		half := listAnswer[:strings.Index(listAnswer, hiddenTool)+len(hiddenTool)]
		switch r.Header.Get("X-Fault") {
		case "json-cut":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(listAnswer)))
			_, _ = io.WriteString(w, half)
			die()
		case "sse-cut":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"before\"}}\n\n")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "event: message\ndata: "+half)
			die()
		case "not-json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "<html><body>"+hiddenTool+"</body></html>")
		case "text-plain":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, listAnswer)
		case "gzip":
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			_, _ = io.WriteString(zw, listAnswer)
			_ = zw.Close()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(b.Bytes())
		case "unknown-encoding":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "x-identity-ish")
			_, _ = io.WriteString(w, listAnswer)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, listAnswer)
		}
	})
	ln, err := stack.Listen()
	if err != nil {
		tb.Fatal(err)
	}
	u, stop := stack.Serve(ln, mux)
	tb.Cleanup(stop)
	return u
}

// postMCP posts body to the replica's MCP endpoint with cred and header.
func (r *replica) postMCP(ctx context.Context, cred credential, body string, header http.Header) result {
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}
	for k, v := range header {
		h[k] = v
	}
	return r.send(ctx, http.MethodPost, "/mcp", strings.NewReader(body), cred, h)
}

const toolsList = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`

// The MCP server fails while answering a tools/list, with a policy hiding
// a tool.
//
// Promises: when it dies in the middle of a JSON or an SSE answer (its
// connection closed), the client gets an error or a truncated stream
// within faultAnswer, never the unfiltered list; an SSE event sent before
// the failure still arrives. When it answers with a body that is not JSON,
// in a type that is not JSON-RPC, or compressed (the proxy asks for plain
// bytes), the client gets the JSON-RPC error -32603 for id 1 within
// faultAnswer. In no case does the hidden tool's name reach the client.
func TestPolicyListWhenTheMCPServerFails(t *testing.T) {
	e := newEnv(t)
	e.up = &upstream{URL: faultyMCP(t)}
	r := e.start(t, "A", replicaOptions{args: []string{"--policy-rules", hidingRules}})
	cookie := e.login(t, r, r)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Baseline: a healthy answer is filtered.
	res := r.postMCP(ctx, credential{cookie: cookie}, toolsList, nil)
	if res.Err != nil || res.Status != http.StatusOK || !bytes.Contains(res.Body, []byte(`"echo"`)) || bytes.Contains(res.Body, []byte(hiddenTool)) {
		t.Fatalf("healthy tools/list = %s; want the list without %s", res, hiddenTool)
	}

	for _, tc := range []struct {
		fault string
		// cut: the answer may end in a transport error; otherwise a
		// complete JSON-RPC error is promised.
		cut bool
		// before is what must arrive before the cut.
		before string
	}{
		{fault: "json-cut", cut: true},
		{fault: "sse-cut", cut: true, before: `"before"`},
		{fault: "not-json"},
		{fault: "text-plain"},
		{fault: "gzip"},
		{fault: "unknown-encoding"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			res := r.postMCP(ctx, credential{cookie: cookie}, toolsList, http.Header{"X-Fault": {tc.fault}, "Accept-Encoding": {"gzip"}})
			t.Logf("measured: %s answered in %s: %s", tc.fault, res.Took.Round(time.Millisecond), res)
			if bytes.Contains(res.Body, []byte(hiddenTool)) {
				t.Fatalf("%s: the hidden tool reached the client: %q", tc.fault, res.Body)
			}
			if res.Took > faultAnswer {
				t.Errorf("%s: answered in %s; promised within %s", tc.fault, res.Took, faultAnswer)
			}
			if tc.cut {
				if res.Err == nil && res.Status == http.StatusOK && bytes.Contains(res.Body, []byte(`"result"`)) {
					t.Errorf("%s: a complete result came back after the MCP server died: %s", tc.fault, res)
				}
				if !bytes.Contains(res.Body, []byte(tc.before)) {
					t.Errorf("%s: the event sent before the failure did not arrive: %q", tc.fault, res.Body)
				}
				return
			}
			var answer struct {
				ID    json.RawMessage `json:"id"`
				Error *struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			if res.Err != nil || res.Status != http.StatusOK || res.Header.Get("Content-Encoding") != "" ||
				json.Unmarshal(res.Body, &answer) != nil || answer.Error == nil || answer.Error.Code != -32603 || string(answer.ID) != "1" {
				t.Errorf("%s: %s (Content-Encoding %q); want 200 with the JSON-RPC error -32603 for id 1", tc.fault, res, res.Header.Get("Content-Encoding"))
			}
		})
	}
}

// Redis goes away while token exchange is configured, then comes back. The
// caller is an external-mode bearer caller (a provider-issued JWT the proxy
// validates locally), so the exchange's cache is the only thing on its
// request path that needs Redis.
//
// Promises (README "Token exchange"): while the session store is down an
// MCP request gets 503 session_store_unavailable within storeDownAnswer,
// never a 502 and never the MCP server's answer, and the provider is not
// asked meanwhile (no retry storm); once Redis answers again, exchanges
// work within redisRecovery without a restart, and the MCP server receives
// the exchanged token.
func TestTokenExchangeWhenRedisGoesAway(t *testing.T) {
	const (
		audience     = "https://orders.example"
		externalBase = "https://mcp.example.test"
	)
	e := newEnvWith(t, oidcprovider.Options{
		AccessTokenAudience:    []string{externalBase + "/mcp"},
		TokenExchangeAudiences: []string{audience},
		Clients: []oidcprovider.Client{
			{ID: oidcprovider.DefaultClientID, Secret: oidcprovider.DefaultClientSecret, RedirectURIs: []string{"http://**/oauth2/callback"}},
			{ID: cliClientID, Secret: cliClientSecret, RedirectURIs: []string{cliRedirect}},
		},
	}, redisserver.WithAppendOnly())
	r := e.start(t, "A", replicaOptions{args: []string{
		"--oauth-mode", "external", "--external-url", externalBase,
		"--token-exchange-enabled", "--token-exchange-audience", audience,
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	token := providerToken(ctx, t, e.idp)
	cred := credential{bearer: token}

	downstreamToken := func() (string, error) {
		transport := &mcp.StreamableClientTransport{Endpoint: r.external + "/mcp",
			HTTPClient: &http.Client{Transport: r.client.Transport}, OAuthHandler: mcpclient.StaticToken(token)}
		cctx, cancel := context.WithTimeout(ctx, setupTimeout)
		defer cancel()
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "fault", Version: "v1"}, nil).Connect(cctx, transport, nil)
		if err != nil {
			return "", err
		}
		defer cs.Close()
		res, err := callWhoami(ctx, cs)
		if err != nil {
			return "", err
		}
		raw, _ := json.Marshal(res.StructuredContent)
		var who mcpserver.WhoAmI
		if err := json.Unmarshal(raw, &who); err != nil {
			return "", err
		}
		if tok := who.Headers["X-Downstream-Token"]; tok == token {
			return "", errors.New("the MCP server received the client's own token")
		}
		return who.Headers["X-Downstream-Token"], nil
	}
	if tok, err := downstreamToken(); err != nil || tok == "" {
		t.Fatalf("before the outage: whoami = %q, %v; want an exchanged token", tok, err)
	}

	e.redis.Stop()
	exchangesDuring := e.idp.TokenExchangeRequests()
	for range 3 {
		res := r.postMCP(ctx, cred, initializeRequest, nil)
		if res.Status != http.StatusServiceUnavailable || errorCode(res) != "session_store_unavailable" {
			t.Errorf("Redis down: MCP request = %s; promised 503 session_store_unavailable", res)
		}
		if res.Took > storeDownAnswer {
			t.Errorf("Redis down: answered in %s; promised within %s", res.Took, storeDownAnswer)
		}
		t.Logf("measured: Redis down, MCP request answered %d in %s (bound %s)", res.Status, res.Took.Round(time.Millisecond), storeDownAnswer)
	}
	if !strings.Contains(r.logs.String(), "token exchange cache unavailable") {
		t.Error("Redis down: the 503 did not come from the token exchange (no \"token exchange cache unavailable\" in the log)")
	}
	if n := e.idp.TokenExchangeRequests() - exchangesDuring; n != 0 {
		t.Errorf("%d exchanges at the provider while the cache was down; want none", n)
	}

	e.redis.Restart()
	since := time.Now()
	var last result
	if !waitfor.Poll(redisRecovery, waitfor.Interval, func() bool {
		last = r.postMCP(ctx, cred, initializeRequest, nil)
		return last.Status == http.StatusOK
	}) {
		t.Fatalf("Redis back: MCP requests still %s after %s; promised 200", last, redisRecovery)
	}
	t.Logf("measured: MCP requests served again %s after Redis restarted (bound %s)", time.Since(since).Round(time.Millisecond), redisRecovery)
	if tok, err := downstreamToken(); err != nil || tok == "" {
		t.Fatalf("after the outage: whoami = %q, %v; want an exchanged token", tok, err)
	}
}

// The provider's pre-registered CLI client, which gets provider tokens for
// external-mode callers.
const (
	cliClientID     = "fault-mcp-cli"
	cliClientSecret = "fault-mcp-cli-secret"
	cliRedirect     = "http://127.0.0.1/cli-callback"
)

// providerToken runs an authorization code flow with PKCE for the CLI
// client at the provider and returns the demo user's access token.
func providerToken(ctx context.Context, tb testing.TB, idp *oidcprovider.Provider) string {
	tb.Helper()
	var disc struct {
		Authorization string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
	}
	resp, err := http.Get(idp.DiscoveryURL())
	if err != nil {
		tb.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&disc)
	_ = resp.Body.Close()
	if err != nil {
		tb.Fatalf("provider discovery: %v", err)
	}
	cfg := oauth2.Config{
		ClientID: cliClientID, ClientSecret: cliClientSecret, RedirectURL: cliRedirect,
		Scopes:   []string{"openid", "profile", "email"},
		Endpoint: oauth2.Endpoint{AuthURL: disc.Authorization, TokenURL: disc.Token, AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	cb, err := idp.LoginAs(ctx, nil, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), oidcprovider.DemoUsername, oidcprovider.DemoPassword)
	if err != nil {
		tb.Fatalf("provider login: %v", err)
	}
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		tb.Fatalf("provider token: %v", err)
	}
	return tok.AccessToken
}

// initializeRequest is an MCP client's first request.
const initializeRequest = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fault","version":"v1"}}}`

// cookieSession connects the official SDK client to r with cookie,
// speaking 2025-11-25 (a session, calls answered in SSE).
func cookieSession(ctx context.Context, r *replica, cookie *http.Cookie, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(r.external)
	jar.SetCookies(u, []*http.Cookie{cookie})
	transport := &mcp.StreamableClientTransport{Endpoint: r.external + "/mcp", HTTPClient: &http.Client{Jar: jar, Transport: r.client.Transport}}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	return mcp.NewClient(&mcp.Implementation{Name: "fault", Version: "v1"}, opts).Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
}

// The policy is reloaded while a tools/call's SSE stream is open.
//
// Promises: the open stream is not cut (every one of its progress events
// and its result arrive, as the policy in force when it started allowed);
// a request sent after the reload gets the new decision; both within the
// stream's own length plus faultAnswer.
func TestPolicyReloadWithOpenStreams(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(t.TempDir(), "config.yaml")
	write := func(when string) {
		t.Helper()
		doc := "policy:\n  rules:\n    - name: r\n      effect: allow\n      when: '" + when + "'\n"
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`name in ["ticks", "echo", "whoami"]`)
	r := e.start(t, "A", replicaOptions{args: []string{"--config", file}})
	cookie := e.login(t, r, r)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var progress atomic.Int64
	progressed := make(chan struct{}, reloadedStreamTicks)
	cs, err := cookieSession(ctx, r, cookie, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
			progress.Add(1)
			progressed <- struct{}{}
		},
	})
	if err != nil {
		t.Fatalf("SDK client: %v", err)
	}
	defer cs.Close()

	type outcome struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		callCtx, cancel := context.WithTimeout(ctx, reloadedStreamTicks*tickInterval+setupTimeout)
		defer cancel()
		params := &mcp.CallToolParams{Name: "ticks", Arguments: map[string]any{"count": reloadedStreamTicks, "intervalMs": tickInterval.Milliseconds()}}
		params.SetProgressToken("reload")
		res, err := cs.CallTool(callCtx, params)
		done <- outcome{res, err}
	}()
	select {
	case <-progressed:
	case <-time.After(faultAnswer):
		t.Fatalf("no progress event of the open stream within %s", faultAnswer)
	}

	loaded, err := config.Load(config.Source{Args: r.Args})
	if err != nil {
		t.Fatal(err)
	}
	reloader := config.NewReloader(config.Source{Args: r.Args}, loaded, r.Srv.Apply, zap.NewNop())
	write(`name == "whoami"`)
	if !reloader.Reload() {
		t.Fatal("the new policy was not applied")
	}
	atReload := progress.Load()

	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("echo after the reload: err = %v; want the new policy's denial", err)
	}
	if _, err := callWhoami(ctx, cs); err != nil {
		t.Errorf("whoami after the reload: %v; the new policy allows it", err)
	}
	select {
	case o := <-done:
		if o.err != nil || o.res.IsError {
			t.Fatalf("the stream open across the reload failed: %v %+v", o.err, o.res)
		}
		raw, _ := json.Marshal(o.res.StructuredContent)
		var out mcpserver.TicksOutput
		if err := json.Unmarshal(raw, &out); err != nil || out.Ticks != reloadedStreamTicks {
			t.Errorf("the stream open across the reload ended with %s; want all %d ticks", raw, reloadedStreamTicks)
		}
	case <-time.After(reloadedStreamTicks*tickInterval + faultAnswer):
		t.Fatalf("the stream open across the reload did not finish within %s", reloadedStreamTicks*tickInterval+faultAnswer)
	}
	// The SDK client may run the last progress handler just after the
	// call returned.
	waitfor.Poll(faultAnswer, waitfor.Interval, func() bool { return progress.Load() == reloadedStreamTicks })
	if got := progress.Load(); got != reloadedStreamTicks || atReload >= reloadedStreamTicks {
		t.Errorf("the open stream delivered %d progress events (%d before the reload); want all %d, some after the reload", got, atReload, reloadedStreamTicks)
	}
}
