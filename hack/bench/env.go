package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
)

const (
	// cookieSecret signs mcp-oidc-proxy's session cookies; any 32+ byte
	// value will do on loopback.
	cookieSecret = "bench-cookie-secret-0123456789abcdef"
	// oauth2ProxyCookieSecret is oauth2-proxy's: exactly 16, 24 or 32 bytes.
	oauth2ProxyCookieSecret = "bench-o2p-secret-0123456789abcde"
	// dataBody is the small JSON response every throughput target ends at.
	dataBody = `{"ok":true}`
	// externalBase is the external URL of the external-mode proxy; the
	// provider's access tokens carry externalBase+"/mcp" as an audience.
	externalBase = "https://mcp.example.test"
	// cliClientID is the client the external-mode token is issued to, as an
	// MCP client registered at the provider would be.
	cliClientID, cliClientSecret, cliRedirect = "bench-cli", "bench-cli-secret", "http://127.0.0.1/cli-callback"
)

// env is everything the scenarios share: the upstream, Redis, the OpenID
// providers, the binaries, and the proxies of the throughput and latency
// scenarios.
type env struct {
	o         options
	root      string // repository root
	proxyBin  string // release build of cmd/mcp-oidc-proxy
	bareBin   string // hack/bench/bareproxy
	o2pBin    string // oauth2-proxy
	upstream  string
	sse       *broadcaster
	redisURL  string
	idp, ext  *oidcprovider.Provider
	procs     map[string]*proc
	startups  []startup
	audit     auditStats // what the audited sidecar wrote while measured
	hopB      hopTally   // what B of the session hop scenario answered
	closeOnce sync.Once
	closers   []func()
}

type startup struct {
	name string
	d    time.Duration
}

func (e *env) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
}

func (e *env) close() {
	e.closeOnce.Do(func() {
		for _, c := range slices.Backward(e.closers) {
			c()
		}
	})
}

// repoRoot walks up from the working directory to the go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		dir = filepath.Dir(dir)
	}
	return "", errors.New("no go.mod above the working directory; run from the repository")
}

// sidecarTags are the Makefile's SIDECAR_TAGS: the release binary's size
// depends on them.
const sidecarTags = "grpcnotrace"

