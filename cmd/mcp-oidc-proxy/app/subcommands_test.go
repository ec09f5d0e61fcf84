package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/redirect"
)

// countingConn stands in for netlink: the command's kernel path runs in
// test/netns inside a real network namespace; here only the wiring (flags,
// exit codes, log line) is checked, without touching the host's rules.
type countingConn struct {
	rules    []*nftables.Rule
	deleted  int
	flushErr error
}

var _ redirect.Conn = (*countingConn)(nil)

func (c *countingConn) AddTable(t *nftables.Table) *nftables.Table  { return t }
func (c *countingConn) DelTable(*nftables.Table)                    { c.deleted++ }
func (c *countingConn) AddChain(ch *nftables.Chain) *nftables.Chain { return ch }
func (c *countingConn) AddRule(r *nftables.Rule) *nftables.Rule {
	c.rules = append(c.rules, r)
	return r
}
func (c *countingConn) Flush() error { return c.flushErr }

// jsonLines decodes every stderr line as JSON and fails on anything else.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stderr line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func TestInitRedirect(t *testing.T) {
	kernelErr := errors.New("netlink: operation not permitted")
	tests := []struct {
		name       string
		args       []string
		openErr    error
		flushErr   error
		wantCode   int
		wantRules  int
		wantDelete bool
		wantStderr string
		wantLog    string
	}{
		{name: "installs", args: []string{"--port", "8080", "--to", "15080"}, wantCode: 0, wantRules: 1, wantLog: "redirect installed"},
		{name: "removes", args: []string{"--remove"}, wantCode: 0, wantDelete: true, wantLog: "redirect removed"},
		{name: "missing --to", args: []string{"--port", "8080"}, wantCode: 2, wantStderr: "target port 0 is not in 1-65535"},
		{name: "port out of range", args: []string{"--port", "70000", "--to", "15080"}, wantCode: 2, wantStderr: "port 70000 is not in 1-65535"},
		{name: "same port", args: []string{"--port", "8080", "--to", "8080"}, wantCode: 2, wantStderr: "both 8080"},
		{name: "not a number", args: []string{"--port", "http", "--to", "15080"}, wantCode: 2, wantStderr: "invalid value \"http\" for flag -port"},
		{name: "unknown flag", args: []string{"--ports", "8080"}, wantCode: 2, wantStderr: "flag provided but not defined: -ports"},
		{name: "positional argument", args: []string{"--port", "8080", "--to", "15080", "extra"}, wantCode: 2, wantStderr: "unexpected arguments: extra"},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStderr: "Usage: mcp-oidc-proxy init-redirect"},
		{name: "netlink unavailable", args: []string{"--port", "8080", "--to", "15080"}, openErr: kernelErr, wantCode: 1, wantLog: "cannot reach nftables"},
		{name: "kernel refuses", args: []string{"--port", "8080", "--to", "15080"}, flushErr: kernelErr, wantCode: 1, wantLog: "installing the redirect failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := &countingConn{flushErr: tt.flushErr}
			opened := false
			var stderr bytes.Buffer
			code := initRedirect(IO{Stderr: &stderr}, tt.args, func() (redirect.Conn, error) {
				opened = true
				return conn, tt.openErr
			})
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if tt.wantCode == 2 && opened {
				t.Error("a usage error reached netlink")
			}
			if len(conn.rules) != tt.wantRules && tt.flushErr == nil {
				t.Errorf("%d rules queued, want %d", len(conn.rules), tt.wantRules)
			}
			if tt.wantDelete && conn.deleted == 0 {
				t.Error("--remove deleted nothing")
			}
			if tt.wantStderr != "" && !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
			if tt.wantLog != "" {
				lines := jsonLines(t, stderr.String())
				if len(lines) != 1 || lines[0]["msg"] != tt.wantLog {
					t.Fatalf("log lines %v, want exactly one with msg %q", lines, tt.wantLog)
				}
				if tt.wantCode == 0 && tt.wantRules == 1 && (lines[0]["port"] != 8080.0 || lines[0]["to"] != 15080.0) {
					t.Errorf("log line %v does not name the ports", lines[0])
				}
			}
		})
	}
}

func TestMainDispatchesSubcommands(t *testing.T) {
	never := func(context.Context, Runtime) error {
		t.Error("the proxy ran for a subcommand")
		return nil
	}
	tests := []struct {
		args       []string
		wantCode   int
		wantStderr string
	}{
		// Validation fails before netlink is opened, so these never touch
		// the host's rules.
		{[]string{config.CmdInitRedirect, "--port", "0", "--to", "1"}, 2, "mcp-oidc-proxy init-redirect: invalid redirect rule"},
		{[]string{config.CmdWait}, 2, "--url is required"},
		{[]string{config.CmdWait, "--url", "/healthz"}, 2, "absolute http or https URL"},
		{[]string{config.CmdWait, "--url", "ftp://127.0.0.1/"}, 2, "absolute http or https URL"},
		{[]string{config.CmdWait, "--url", "http://127.0.0.1:1/", "--timeout", "0s"}, 2, "--timeout must be positive"},
		{[]string{config.CmdWait, "--url", "http://127.0.0.1:1/", "--timeout", "soon"}, 2, "invalid value \"soon\" for flag -timeout"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), IO{Args: tt.args, Stdout: &stdout, Stderr: &stderr}, never)
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("exit %d stderr %q, want %d containing %q", code, stderr.String(), tt.wantCode, tt.wantStderr)
			}
		})
	}
}

