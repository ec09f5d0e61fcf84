package browser

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/syncbuf"
)

const (
	// chromiumPath is where Debian's chromium package installs the browser
	// (hack/ensure-test-deps.sh installs it).
	chromiumPath = "/usr/bin/chromium"
	// stepTimeout bounds one browser step (a navigation plus the wait for
	// the element that proves the page arrived).
	stepTimeout = 20 * time.Second
	waitFor     = 20 * time.Second
	version     = "browser-test"
)

// ---------------------------------------------------------------------------
// Upstream.

// welcomePage renders the identity the proxy forwarded, like hack/demo's
// landing page, so the browser can see who it is logged in as.
var welcomePage = template.Must(template.New("welcome").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Upstream</title></head><body>
<h1 id="hello">Hello, {{.Email}}</h1>
<p id="user">{{.User}}</p>
</body></html>
`))

// startUpstream runs the example MCP server at /mcp and the welcome page
// everywhere else.
func startUpstream(tb testing.TB) string {
	tb.Helper()
	mux := stack.UpstreamMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = welcomePage.Execute(w, map[string]string{
			"Email": r.Header.Get("X-Forwarded-Email"),
			"User":  r.Header.Get("X-Forwarded-User"),
		})
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv.URL
}

// ---------------------------------------------------------------------------
// The OAuth client's redirect URI.

// redirectCatcher is an OAuth client's loopback redirect URI (RFC 8252): it
// records the query of every request and shows a page the browser can wait
// for.
type redirectCatcher struct {
	URL string // the redirect URI to register
	got chan url.Values
}

func startRedirectCatcher(tb testing.TB) *redirectCatcher {
	tb.Helper()
	c := &redirectCatcher{got: make(chan url.Values, 4)}
	mux := http.NewServeMux()
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		select {
		case c.got <- r.URL.Query():
		default: // more redirects than a test expects; the test sees the first ones
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!doctype html><html><head><title>Client</title></head><body><h1 id="received">Redirect received</h1></body></html>`)
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	c.URL = srv.URL + "/callback"
	return c
}

// next returns the query of the next redirect, failing after waitFor.
func (c *redirectCatcher) next(tb testing.TB) url.Values {
	tb.Helper()
	select {
	case q := <-c.got:
		return q
	case <-time.After(waitFor):
		tb.Fatalf("no redirect reached %s within %v", c.URL, waitFor)
		return nil
	}
}

// ---------------------------------------------------------------------------
// Logs.

// syncBuffer collects the writes of several goroutines (the proxy's
// logger, Chromium's output) and is chromedp's error log.
type syncBuffer struct{ syncbuf.Buffer }

func (s *syncBuffer) Printf(format string, args ...any) {
	_, _ = fmt.Fprintf(s, format+"\n", args...)
}

// dumpOnFailure prints what a buffer collected when the test failed; a
// passing test stays quiet.
func dumpOnFailure(tb testing.TB, what string, b *syncBuffer) {
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("%s:\n%s", what, b.String())
		}
	})
}

// ---------------------------------------------------------------------------
// Environment.

// env is the OpenID provider, the upstream and one proxy replica in façade
// mode, configured through flags exactly as a user would.
type env struct {
	idp   *oidcprovider.Provider
	proxy string
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	e := &env{idp: oidcprovider.Start(tb, oidcprovider.Options{})}
	upstream := startUpstream(tb)

	logs := &syncBuffer{}
	dumpOnFailure(tb, "proxy log", logs)
	p, err := stack.StartProxy(context.Background(), stack.ProxyOptions{
		Flags: func(listen, admin string) []string {
			return append(stack.Flags(listen, admin, upstream, e.idp.Issuer()),
				"--oauth-mode", "facade",
				"--shutdown-grace", "5s",
				"--log-level", "debug",
			)
		},
		Logger: func(level zap.AtomicLevel) *zap.Logger {
			return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, level))
		},
		Version: version, Timeout: waitFor,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Errorf("Serve returned %v, want nil", err)
		}
	})
	e.proxy = p.URL
	return e
}

// ---------------------------------------------------------------------------
// Chromium.