// build compiles the sidecar exactly as `make build` does (so its size is
// the release size) and the bare reverse proxy, into o.work.
func (e *env) build(ctx context.Context) error {
	if err := os.MkdirAll(e.o.work, 0o755); err != nil {
		return err
	}
	e.proxyBin = e.o.proxyBin
	if e.proxyBin == "" {
		e.proxyBin = filepath.Join(e.o.work, "mcp-oidc-proxy")
		if err := goBuild(ctx, e.root, e.proxyBin, "./cmd/mcp-oidc-proxy", sidecarTags, "-s -w"); err != nil {
			return err
		}
	}
	e.bareBin = filepath.Join(e.o.work, "bareproxy")
	if err := goBuild(ctx, e.root, e.bareBin, "./hack/bench/bareproxy", "", ""); err != nil {
		return err
	}
	e.o2pBin = e.o.oauth2Proxy
	if e.o2pBin == "" && e.o.only == "" {
		cmd := exec.CommandContext(ctx, filepath.Join(e.root, "hack/oauth2-proxy-bin.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("hack/oauth2-proxy-bin.sh: %w", err)
		}
		e.o2pBin = strings.TrimSpace(string(out))
	}
	return nil
}

func goBuild(ctx context.Context, root, out, pkg, tags, ldflags string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	args := []string{"build", "-trimpath"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "-o", out, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// startShared starts what every scenario uses: the upstream, Redis and the
// two OpenID providers (one issuing opaque access tokens for the browser
// and façade flows, one issuing audience-bound JWTs for external mode).
func (e *env) startShared(ctx context.Context) error {
	e.sse = newBroadcaster()
	mux := stack.UpstreamMux()
	mux.HandleFunc("/data", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, dataBody)
	})
	mux.Handle("/sse", e.sse)
	mux.Handle(mcpStatelessPath, statelessMCP())
	mux.Handle(mcpStatefulPath, statefulMCP())
	ln, err := stack.Listen()
	if err != nil {
		return err
	}
	url, stop := stack.Serve(ln, mux)
	e.upstream = url
	e.closers = append(e.closers, stop)

	var redisURL string
	var stopRedis func()
	for range 3 { // a port taken between freeAddr and redis-server: try fresh ones
		if redisURL, stopRedis, err = startRedis(ctx, e.o.redisServer); !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		return err
	}
	e.redisURL = redisURL
	e.closers = append(e.closers, stopRedis)

	// Access tokens outlive the run, so no session refresh lands inside a
	// measurement.
	if e.idp, err = e.startIdP(oidcprovider.Options{AccessTokenLifetime: 2 * time.Hour}); err != nil {
		return err
	}
	e.ext, err = e.startIdP(oidcprovider.Options{
		AccessTokenLifetime: 2 * time.Hour,
		AccessTokenAudience: []string{externalBase + "/mcp"},
		Clients: []oidcprovider.Client{
			{ID: oidcprovider.DefaultClientID, Secret: oidcprovider.DefaultClientSecret,
				RedirectURIs: []string{"http://**/oauth2/callback"}},
			{ID: cliClientID, Secret: cliClientSecret, RedirectURIs: []string{cliRedirect}},
		},
	})
	return err
}

func (e *env) startIdP(o oidcprovider.Options) (*oidcprovider.Provider, error) {
	ln, err := stack.Listen()
	if err != nil {
		return nil, err
	}
	p, err := oidcprovider.New(ln, o)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("OpenID provider: %w", err)
	}
	go func() { _ = p.Serve() }()
	e.closers = append(e.closers, func() { _ = p.Close() })
	return p, nil
}

// Proxy kinds.
const (
	kindBare     = "bare"
	kindRedis    = "mcp-redis"
	kindMemory   = "mcp-memory"
	kindExternal = "mcp-external"
	kindO2P      = "oauth2-proxy"
)

// launch starts one proxy of kind as its own process and records its
// start-up time. A child that exits before it is ready is tried again on
// fresh ports, twice at most: another process may have taken a port
// between freeAddr releasing it and the child binding it.
func (e *env) launch(ctx context.Context, kind string) (*proc, error) {
	var err error
	for range 3 {
		var p *proc
		if p, err = e.launchOnce(ctx, kind); !errors.Is(err, errExited) {
			return p, err
		}
	}
	return nil, err
}

