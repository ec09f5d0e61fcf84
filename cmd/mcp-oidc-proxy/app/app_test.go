package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

var validEnv = []string{
	"OIDC_DISCOVERY_URL=https://idp.invalid",
	"OIDC_CLIENT_ID=env-client",
}

func TestMainMergesAndHandsValidatedConfigToRun(t *testing.T) {
	files := map[string]string{
		"/etc/proxy.yaml": "upstream: http://127.0.0.1:1111\nlog_level: warn\noidc:\n  client_id: file-client\n",
		"/run/secret":     "s3cret\n",
	}
	read := func(name string) ([]byte, error) {
		if v, ok := files[name]; ok {
			return []byte(v), nil
		}
		return nil, os.ErrNotExist
	}
	var got *Runtime
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), IO{
		Args:     []string{"--config", "/etc/proxy.yaml", "--log-level", "debug", "--oidc-client-secret-file", "/run/secret"},
		Env:      append(validEnv, "MCP_TARGET_PORT=2222"),
		Stdout:   &stdout,
		Stderr:   &stderr,
		ReadFile: read,
	}, func(_ context.Context, rt Runtime) error {
		got = &rt
		return nil
	})
	if code != 0 {
		t.Fatalf("exit code %d, stderr: %s", code, stderr.String())
	}
	if got == nil {
		t.Fatal("run function not called")
	}
	c := got.Config
	checks := []struct{ name, got, want string }{
		{"flag beats file", c.LogLevel, "debug"},
		{"env beats file", c.OIDC.ClientID, "env-client"},
		{"legacy env sets upstream", c.Upstream, "http://127.0.0.1:2222"},
		{"secret file read", c.OIDC.ClientSecret, "s3cret"},
		{"atomic level follows config", got.Level.String(), "debug"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %q, want %q", ch.name, ch.got, ch.want)
		}
	}
}

func TestMainExitCodes(t *testing.T) {
	ok := func(context.Context, Runtime) error { return nil }
	failing := func(context.Context, Runtime) error { return errors.New("listener exploded") }
	tests := []struct {
		name       string
		args       []string
		env        []string
		run        RunFunc
		wantCode   int
		wantStdout string
		wantStderr []string
	}{
		{name: "help", args: []string{"--help"}, run: ok, wantCode: 0, wantStdout: "--oidc-client-id"},
		{name: "version", args: []string{"--version"}, run: ok, wantCode: 0, wantStdout: "mcp-oidc-proxy dev"},
		{name: "unknown flag", args: []string{"--nope"}, run: ok, wantCode: 2, wantStderr: []string{"invalid configuration", "nope"}},
		{name: "every validation error at once", env: []string{"SESSION_STORE=redis"}, run: ok, wantCode: 2,
			wantStderr: []string{"oidc.discovery_url: required", "oidc.client_id: required when auth mode is oidc", "redis.url: required"}},
		{name: "parse and validation errors together", args: []string{"--session-ttl=abc", "--log-level=loud"}, env: []string{"SESSION_STORE=redis"}, run: ok, wantCode: 2,
			wantStderr: []string{`session.ttl: flag --session-ttl: "abc" is not a duration`, `log_level: "loud" is not one of`, "oidc.client_id: required", "redis.url: required"}},
		{name: "run error", env: validEnv, run: failing, wantCode: 1, wantStderr: []string{"listener exploded"}},
		{name: "clean run", env: validEnv, run: ok, wantCode: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), IO{Args: tt.args, Env: tt.env, Stdout: &stdout, Stderr: &stderr}, tt.run)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.wantStdout)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), w)
				}
			}
		})
	}
}

