package interop

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/server"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

const (
	// npmTimeout bounds npm ci (a cold cache downloads about 100 packages).
	npmTimeout = 3 * time.Minute
	// clientTimeout bounds one run of the TypeScript client.
	clientTimeout = 60 * time.Second
	// readyTimeout bounds the proxy's start-up.
	readyTimeout = 20 * time.Second
)

// TestTypeScriptSDK runs the official MCP TypeScript SDK client
// (ts/client.mjs) through the façade: RFC 9728 and RFC 8414 discovery and the
// SDK's resource check for /mcp and /mcp/, dynamic registration, the
// browser part (authorize, provider login, consent), finishAuth, listTools,
// callTool whoami, refreshAuthorization, and the transport's own refresh
// after a 401. The cases register the way different TypeScript clients do.
func TestTypeScriptSDK(t *testing.T) {
	node := requireTool(t, "node")
	npm := requireTool(t, "npm")
	dir, err := filepath.Abs("ts")
	if err != nil {
		t.Fatal(err)
	}
	npmCI(t, npm, dir)

	idp := oidcprovider.Start(t, oidcprovider.Options{})
	proxyURL := startStack(t, idp)
	user, pass := idp.DemoUser()

	cases := []struct {
		name     string
		metadata string // TS_INTEROP_CLIENT_METADATA
		repeat   bool   // TS_INTEROP_REPEAT_SCOPE: refreshes repeat the scope, as mcp-remote's do
	}{
		{name: "public client", metadata: `{"token_endpoint_auth_method":"none"}`},
		{name: "confidential client_secret_basic", metadata: `{"token_endpoint_auth_method":"client_secret_basic"}`},
		{name: "confidential client_secret_post with OIDC scopes", metadata: `{"token_endpoint_auth_method":"client_secret_post","scope":"openid email profile offline_access"}`},
		{name: "refresh repeats the requested scope like mcp-remote", metadata: `{"token_endpoint_auth_method":"none","scope":"openid email profile"}`, repeat: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), clientTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "client.mjs", proxyURL, idp.Issuer(), user, pass)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "TS_INTEROP_CLIENT_METADATA="+tc.metadata, "NODE_NO_WARNINGS=1")
			if tc.repeat {
				cmd.Env = append(cmd.Env, "TS_INTEROP_REPEAT_SCOPE=1")
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			t.Logf("client output:\n%s", stdout.String())
			if err != nil {
				t.Fatalf("node client.mjs: %v\nstderr:\n%s", err, stderr.String())
			}
			if s := strings.TrimSpace(stderr.String()); s != "" {
				t.Errorf("client wrote to stderr (SDK warnings count as failures):\n%s", s)
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			if got, want := lines[len(lines)-1], "OK "+oidcprovider.DemoUsername; got != want {
				t.Errorf("last line = %q, want %q", got, want)
			}
		})
	}
}

// requireTool fails (never skips) when a tool the suite needs is missing:
// a skipped interoperability suite would look green while proving nothing.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH (%v): the TypeScript SDK interoperability suite needs Node.js 20 or newer with npm; "+
			"install it, e.g. `sudo apt-get install -y nodejs npm` or from https://nodejs.org", name, err)
	}
	return p
}

// npmCI installs exactly the locked packages. --prefer-offline uses the npm
// cache when it already has them, so repeated runs do not hit the registry.
func npmCI(t *testing.T, npm, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), npmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// startStack runs the example MCP server and the proxy in front of it in
// façade mode with the memory store, configured through flags as a user
// would, and returns the proxy's base URL once it is ready.
func startStack(t *testing.T, idp *oidcprovider.Provider) string {
	t.Helper()
	upLn := listen(t)
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpserver.Handler())
	up := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = up.Serve(upLn) }()
	t.Cleanup(func() { _ = up.Close() })

	ln, adminLn := listen(t), listen(t)
	proxyURL := "http://" + ln.Addr().String()
	loaded, err := config.Load(config.Source{Args: []string{
		"--listen", ln.Addr().String(),
		"--admin-listen", adminLn.Addr().String(),
		"--upstream", "http://" + upLn.Addr().String(),
		"--external-url", proxyURL,
		"--oidc-discovery-url", idp.Issuer(),
		"--oidc-client-id", oidcprovider.DefaultClientID,
		"--oidc-client-secret", oidcprovider.DefaultClientSecret,
		"--session-store", "memory",
		"--session-insecure-cookies",
		"--shutdown-grace", "5s",
		"--log-level", "info",
	}})
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	if err := loaded.Config.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	level := zap.NewAtomicLevelAt(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, loaded.Config, server.Options{Version: "interop", Logger: zaptest.NewLogger(t, zaptest.Level(level)), Level: level})
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, adminLn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	waitReady(t, "http://"+adminLn.Addr().String()+"/readyz", done)
	return proxyURL
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// waitReady polls the readiness probe until it answers 200, Serve fails or
// the deadline passes.
func waitReady(t *testing.T, url string, served chan error) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer")
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		last = err
		select {
		case err := <-served:
			served <- err // for the cleanup that waits for Serve
			t.Fatalf("proxy stopped before it was ready: %v", err)
		case <-tick.C:
		}
	}
	t.Fatalf("%s not ready within %v: %v", url, readyTimeout, last)
}