func (e *env) launchOnce(ctx context.Context, kind string) (*proc, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var bin, ready, logPath string
	var args []string
	admin := ""
	switch kind {
	case kindBare:
		bin, ready = e.bareBin, "http://"+listen+"/data"
		args = []string{"-listen", listen, "-upstream", e.upstream}
	case kindRedis, kindMemory, kindExternal, kindPolicyNone, kindPolicy, kindPolicyAudit, kindHopA, kindHopB:
		if admin, err = freeAddr(); err != nil {
			return nil, err
		}
		bin, ready = e.proxyBin, "http://"+admin+"/readyz"
		issuer := e.idp.Issuer()
		if kind == kindExternal {
			issuer = e.ext.Issuer()
		}
		if kind == kindPolicyAudit {
			// Its audit lines go to a file, counted after each run.
			logPath = e.auditLogPath()
		}
		args = append(stack.Flags(listen, admin, e.upstream, issuer),
			"--session-cookie-secret", cookieSecret,
			"--log-level", e.o.logLevel,
			"--shutdown-grace", "2s",
			// The run's CPU profiles come from the sidecar's own admin
			// listener.
			"--pprof")
		switch kind {
		case kindRedis:
			args = append(args, "--session-store", "redis", "--redis-url", e.redisURL)
		case kindMemory:
			args = append(args, "--session-store", "memory")
		case kindExternal:
			args = append(args, "--session-store", "memory", "--oauth-mode", "external", "--external-url", externalBase)
		case kindPolicyNone, kindPolicy, kindPolicyAudit:
			// Like kindRedis, with the MCP endpoint on the upstream's
			// stateless JSON server and, but for kindPolicyNone, a policy.
			args = append(args, "--session-store", "redis", "--redis-url", e.redisURL, "--mcp-path", mcpStatelessPath)
			if kind != kindPolicyNone {
				rules, err := policyRulesFlag()
				if err != nil {
					return nil, err
				}
				args = append(args, "--policy-rules", rules, "--policy-default", "deny")
			}
			if kind == kindPolicyAudit {
				args = append(args, "--audit-enabled=true")
			}
		case kindHopA, kindHopB:
			// Two replicas of one deployment: like kindRedis (shared Redis
			// and cookie secret), the MCP endpoint on the upstream's
			// stateful server, each advertising its own serving address
			// for hops, and A's external URL for both, as replicas behind
			// one Service share one.
			args = append(args, "--session-store", "redis", "--redis-url", e.redisURL, "--mcp-path", mcpStatefulPath,
				"--mcp-session-advertise-address", listen)
			if kind == kindHopB {
				a, ok := e.procs[kindHopA]
				if !ok {
					return nil, errors.New("sidecar B of the session hop scenario starts after A")
				}
				i := slices.Index(args, "--external-url")
				args[i+1] = a.url
			}
		}
	case kindO2P:
		bin, ready = e.o2pBin, "http://"+listen+"/ready"
		args = []string{
			"--http-address", listen,
			"--upstream", e.upstream + "/",
			"--provider", "oidc",
			"--oidc-issuer-url", e.idp.Issuer(),
			"--client-id", oidcprovider.DefaultClientID,
			"--client-secret", oidcprovider.DefaultClientSecret,
			"--redirect-url", "http://" + listen + "/oauth2/callback",
			"--cookie-secret", oauth2ProxyCookieSecret,
			"--cookie-secure=false",
			"--email-domain", "*",
			"--session-store-type", "redis",
			"--redis-connection-url", e.redisURL,
			"--skip-provider-button=true",
			// Logging comparable to mcp-oidc-proxy at -log-level error: no
			// line per request.
			"--request-logging=false",
			"--silence-ping-logging=true",
		}
	default:
		return nil, fmt.Errorf("unknown proxy kind %q", kind)
	}
	p, err := startProc(ctx, kind, bin, args, ready, 60*time.Second, logPath)
	if err != nil {
		return nil, err
	}
	p.url = "http://" + listen
	if admin != "" {
		p.admin = "http://" + admin
	}
	e.startups = append(e.startups, startup{kind, p.startup})
	return p, nil
}

// sessionCookie logs the demo user in through a proxy's browser flow
// (mcp-oidc-proxy and oauth2-proxy share /oauth2/start and the callback)
// and returns the Cookie header value the browser then sends.
func sessionCookie(ctx context.Context, base string, idp *oidcprovider.Provider) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		_ = resp.Body.Close()
		return resp, nil
	}
	resp, err := get(base + "/oauth2/start?rd=/")
	if err != nil {
		return "", err
	}
	authURL := resp.Header.Get("Location")
	if authURL == "" {
		return "", fmt.Errorf("login start answered %d without a redirect", resp.StatusCode)
	}
	callback, err := idp.Login(ctx, nil, authURL)
	if err != nil {
		return "", err
	}
	if resp, err = get(callback.String()); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("callback answered %d", resp.StatusCode)
	}
	u, err := url.Parse(base + "/data")
	if err != nil {
		return "", err
	}
	var pairs []string
	for _, c := range jar.Cookies(u) {
		pairs = append(pairs, c.Name+"="+c.Value)
	}
	if len(pairs) == 0 {
		return "", errors.New("no session cookie after the callback")
	}
	return strings.Join(pairs, "; "), nil
}

