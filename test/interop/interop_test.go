package interop

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
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
	upLn, err := stack.Listen()
	if err != nil {
		t.Fatal(err)
	}
	upstream, stopUpstream := stack.Serve(upLn, stack.UpstreamMux())
	t.Cleanup(stopUpstream)

	p, err := stack.StartProxy(context.Background(), stack.ProxyOptions{
		Flags: func(listen, admin string) []string {
			return append(stack.Flags(listen, admin, upstream, idp.Issuer()),
				"--session-store", "memory",
				"--shutdown-grace", "5s",
				"--log-level", "info",
			)
		},
		Logger:  func(level zap.AtomicLevel) *zap.Logger { return zaptest.NewLogger(t, zaptest.Level(level)) },
		Version: "interop", Timeout: readyTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p.URL
}
