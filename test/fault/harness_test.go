package fault

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/weblogin"
)

const (
	cookieName   = "mcp-oidc-session"
	cookieSecret = "fault-cookie-secret-0123456789abcdefghijklmnopqrst"
	// setupTimeout bounds set-up steps (start-up, login). It is not a
	// promise, only generous for a loaded 2-core machine.
	setupTimeout = 60 * time.Second
	// offlineScopes ask the provider for a refresh token.
	offlineScopes = "openid,profile,email,offline_access"
)

// ---------------------------------------------------------------------------
// Upstream.

// upstream is the protected application: the official-SDK MCP server at
// /mcp and a small JSON document at /data.
type upstream struct {
	URL string
}

func startUpstream(tb testing.TB) *upstream {
	tb.Helper()
	ln, err := stack.Listen()
	if err != nil {
		tb.Fatal(err)
	}
	mux := stack.UpstreamMux()
	mux.HandleFunc("/data", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"ok":true,"user":%q}`, r.Header.Get("X-Forwarded-User"))
	})
	u := &upstream{}
	var stop func()
	u.URL, stop = stack.Serve(ln, mux)
	tb.Cleanup(stop)
	return u
}

// ---------------------------------------------------------------------------
// Environment and replicas.

// env is one provider, one upstream and optionally the Redis the replicas
// share.
type env struct {
	idp   *oidcprovider.Provider
	up    *upstream
	redis *redisserver.Server
	// redisArgs replace --redis-url (Sentinel tests).
	redisArgs []string
	// external is the URL every replica is configured with, so that a
	// session cookie and a façade token are valid on all of them, as behind
	// a load balancer. It is the first replica's address (the MCP SDK
	// accepts plain HTTP only on loopback); clients reach a chosen replica
	// through dialTo whatever the URL says.
	external string
	firstLn  net.Listener
}

func newEnv(tb testing.TB, redisOpts ...redisserver.Option) *env {
	tb.Helper()
	return newEnvWith(tb, oidcprovider.Options{}, redisOpts...)
}

// newEnvWith is newEnv with a provider configured by idpOpts.
func newEnvWith(tb testing.TB, idpOpts oidcprovider.Options, redisOpts ...redisserver.Option) *env {
	tb.Helper()
	e := &env{idp: oidcprovider.Start(tb, idpOpts), up: startUpstream(tb)}
	ln, err := stack.Listen()
	if err != nil {
		tb.Fatal(err)
	}
	e.firstLn, e.external = ln, "http://"+ln.Addr().String()
	tb.Cleanup(func() {
		if e.firstLn != nil {
			_ = e.firstLn.Close()
		}
	})
	if redisOpts != nil {
		e.redis = redisserver.Start(tb, redisOpts...)
		e.redisArgs = []string{"--redis-url", e.redis.URL()}
	}
	return e
}

// replica is one running proxy and a client that reaches it (whatever
// host a URL names).
type replica struct {
	*stack.Proxy
	name     string
	external string
	client   *http.Client
	// logs are the replica's log lines (JSON).
	logs *syncBuffer
}

type replicaOptions struct {
	args []string
	now  func() time.Time
}

// start runs a replica until the test ends. Every replica shares the
// external URL, the cookie secret (and so the façade signing key) and, when
// the env has one, the Redis store.
func (e *env) start(tb testing.TB, name string, o replicaOptions) *replica {
	tb.Helper()
	sink := &syncBuffer{}
	ln := e.firstLn
	e.firstLn = nil
	p, err := stack.StartProxy(context.Background(), stack.ProxyOptions{
		Listener: ln,
		Flags: func(listen, admin string) []string {
			args := append(stack.Flags(listen, admin, e.up.URL, e.idp.Issuer()),
				"--external-url", e.external,
				"--session-cookie-secret", cookieSecret,
				"--shutdown-grace", "10s",
				"--log-level", "debug",
			)
			if e.redisArgs != nil {
				args = append(append(args, "--session-store", "redis"), e.redisArgs...)
			}
			return append(args, o.args...)
		},
		Logger: func(level zap.AtomicLevel) *zap.Logger {
			return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), sink, level))
		},
		Now: o.now, Timeout: setupTimeout,
	})
	if err != nil {
		tb.Fatal(err)
	}
	r := &replica{Proxy: p, name: name, external: e.external, logs: sink,
		client: &http.Client{Transport: dialTo(strings.TrimPrefix(p.URL, "http://")), Timeout: setupTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Errorf("replica %s: Serve returned %v, want nil", name, err)
		}
		if tb.Failed() {
			tb.Logf("replica %s log tail:\n%s", name, tailOf(sink.String(), 6000))
		}
	})
	return r
}

// dialTo is a transport that connects to addr whatever host the request
// names, so requests carry the external URL's Host as they would behind a
// load balancer, and still reach one chosen replica on loopback.
func dialTo(addr string) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 100,
	}
}

// login runs the browser login, started on start and finished on finish.
func (e *env) login(tb testing.TB, start, finish *replica) *http.Cookie {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := weblogin.Login(ctx, weblogin.Options{
		Provider: e.idp, StartOn: e.external, CookieName: cookieName,
		Transport: start.client.Transport, FinishTransport: finish.client.Transport,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// facadeClient runs the official SDK client through the façade's OAuth
// flow on r and returns the connected client (its session and tokens).
func (e *env) facadeClient(tb testing.TB, r *replica) *mcpclient.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	hc := &http.Client{Transport: r.client.Transport, Timeout: setupTimeout}
	c, err := mcpclient.Connect(ctx, mcpclient.Options{
		Endpoint:         e.external + "/mcp",
		ClientName:       "fault",
		Login:            func(ctx context.Context, u string) (*url.URL, error) { return e.idp.Login(ctx, nil, u) },
		AuthHTTPClient:   hc,
		BrowserTransport: r.client.Transport,
		MCPHTTPClient:    hc,
	})
	if err != nil {
		tb.Fatalf("SDK client through the façade on %s: %v", r.name, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// bearerOf is the façade access token c holds, as a request credential.
func bearerOf(tb testing.TB, c *mcpclient.Client) credential {
	tb.Helper()
	tok, err := c.Tokens.Token()
	if err != nil {
		tb.Fatalf("façade access token: %v", err)
	}
	return credential{bearer: tok.AccessToken}
}

// ---------------------------------------------------------------------------
// Requests.

// result is one fully read response, or the transport error.
type result struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error
	Took   time.Duration
}

func (r result) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	body := string(r.Body)
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	return fmt.Sprintf("%d %s", r.Status, body)
}

// credential is what a request authenticates with.
type credential struct {
	cookie *http.Cookie
	bearer string
}

// get sends GET of path on the external URL to r with cred and extra headers.
func (r *replica) get(ctx context.Context, path string, cred credential, header http.Header) result {
	return r.send(ctx, http.MethodGet, path, nil, cred, header)
}

// send sends one request to the replica's external URL with cred and
// header, and reads the whole answer.
func (r *replica) send(ctx context.Context, method, path string, body io.Reader, cred credential, header http.Header) result {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, r.external+path, body)
	if err != nil {
		return result{Err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if cred.cookie != nil {
		req.AddCookie(cred.cookie)
	}
	if cred.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+cred.bearer)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return result{Err: err, Took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err, Took: time.Since(start)}
}

// jsonAPI is how an API client (not a browser) asks.
var jsonAPI = http.Header{"Accept": {"application/json"}}

// newJar is an empty cookie jar.
func newJar(tb testing.TB) http.CookieJar {
	tb.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return jar
}

// readResult reads resp, started at start, into a result.
func readResult(tb testing.TB, resp *http.Response, start time.Time) result {
	tb.Helper()
	body, err := io.ReadAll(resp.Body)
	return result{Status: resp.StatusCode, Header: resp.Header, Body: body, Err: err, Took: time.Since(start)}
}