// facadeToken runs the official MCP SDK client through the façade's OAuth
// flow (registration, login, consent, token) and returns its access token.
func facadeToken(ctx context.Context, base string, idp *oidcprovider.Provider) (string, error) {
	c, err := mcpclient.Connect(ctx, mcpclient.Options{
		Endpoint:   base + "/mcp",
		ClientName: "bench",
		Login:      func(ctx context.Context, authURL string) (*url.URL, error) { return idp.Login(ctx, nil, authURL) },
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	tok, err := c.Tokens.Token()
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// providerToken obtains an access token from the external-mode provider
// with the authorization code flow and PKCE, as an MCP client registered
// there would: a JWT whose audience is the proxy's resource.
func providerToken(ctx context.Context, idp *oidcprovider.Provider) (string, error) {
	cfg := oauth2.Config{
		ClientID: cliClientID, ClientSecret: cliClientSecret, RedirectURL: cliRedirect,
		Scopes: []string{"openid", "profile", "email"},
		Endpoint: oauth2.Endpoint{
			AuthURL: idp.Issuer() + "/authorize", TokenURL: idp.Issuer() + "/oauth/token",
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	if err := discover(ctx, idp, &cfg.Endpoint); err != nil {
		return "", err
	}
	verifier := oauth2.GenerateVerifier()
	cb, err := idp.Login(ctx, nil, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		return "", fmt.Errorf("provider login: %w", err)
	}
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return "", fmt.Errorf("provider token exchange: %w", err)
	}
	return tok.AccessToken, nil
}

// discover fills in the provider's endpoints from its discovery document.
func discover(ctx context.Context, idp *oidcprovider.Provider, ep *oauth2.Endpoint) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, idp.DiscoveryURL(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var d struct {
		Authorization string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	ep.AuthURL, ep.TokenURL = d.Authorization, d.Token
	return nil
}

// ---------------------------------------------------------------------------
// Redis.

// startRedis runs a private, non-persistent redis-server on a free loopback
// port and returns its URL and a function that stops it.
func startRedis(ctx context.Context, bin string) (string, func(), error) {
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	var logs tail
	logs.max = 8 << 10
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
		"--maxclients", "10000")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// Do not outlive the benchmark if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if redisPing(addr) == nil {
			return fmt.Sprintf("redis://%s/0", addr), stop, nil
		}
		select {
		case <-exited:
			return "", nil, fmt.Errorf("redis-server %w: %s", errExited, strings.TrimSpace(logs.String()))
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s did not answer PING within 10s", addr)
		}
	}
}

// redisPing sends an inline PING and expects +PONG.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

// ---------------------------------------------------------------------------
// The SSE upstream.

// broadcaster is the upstream's /sse: every open stream gets one event per
// tick carrying the time the tick fired, so a client can tell how long the
// event took to reach it.
type broadcaster struct {
	mu   sync.Mutex
	cur  *tick
	open atomic.Int64
}

// tick is one event; next is set and done closed when it fires, so a
// stream that fell behind still sees every event in order.
type tick struct {
	done chan struct{}
	at   time.Time
	next *tick
}

func newBroadcaster() *broadcaster {
	return &broadcaster{cur: &tick{done: make(chan struct{})}}
}

// fire sends the next event to every open stream.
func (b *broadcaster) fire(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.cur
	t.at, t.next = now, &tick{done: make(chan struct{})}
	b.cur = t.next
	close(t.done)
}

func (b *broadcaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "no flusher", http.StatusInternalServerError)
		return
	}
	b.mu.Lock()
	t := b.cur
	b.mu.Unlock()
	b.open.Add(1)
	defer b.open.Add(-1)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	buf := make([]byte, 0, 40)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.done:
		}
		buf = append(buf[:0], "data: "...)
		buf = strconv.AppendInt(buf, t.at.UnixNano(), 10)
		buf = append(buf, "\n\n"...)
		if _, err := w.Write(buf); err != nil {
			return
		}
		f.Flush()
		t = t.next
	}
}
