// Command demo runs, on one machine with nothing else installed, a real
// OpenID provider with a demo user, an example MCP server built with the
// official Go SDK, and mcp-oidc-proxy in front of it with the memory store.
// After start-up it proves the chain works by logging in and calling a tool
// through the proxy, first with a browser session cookie, then as an MCP
// client through the whole OAuth flow (registration, login, consent, token),
// and then waits for Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-proxy/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	host := fs.String("host", "localhost", "host name used in the URLs the browser opens")
	proxyPort := fs.Int("proxy-port", 8080, "port of the proxy (what users open)")
	adminPort := fs.Int("admin-port", 8081, "port of the proxy's admin listener")
	idpPort := fs.Int("idp-port", 9400, "port of the local OpenID provider")
	mcpPort := fs.Int("mcp-port", 3000, "port of the example MCP server (loopback only)")
	selfCheck := fs.Bool("self-check", true, "log in and call a tool through the proxy after start-up")
	exitAfterCheck := fs.Bool("exit-after-check", false, "stop after the self-check (for scripts and CI)")
	logLevel := fs.String("log-level", "warn", "proxy log level")
	if err := fs.Parse(args); err != nil {
		return err
	}

	// 1. The OpenID provider.
	idpLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *idpPort))
	if err != nil {
		return fmt.Errorf("OpenID provider port %d: %w (choose another with -idp-port)", *idpPort, err)
	}
	issuer := fmt.Sprintf("http://%s:%d", *host, *idpPort)
	idp, err := oidcprovider.New(idpLn, oidcprovider.Options{Issuer: issuer})
	if err != nil {
		return err
	}
	go func() { _ = idp.Serve() }()
	defer idp.Close()

	// 2. The example MCP server (a page for browsers at /, MCP at /mcp).
	mcpLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *mcpPort))
	if err != nil {
		return fmt.Errorf("MCP server port %d: %w (choose another with -mcp-port)", *mcpPort, err)
	}
	upstreamMux := stack.UpstreamMux()
	upstreamMux.HandleFunc("/", welcomePage)
	upstream, stopUpstream := stack.Serve(mcpLn, upstreamMux)
	defer stopUpstream()

	// 3. The proxy, configured exactly as a user would with flags.
	proxyURL := fmt.Sprintf("http://%s:%d", *host, *proxyPort)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *proxyPort))
	if err != nil {
		return fmt.Errorf("proxy port %d: %w (choose another with -proxy-port)", *proxyPort, err)
	}
	adminLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *adminPort))
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("admin port %d: %w (choose another with -admin-port)", *adminPort, err)
	}
	proxy, err := stack.StartProxy(ctx, stack.ProxyOptions{
		Listener: ln, AdminListener: adminLn,
		Flags: func(listen, admin string) []string {
			return []string{
				"--listen", listen,
				"--admin-listen", admin,
				"--upstream", upstream,
				"--external-url", proxyURL,
				"--oidc-discovery-url", issuer,
				"--oidc-client-id", oidcprovider.DefaultClientID,
				"--oidc-client-secret", oidcprovider.DefaultClientSecret,
				"--session-store", "memory",
				"--session-insecure-cookies",
				"--log-level", *logLevel,
				"--shutdown-grace", "2s",
			}
		},
		Logger:  func(level zap.AtomicLevel) *zap.Logger { return app.NewLogger(os.Stderr, level) },
		Version: "demo", Timeout: 30 * time.Second,
	})
	if err != nil {
		return err
	}
	defer proxy.Stop()

	user, pass := idp.DemoUser()
	fmt.Fprintf(out, `
mcp-oidc-proxy demo is running.

  Open in a browser:   %[1]s/            (you will be sent to the login page)
  Demo credentials:    %[2]s / %[3]s
  Your session (JSON): %[1]s/oauth2/session
  Log out:             %[1]s/oauth2/logout
  MCP endpoint:        %[1]s/mcp          (Streamable HTTP; unauthenticated calls get 401)
  OpenID provider:     %[4]s
  Health and metrics:  http://127.0.0.1:%[5]d/healthz  /readyz  /metrics

`, proxyURL, user, pass, issuer, *adminPort)

	if *selfCheck {
		err := check(ctx, idp, proxyURL, out)
		if err == nil {
			err = oauthCheck(ctx, idp, proxyURL, out)
		}
		if err != nil {
			_ = proxy.Stop()
			return fmt.Errorf("self-check failed: %w", err)
		}
	}
	if !*exitAfterCheck {
		fmt.Fprintln(out, "Press Ctrl-C to stop.")
		<-ctx.Done()
		fmt.Fprintln(out, "\nstopping...")
	}
	return proxy.Stop()
}

