package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// Names and secrets the suite configures. Long and distinctive, so that a
// search of the logs for them cannot match by accident.
const (
	cookieName   = "mcp-oidc-session"
	cookieSecret = "e2e-cookie-secret-0123456789abcdefghijklmnopqrstuv"
	version      = "e2e-version"
	waitFor      = 20 * time.Second
	// offlineScopes ask for a refresh token (the provider, like most,
	// issues one only for offline_access).
	offlineScopes = "openid,profile,email,offline_access"
)

// ---------------------------------------------------------------------------
// Upstream: the example MCP server plus a few plain endpoints.

// upstream is the protected application: the official-SDK MCP server at
// /mcp, a header dump at /headers (to see every header that reached it, in
// any spelling), a small JSON document at /data, a public page and an SSE
// stream the test releases.
type upstream struct {
	URL     string
	stop    func()
	release chan struct{}
	opened  chan struct{}
	once    sync.Once
}

func startUpstream(tb testing.TB) *upstream {
	tb.Helper()
	ln, err := stack.Listen()
	if err != nil {
		tb.Fatal(err)
	}
	u := &upstream{release: make(chan struct{}), opened: make(chan struct{}, 16)}
	mux := stack.UpstreamMux()
	// The same MCP server answering in JSON instead of SSE, and both
	// stateless, which is how the SDK serves 2026-07-28 clients.
	for path, opts := range map[string]*mcp.StreamableHTTPOptions{
		"/mcp-json":           {JSONResponse: true},
		"/mcp-stateless":      {Stateless: true},
		"/mcp-stateless-json": {Stateless: true, JSONResponse: true},
	} {
		srv := mcpserver.NewServer()
		mux.Handle(path, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, opts))
	}
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	})
	mux.HandleFunc("/data", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true,"items":[1,2,3]}`)
	})
	mux.HandleFunc("/public/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "public page")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		u.opened <- struct{}{}
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: last\n\n")
	})
	u.URL, u.stop = stack.Serve(ln, mux)
	tb.Cleanup(u.Stop)
	return u
}

// Stop closes the upstream and every connection to it.
func (u *upstream) Stop() {
	u.once.Do(u.stop)
}

// ---------------------------------------------------------------------------
// Logs.

// logSink collects the proxy's JSON log lines.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) Sync() error { return nil }

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// entries decodes every log line.
func (s *logSink) entries(tb testing.TB) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// ---------------------------------------------------------------------------
// Environment and proxy replicas.

// env is one identity provider, one upstream and optionally one Redis shared
// by the replicas a test starts.
type env struct {
	idp   *oidcprovider.Provider
	up    *upstream
	redis *redisserver.Server
}

type envOptions struct {
	redis     bool
	redisOpts []redisserver.Option
	idp       oidcprovider.Options
}

func newEnv(tb testing.TB, o envOptions) *env {
	tb.Helper()
	e := &env{idp: oidcprovider.Start(tb, o.idp), up: startUpstream(tb)}
	if o.redis {
		e.redis = redisserver.Start(tb, o.redisOpts...)
	}
	return e
}

// proxyOptions vary one replica.
type proxyOptions struct {
	// args are flags appended after the environment's (later flags win).
	args []string
	// now and httpClient are passed to server.Options.
	now        func() time.Time
	httpClient *http.Client
	// discoveryURL overrides the provider (e.g. a closed port).
	discoveryURL string
	// noWait skips waiting for /readyz.
	noWait bool
	// advertise sets the replica's MCP session advertise address to its
	// own listener, where the other replicas reach it.
	advertise bool
}

// replica is one running proxy and its logs.
type replica struct {
	*stack.Proxy
	Logs *logSink
}

// args returns the flags a user would pass to run a replica against e.
func (e *env) args(listen, admin string, o proxyOptions) []string {
	discovery := e.idp.Issuer()
	if o.discoveryURL != "" {
		discovery = o.discoveryURL
	}
	args := append(stack.Flags(listen, admin, e.up.URL, discovery),
		"--shutdown-grace", "10s",
		"--log-level", "debug",
	)
	if e.redis != nil {
		args = append(args,
			"--session-store", "redis",
			"--redis-url", e.redis.URL(),
			"--session-cookie-secret", cookieSecret,
		)
	}
	if o.advertise {
		args = append(args, "--mcp-session-advertise-address", listen)
	}
	return append(args, o.args...)
}

// start runs a replica on loopback listeners until the test ends.
func (e *env) start(tb testing.TB, o proxyOptions) *replica {
	tb.Helper()
	sink := &logSink{}
	p, err := stack.StartProxy(context.Background(), stack.ProxyOptions{
		Flags: func(listen, admin string) []string { return e.args(listen, admin, o) },
		Logger: func(level zap.AtomicLevel) *zap.Logger {
			return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), sink, level))
		},
		Version: version, Now: o.now, HTTPClient: o.httpClient, NoWait: o.noWait, Timeout: waitFor,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Errorf("Serve returned %v, want nil", err)
		}
	})
	return &replica{Proxy: p, Logs: sink}
}

// reload loads the replica's flags plus extra ones and applies them.
func (r *replica) reload(tb testing.TB, extra ...string) {
	tb.Helper()
	cfg, err := stack.LoadConfig(append(append([]string(nil), r.Args...), extra...))
	if err != nil {
		tb.Fatal(err)
	}
	r.Srv.Apply(cfg)
}

// ---------------------------------------------------------------------------
// HTTP helpers.

// waitStatus polls url until it answers status or the deadline passes.
func waitStatus(tb testing.TB, url string, status int) {
	tb.Helper()
	waitfor.NoError(tb, waitFor, fmt.Sprintf("%s to answer %d", url, status), func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != status {
			return errors.New(resp.Status)
		}
		return nil
	})
}

// noRedirects is a client that shows redirects instead of following them.
func noRedirects(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:           jar,
		Timeout:       waitFor,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// response is a fully read HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// do sends one request with an optional session cookie and headers and
// fails the test on a transport error.
func do(tb testing.TB, method, url string, cookie *http.Cookie, header http.Header) response {
	tb.Helper()
	r, err := send(method, url, cookie, header)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// send is do for goroutines other than the test's.
func send(method, url string, cookie *http.Cookie, header http.Header) (response, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := noRedirects(nil).Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading body: %w", method, url, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// apiError decodes the proxy's JSON error shape.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func decodeError(tb testing.TB, r response) apiError {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Fatalf("error response Content-Type = %q, want JSON (%s)", ct, r)
	}
	var e apiError
	if err := json.Unmarshal(r.Body, &e); err != nil {
		tb.Fatalf("error body is not JSON: %v (%s)", err, r)
	}
	return e
}

// sessionCookieFrom returns the session cookie a response sets, if any.
func sessionCookieFrom(h http.Header) *http.Cookie {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Login.

// loginResult is what a browser login leaves behind.
type loginResult struct {
	Cookie   *http.Cookie
	Callback *url.URL
}

// login runs the browser flow: /oauth2/start on startOn, the provider's
// login page, and the callback delivered to finishOn (another replica when
// they differ). It asserts every step.
func login(tb testing.TB, idp *oidcprovider.Provider, startOn, finishOn, rd string) loginResult {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	client := noRedirects(jar)
	resp, err := client.Get(startOn + "/oauth2/start?rd=" + url.QueryEscape(rd))
	if err != nil {
		tb.Fatal(err)
	}
	_ = resp.Body.Close()
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(authURL, idp.Issuer()+"/") {
		tb.Fatalf("login start: %d Location %q, want 302 to the provider %s", resp.StatusCode, authURL, idp.Issuer())
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cb, err := idp.Login(ctx, nil, authURL)
	if err != nil {
		tb.Fatalf("provider login: %v", err)
	}
	if cb.Query().Get("code") == "" || cb.Query().Get("state") == "" {
		tb.Fatalf("callback without code/state: %s", cb.Redacted())
	}
	target, err := url.Parse(finishOn)
	if err != nil {
		tb.Fatal(err)
	}
	deliver := *cb
	deliver.Host = target.Host
	resp, err = client.Get(deliver.String())
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != rd {
		tb.Fatalf("callback: %d Location %q, want 302 to %q (%s)", resp.StatusCode, resp.Header.Get("Location"), rd, body)
	}
	c := sessionCookieFrom(resp.Header)
	if c == nil || c.Value == "" {
		tb.Fatalf("callback set no session cookie; Set-Cookie: %q", resp.Header.Values("Set-Cookie"))
	}
	return loginResult{Cookie: &http.Cookie{Name: c.Name, Value: c.Value}, Callback: cb}
}

// ---------------------------------------------------------------------------
// MCP client.

// headerTransport adds fixed headers to every request (spoofing attempts).
type headerTransport struct {
	base   http.RoundTripper
	header http.Header
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.header {
		r.Header[k] = v
	}
	return t.base.RoundTrip(r)
}

// mcpSession connects the official SDK client to base+"/mcp" with a cookie
// jar holding the session cookie.
func mcpSession(tb testing.TB, base string, cookie *http.Cookie, extra http.Header) *mcp.ClientSession {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(base)
	jar.SetCookies(u, []*http.Cookie{cookie})
	var rt http.RoundTripper = http.DefaultTransport
	if extra != nil {
		rt = headerTransport{base: rt, header: extra}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	transport := &mcp.StreamableClientTransport{Endpoint: base + "/mcp", HTTPClient: &http.Client{Jar: jar, Transport: rt}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "v1"}, nil).Connect(ctx, transport, nil)
	if err != nil {
		tb.Fatalf("MCP connect through %s: %v", base, err)
	}
	tb.Cleanup(func() { _ = cs.Close() })
	return cs
}

// whoami calls the whoami tool and decodes its structured result.
func whoami(tb testing.TB, cs *mcp.ClientSession) mcpserver.WhoAmI {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		tb.Fatalf("whoami: %v", err)
	}
	if res.IsError {
		tb.Fatalf("whoami returned a tool error: %+v", res.Content)
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		tb.Fatal(err)
	}
	var who mcpserver.WhoAmI
	if err := json.Unmarshal(raw, &who); err != nil {
		tb.Fatalf("whoami result %s: %v", raw, err)
	}
	return who
}

// assertDemoIdentity checks the default header preset carries the demo user
// and that no credential leaked to the MCP server.
func assertDemoIdentity(tb testing.TB, who mcpserver.WhoAmI) {
	tb.Helper()
	want := map[string]string{
		"X-Forwarded-User":   oidcprovider.DemoUserID,
		"X-Forwarded-Email":  oidcprovider.DemoEmail,
		"X-Forwarded-Groups": strings.Join(oidcprovider.DemoGroups(), ","),
	}
	for k, v := range want {
		if got := who.Headers[k]; got != v {
			tb.Errorf("upstream saw %s = %q, want %q (all: %v)", k, got, v, who.Headers)
		}
	}
	if len(who.Leaked) > 0 {
		tb.Errorf("credentials leaked to the MCP server: %v", who.Leaked)
	}
}

// ---------------------------------------------------------------------------
// Clocks and provider traffic.

// tokenRecorder wraps the proxy's HTTP client to the provider. It records
// every token the provider issues (so tests can search the logs for them)
// and the Authorization header the proxy authenticates with; onRefresh runs
// when a refresh response arrives.
type tokenRecorder struct {
	base      http.RoundTripper
	onRefresh func()

	mu      sync.Mutex
	secrets map[string]string // value -> what it is
}

func newTokenRecorder() *tokenRecorder {
	return &tokenRecorder{base: http.DefaultTransport, secrets: map[string]string{}}
}

func (t *tokenRecorder) client() *http.Client {
	return &http.Client{Transport: t, Timeout: 15 * time.Second}
}

func (t *tokenRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	var grant string
	if r.Method == http.MethodPost && r.Body != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		_ = r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		grant = form.Get("grant_type")
		t.add(form.Get("code"), "authorization code (token request)")
		t.add(form.Get("code_verifier"), "PKCE verifier")
		t.add(form.Get("refresh_token"), "refresh token (token request)")
		t.add(form.Get("client_secret"), "client secret")
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		t.add(auth, "Authorization header to the provider")
		if _, cred, ok := strings.Cut(auth, " "); ok {
			t.add(cred, "Authorization credentials to the provider")
		}
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil || grant == "" {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		IDToken      string `json:"id_token"`
	}
	if json.Unmarshal(body, &tok) == nil {
		t.add(tok.AccessToken, "access token")
		t.add(tok.RefreshToken, "refresh token")
		t.add(tok.IDToken, "ID token")
		if parts := strings.Split(tok.IDToken, "."); len(parts) == 3 {
			t.add(parts[2], "ID token signature")
		}
	}
	if grant == "refresh_token" && resp.StatusCode == http.StatusOK && t.onRefresh != nil {
		t.onRefresh()
	}
	return resp, nil
}

func (t *tokenRecorder) add(v, what string) {
	if v == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.secrets[v] = what
}

func (t *tokenRecorder) all() map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]string, len(t.secrets))
	for k, v := range t.secrets {
		out[k] = v
	}
	return out
}