func TestMainNeverPrintsSecretsInErrors(t *testing.T) {
	var stderr bytes.Buffer
	code := Main(context.Background(), IO{
		Env:    []string{"SESSION_STORE=redis", "REDIS_URL=http://user:hunter2hunter2@redis:6379", "COOKIE_SECRET=tooshort-topsecret"},
		Stdout: &bytes.Buffer{}, Stderr: &stderr,
	}, func(context.Context, Runtime) error { return nil })
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, secret := range []string{"hunter2hunter2", "tooshort-topsecret"} {
		if strings.Contains(stderr.String(), secret) {
			t.Errorf("stderr leaks %q: %s", secret, stderr.String())
		}
	}
}

// TestUsageAndREADMEDocumentEverySetting keeps --help and the README in step
// with the settings the loader accepts.
func TestUsageAndREADMEDocumentEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var usage bytes.Buffer
	PrintUsage(&usage)
	for _, f := range config.Fields() {
		for _, want := range append([]string{"--" + f.Flag}, f.Env...) {
			if !strings.Contains(usage.String(), want) {
				t.Errorf("--help does not mention %s", want)
			}
			if !strings.Contains(string(readme), "`"+want+"`") && !strings.Contains(string(readme), "`"+want+"` ") {
				t.Errorf("README does not document %s (regenerate the table with go run ./hack/gendoc)", want)
			}
		}
	}
	for _, legacy := range []string{"MCP_HOST", "MCP_PORT", "MCP_TARGET_HOST", "MCP_TARGET_PORT", config.ConfigFileEnv} {
		if !strings.Contains(string(readme), legacy) {
			t.Errorf("README does not document %s", legacy)
		}
	}
}

// TestApplyMemoryLimit checks the container limit from the environment
// reaches the runtime as 90%, and that GOMEMLIMIT, which the runtime has
// already applied, is left alone.
func TestApplyMemoryLimit(t *testing.T) {
	const before = int64(1) << 62
	tests := []struct {
		name string
		env  []string
		want int64
	}{
		{name: "container limit in bytes", env: []string{"MCP_OIDC_PROXY_MEMORY_LIMIT=1000000000"}, want: 900000000},
		{name: "with a suffix", env: []string{"MCP_OIDC_PROXY_MEMORY_LIMIT=100Mi"}, want: 100 << 20 * 9 / 10},
		{name: "GOMEMLIMIT wins", env: []string{"MCP_OIDC_PROXY_MEMORY_LIMIT=1000000000", "GOMEMLIMIT=64MiB"}, want: before},
		{name: "none", want: before},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			limit := before
			set := func(n int64) int64 {
				old := limit
				if n >= 0 {
					limit = n
				}
				return old
			}
			var got int64
			code := Main(context.Background(), IO{
				Args: []string{"--log-level", "info"}, Env: append(append([]string(nil), validEnv...), tt.env...),
				Stdout: &bytes.Buffer{}, Stderr: &stderr,
			}, func(_ context.Context, rt Runtime) error {
				var err error
				got, err = ApplyMemoryLimit(rt, set)
				return err
			})
			if code != 0 {
				t.Fatalf("exit code %d, stderr: %s", code, stderr.String())
			}
			if got != tt.want || limit != tt.want {
				t.Errorf("limit in force %d (runtime %d), want %d", got, limit, tt.want)
			}
			if logged := strings.Contains(stderr.String(), "Go soft memory limit set"); logged != (len(tt.env) > 0) {
				t.Errorf("start-up log line present %v, want %v: %s", logged, len(tt.env) > 0, stderr.String())
			}
		})
	}
}

func TestMainRefusesABadMemoryLimit(t *testing.T) {
	var stderr bytes.Buffer
	code := Main(context.Background(), IO{
		Env:    append(append([]string(nil), validEnv...), "MCP_OIDC_PROXY_MEMORY_LIMIT=plenty"),
		Stdout: &bytes.Buffer{}, Stderr: &stderr,
	}, func(context.Context, Runtime) error { t.Error("run called with an invalid memory limit"); return nil })
	if code != 2 || !strings.Contains(stderr.String(), "memory_limit") {
		t.Fatalf("exit code %d, stderr %q; want 2 naming memory_limit", code, stderr.String())
	}
}