// check logs the demo user in through the proxy and calls tools with the
// official MCP SDK client, carrying the session cookie.
func check(ctx context.Context, idp *oidcprovider.Provider, proxyURL string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// Unauthenticated API call: a JSON 401, not a redirect.
	resp, err := client.Post(proxyURL+"/mcp", "application/json", strings.NewReader(`{}`))
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Fprintf(out, "self-check: unauthenticated POST /mcp -> %d\n", resp.StatusCode)
	if resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("want 401, got %d", resp.StatusCode)
	}

	// Browser login: start, log in at the provider, deliver the callback.
	resp, err = client.Get(proxyURL + "/oauth2/start?rd=/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	authURL := resp.Header.Get("Location")
	if authURL == "" {
		return fmt.Errorf("login start answered %d without a redirect", resp.StatusCode)
	}
	callback, err := idp.Login(ctx, nil, authURL)
	if err != nil {
		return err
	}
	resp, err = client.Get(callback.String())
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("callback answered %d", resp.StatusCode)
	}
	fmt.Fprintln(out, "self-check: logged in through the OpenID provider")

	transport := &mcp.StreamableClientTransport{Endpoint: proxyURL + "/mcp", HTTPClient: &http.Client{Jar: jar}}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "demo-check", Version: "v1"}, nil).Connect(ctx, transport, nil)
	if err != nil {
		return fmt.Errorf("MCP initialize through the proxy: %w", err)
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		return fmt.Errorf("calling whoami: %w", err)
	}
	who, _ := json.Marshal(res.StructuredContent)
	fmt.Fprintf(out, "self-check: tools/call whoami through the proxy -> %s\n", who)
	return nil
}

// oauthCheck runs the official MCP SDK client through the MCP authorization
// flow against the proxy's authorization server façade, as Claude Code or
// MCP Inspector would: 401, discovery, dynamic registration, login at the
// provider with the demo credentials, consent, token, then a tool call with
// the bearer token.
func oauthCheck(ctx context.Context, idp *oidcprovider.Provider, proxyURL string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fmt.Fprintln(out, "self-check: MCP client (official Go SDK) connecting to /mcp without a token: 401 -> resource metadata -> authorization server metadata -> dynamic registration")
	c, err := mcpclient.Connect(ctx, mcpclient.Options{
		Endpoint:   proxyURL + "/mcp",
		ClientName: "demo-oauth-check",
		Login:      func(ctx context.Context, authURL string) (*url.URL, error) { return idp.Login(ctx, nil, authURL) },
		Log:        func(step string) { fmt.Fprintf(out, "self-check:   browser: %s\n", step) },
	})
	if err != nil {
		return fmt.Errorf("MCP client through the OAuth flow: %w", err)
	}
	defer c.Close()
	cfg, err := c.Tokens.Config()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "self-check: MCP client registered as %s, got an access token, initialize done\n", cfg.ClientID)
	res, err := c.Session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		return fmt.Errorf("calling whoami with the bearer token: %w", err)
	}
	who, _ := json.Marshal(res.StructuredContent)
	fmt.Fprintf(out, "self-check: MCP client (OAuth) tools/call whoami -> %s\n", who)
	return nil
}

var welcome = template.Must(template.New("w").Parse(`<!doctype html>
<title>mcp-oidc-proxy demo</title>
<h1>Hello{{with .Email}}, {{.}}{{end}}</h1>
<p>This page is served by the example MCP server behind mcp-oidc-proxy. The proxy forwarded these identity headers:</p>
<table border=1 cellpadding=4>{{range $k, $v := .Headers}}<tr><td>{{$k}}</td><td>{{$v}}</td></tr>{{end}}</table>
<p>MCP clients use <code>/mcp</code>. <a href="/oauth2/session">Session</a> · <a href="/oauth2/logout">Log out</a></p>
`))

func welcomePage(w http.ResponseWriter, r *http.Request) {
	headers := map[string]string{}
	for _, h := range []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username", "X-Request-Id"} {
		if v := r.Header.Get(h); v != "" {
			headers[h] = v
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = welcome.Execute(w, map[string]any{"Email": r.Header.Get("X-Forwarded-Email"), "Headers": headers})
}