// chromiumOptions are the flags the browser runs with. The machine has no
// internet: without the background-networking, component-update and sync
// switches Chromium keeps retrying connections nobody answers.
func chromiumOptions(userDataDir string, output io.Writer) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.WindowSize(1024, 768),
		chromedp.UserDataDir(userDataDir),
		chromedp.CombinedOutput(output),
	}
}

// startBrowser starts one Chromium for the test with a fresh profile and
// returns its first tab's context. Chromium is stopped when the test ends.
// A browser that cannot start fails the test with the reason.
func startBrowser(tb testing.TB) context.Context {
	tb.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		tb.Fatalf("Chromium is required: %v; install it with: sudo apt-get install -y chromium (or run hack/ensure-test-deps.sh as root)", err)
	}
	// Registered first so it is removed last, after Chromium has exited.
	profile := tb.TempDir()
	output := &syncBuffer{}
	dumpOnFailure(tb, "chromium output and chromedp errors", output)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromiumOptions(profile, output)...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(output.Printf), chromedp.WithLogf(output.Printf))
	tb.Cleanup(func() {
		// Close gracefully within a bound, then make sure the process is
		// gone (the allocator kills it and waits).
		closeCtx, cancelClose := context.WithTimeout(ctx, 5*time.Second)
		defer cancelClose()
		_ = chromedp.Cancel(closeCtx)
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not carry a timeout (the
	// timeout would stop the browser), so the start is bounded separately.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			tb.Fatalf("starting Chromium (%s): %v\n%s", chromiumPath, err, output.String())
		}
	case <-time.After(waitFor):
		cancel()
		tb.Fatalf("Chromium (%s) did not start within %v\n%s", chromiumPath, waitFor, output.String())
	}
	return ctx
}

// tab is one page in its own browser context (its own cookie jar), so a
// tab starts logged out whatever other tabs did.
type tab struct {
	tb  testing.TB
	ctx context.Context
}

// newTab opens a tab in a fresh browser context of browser.
func newTab(tb testing.TB, browser context.Context) *tab {
	tb.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	tb.Cleanup(cancel)
	opened := make(chan error, 1)
	go func() { opened <- chromedp.Do(ctx) }()
	select {
	case err := <-opened:
		if err != nil {
			tb.Fatalf("opening a tab in a new browser context: %v", err)
		}
	case <-time.After(waitFor):
		tb.Fatalf("opening a tab did not finish within %v", waitFor)
	}
	return &tab{tb: tb, ctx: ctx}
}

// do runs browser steps with a deadline and fails the test with the page's
// location when one of them does not complete.
func (t *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	t.tb.Helper()
	ctx, cancel := context.WithTimeout(t.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.tb.Fatalf("%s: %v (browser at %s)", what, err, t.locationOrErr())
	}
}

// location is the URL the tab shows.
func (t *tab) location() string {
	t.tb.Helper()
	ctx, cancel := context.WithTimeout(t.ctx, stepTimeout)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.tb.Fatalf("reading the location: %v", err)
	}
	return loc
}

func (t *tab) locationOrErr() string {
	ctx, cancel := context.WithTimeout(t.ctx, 2*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unknown: " + err.Error()
	}
	return loc
}

// text is the rendered text of the first element matching a CSS selector.
func (t *tab) text(sel string) string {
	t.tb.Helper()
	ctx, cancel := context.WithTimeout(t.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.tb.Fatalf("text of %s: %v (browser at %s)", sel, err, t.locationOrErr())
	}
	return s
}

// screenshot captures the whole page as PNG (quality 100 selects PNG).
func (t *tab) screenshot() []byte {
	t.tb.Helper()
	ctx, cancel := context.WithTimeout(t.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.tb.Fatalf("screenshot: %v", err)
	}
	return png
}

// loginAtProvider waits for the provider's login form (proving the browser
// was sent there), fills in the demo user and submits it.
func (t *tab) loginAtProvider(idp *oidcprovider.Provider) {
	t.tb.Helper()
	t.do("waiting for the provider's login form", chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)))
	if loc := t.location(); !strings.HasPrefix(loc, idp.Issuer()+"/login/username") {
		t.tb.Fatalf("login form shown at %s, want the provider's %s/login/username", loc, idp.Issuer())
	}
	user, password := idp.DemoUser()
	t.do("submitting the login form",
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	)
}