func TestWait(t *testing.T) {
	t.Run("ready after some attempts", func(t *testing.T) {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) < 3 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		defer srv.Close()
		var stderr bytes.Buffer
		code := Main(context.Background(), IO{Args: []string{config.CmdWait, "--url", srv.URL + "/healthz", "--timeout", "20s", "--interval", "10ms"}, Stderr: &stderr}, nil)
		if code != 0 {
			t.Fatalf("exit %d, stderr %s", code, stderr.String())
		}
		if got := n.Load(); got != 3 {
			t.Errorf("%d requests, want 3 (stops at the first 2xx)", got)
		}
		lines := jsonLines(t, stderr.String())
		if len(lines) != 1 || lines[0]["msg"] != "ready" || lines[0]["attempts"] != 3.0 {
			t.Errorf("log %v, want one 'ready' line with attempts 3", lines)
		}
	})

	t.Run("never ready", func(t *testing.T) {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		}))
		defer srv.Close()
		var stderr bytes.Buffer
		start := time.Now()
		code := Main(context.Background(), IO{Args: []string{config.CmdWait, "--url", srv.URL, "--timeout", "700ms"}, Stderr: &stderr}, nil)
		elapsed := time.Since(start)
		if code != 1 {
			t.Fatalf("exit %d, want 1; stderr %s", code, stderr.String())
		}
		if elapsed > 5*time.Second {
			t.Errorf("took %s for a 700ms timeout", elapsed)
		}
		// Polls every ~200ms: a handful of attempts, not a busy loop.
		if got := n.Load(); got < 2 || got > 6 {
			t.Errorf("%d attempts in 700ms, want about 4 at a 200ms interval", got)
		}
		lines := jsonLines(t, stderr.String())
		if len(lines) != 1 || lines[0]["last_problem"] != "status 502" || !strings.Contains(lines[0]["msg"].(string), "not ready") {
			t.Errorf("log %v, want one 'not ready' line naming status 502", lines)
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		var stderr bytes.Buffer
		code := Main(context.Background(), IO{Args: []string{config.CmdWait, "--url", url, "--timeout", "300ms"}, Stderr: &stderr}, nil)
		if code != 1 || !strings.Contains(stderr.String(), "connection refused") {
			t.Fatalf("exit %d stderr %q, want 1 naming the refused connection", code, stderr.String())
		}
	})
}

func TestAppProbesFromEnvironment(t *testing.T) {
	valid := `{"/app-probes/app/liveness":{"tcpSocket":{"port":8080}}}`
	tests := []struct {
		name    string
		env     []string
		want    int
		wantErr bool
	}{
		{name: "absent", env: []string{"HOME=/"}, want: 0},
		{name: "one probe", env: []string{probe.EnvVar + "=" + valid}, want: 1},
		{name: "last wins", env: []string{probe.EnvVar + "=not json", probe.EnvVar + "=" + valid}, want: 1},
		{name: "invalid JSON", env: []string{probe.EnvVar + "={"}, wantErr: true},
		{name: "no handler", env: []string{probe.EnvVar + `={"/app-probes/a/liveness":{}}`}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := AppProbes(tt.env)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), probe.EnvVar) {
					t.Fatalf("error %v, want one naming %s", err, probe.EnvVar)
				}
				return
			}
			if err != nil || len(set) != tt.want {
				t.Fatalf("got %d probes, err %v; want %d", len(set), err, tt.want)
			}
		})
	}
}

func TestServeRefusesInvalidAppProbes(t *testing.T) {
	var stderr bytes.Buffer
	code := Main(context.Background(), IO{
		Args: []string{"--auth-mode", "bypass", "--allow-insecure-bypass", "--upstream", "http://127.0.0.1:1"},
		Env:  []string{probe.EnvVar + "=[1,2"}, Stderr: &stderr,
	}, Serve)
	if code != 1 || !strings.Contains(stderr.String(), probe.EnvVar) {
		t.Fatalf("exit %d stderr %q, want 1 naming %s", code, stderr.String(), probe.EnvVar)
	}
}

// CheckSubcommand judges a command line exactly as the subcommand would,
// without acting (no netlink, no polling).
func TestCheckSubcommand(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		ok, bad bool
	}{
		{config.InitRedirectArgs(8080, 15080), true, false},
		{[]string{config.CmdInitRedirect, "--remove"}, true, false},
		{[]string{config.CmdInitRedirect, "--port", "0", "--to", "1"}, true, true},
		{[]string{config.CmdInitRedirect, "--port", "80", "--to", "81", "extra"}, true, true},
		{[]string{config.CmdInitRedirect, "--prot", "80"}, true, true},
		{config.WaitArgs("http://127.0.0.1:15090/healthz", time.Minute), true, false},
		{[]string{config.CmdWait, "--url", "/healthz"}, true, true},
		{[]string{config.CmdWait, "--url", "http://127.0.0.1:1/", "--timeout", "soon"}, true, true},
		{[]string{"--listen=:15080"}, false, false},
		{nil, false, false},
	} {
		ok, err := CheckSubcommand(tc.args)
		if ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("CheckSubcommand(%q) = %v, %v; want subcommand=%v, refused=%v", tc.args, ok, err, tc.ok, tc.bad)
		}
	}
}
