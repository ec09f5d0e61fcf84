package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

const waitFor = 10 * time.Second

// configYAML renders a valid configuration with the given values.
func configYAML(upstream, level string, emails ...string) string {
	return "upstream: " + upstream + "\n" +
		"log_level: " + level + "\n" +
		"oidc:\n  discovery_url: https://idp.invalid\n  client_id: mcp\n" +
		"authz:\n  allowed_emails: [" + strings.Join(emails, ", ") + "]\n"
}

// writeAtomic replaces path the way careful tools do (write + rename), so a
// reload never sees a half-written file.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// reloadHarness runs a Reloader in the background and exposes what it does.
type reloadHarness struct {
	applied chan Config
	sig     chan os.Signal
	logs    *observer.ObservedLogs
	entries chan zapcore.Entry
}

// startReloader loads src, runs its Reloader until the test ends, and
// returns once the file watch is armed.
func startReloader(t *testing.T, src Source) *reloadHarness {
	t.Helper()
	loaded := mustLoad(t, src)
	if err := loaded.Config.Validate(); err != nil {
		t.Fatalf("initial config invalid: %v", err)
	}
	obsCore, logs := observer.New(zapcore.DebugLevel)
	h := &reloadHarness{
		applied: make(chan Config, 16),
		sig:     make(chan os.Signal), // unbuffered: a send returns once Run took it
		logs:    logs,
		entries: make(chan zapcore.Entry, 1024),
	}
	hooked := zapcore.RegisterHooks(obsCore, func(e zapcore.Entry) error {
		select {
		case h.entries <- e:
		default:
		}
		return nil
	})
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), hooked))
	r := NewReloader(src, loaded, func(c Config) { h.applied <- c }, log)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, h.sig) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not return after cancel")
		}
	})
	// Run adds the watch before its select loop, so once it has taken a
	// signal the watch is armed. The file is unchanged: nothing applies.
	h.hup(t)
	h.waitLog(t, "nothing to apply")
	return h
}

func (h *reloadHarness) hup(t *testing.T) {
	t.Helper()
	select {
	case h.sig <- syscall.SIGHUP:
	case <-time.After(waitFor):
		t.Fatal("Run did not take the signal")
	}
}

func (h *reloadHarness) waitApply(t *testing.T) Config {
	t.Helper()
	select {
	case c := <-h.applied:
		return c
	case <-time.After(waitFor):
		t.Fatal("apply was not called")
		return Config{}
	}
}

// waitLog waits for a log entry whose message contains snippet.
func (h *reloadHarness) waitLog(t *testing.T, snippet string) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case e := <-h.entries:
			if strings.Contains(e.Message, snippet) {
				return
			}
		case <-deadline:
			t.Fatalf("no log entry containing %q", snippet)
		}
	}
}

func tempConfig(t *testing.T, content string) (string, Source) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, Source{Args: []string{"--config", file}}
}

func TestReloaderAppliesFileChange(t *testing.T) {
	file, src := tempConfig(t, configYAML("http://127.0.0.1:8080", "info", "a@x.test"))
	h := startReloader(t, src)

	// Rewritten in place, as an editor or `kubectl cp` would.
	if err := os.WriteFile(file, []byte(configYAML("http://127.0.0.1:8080", "debug", "b@x.test", "c@x.test")), 0o600); err != nil {
		t.Fatal(err)
	}
	c := h.waitApply(t)
	if c.LogLevel != "debug" || !slices.Equal(c.Authz.AllowedEmails, []string{"b@x.test", "c@x.test"}) {
		t.Errorf("applied log_level %q emails %v", c.LogLevel, c.Authz.AllowedEmails)
	}
}

func TestReloaderKeepsRestartOnlySettings(t *testing.T) {
	file, src := tempConfig(t, configYAML("http://127.0.0.1:8080", "info", "a@x.test"))
	h := startReloader(t, src)

	writeAtomic(t, file, configYAML("http://10.9.9.9:9999", "warn", "a@x.test"))
	c := h.waitApply(t)
	if c.LogLevel != "warn" {
		t.Errorf("reloadable log_level not applied: %q", c.LogLevel)
	}
	if c.Upstream != "http://127.0.0.1:8080" {
		t.Errorf("non-reloadable upstream changed to %q", c.Upstream)
	}
	warned := h.logs.FilterMessageSnippet("only after a restart").All()
	if len(warned) == 0 {
		t.Fatal("pending restart-only change not logged")
	}
	if got, ok := warned[0].ContextMap()["settings"].([]any); !ok || !slices.Contains(got, any("upstream")) {
		t.Errorf("restart warning names %v, want upstream", warned[0].ContextMap()["settings"])
	}
}

func TestReloaderRefusesInvalidConfig(t *testing.T) {
	file, src := tempConfig(t, configYAML("http://127.0.0.1:8080", "info", "a@x.test"))
	h := startReloader(t, src)

	writeAtomic(t, file, configYAML("http://127.0.0.1:8080", "loud", "evil@x.test"))
	h.waitLog(t, "reload refused")
	// A SIGHUP with the file still invalid is refused too.
	h.hup(t)
	h.waitLog(t, "reload refused")
	if n := len(h.applied); n != 0 {
		t.Fatalf("invalid configuration applied %d times: %+v", n, <-h.applied)
	}
	refused := h.logs.FilterMessageSnippet("reload refused").All()
	var fe *FieldError
	if err, ok := refused[0].Context[0].Interface.(error); !ok || !errors.As(err, &fe) || fe.Path != "log_level" {
		t.Errorf("refusal does not carry the log_level FieldError: %+v", refused[0].Context)
	}
	if refused[0].Level != zapcore.ErrorLevel {
		t.Errorf("refusal logged at %v, want error", refused[0].Level)
	}

	writeAtomic(t, file, configYAML("http://127.0.0.1:8080", "error", "fixed@x.test"))
	h.hup(t)
	c := h.waitApply(t)
	if c.LogLevel != "error" || !slices.Equal(c.Authz.AllowedEmails, []string{"fixed@x.test"}) {
		t.Errorf("after the fix applied log_level %q emails %v", c.LogLevel, c.Authz.AllowedEmails)
	}
}

// TestReloaderSignal exercises SIGHUP alone: the file lives in memory, so
// no file event can trigger the reload.
func TestReloaderSignal(t *testing.T) {
	var mu sync.Mutex
	content := configYAML("http://127.0.0.1:8080", "info")
	src := Source{
		Args: []string{"--config", filepath.Join(t.TempDir(), "config.yaml")},
		ReadFile: func(string) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			return []byte(content), nil
		},
	}
	h := startReloader(t, src)
	mu.Lock()
	content = configYAML("http://127.0.0.1:8080", "warn", "z@x.test")
	mu.Unlock()
	h.hup(t)
	if c := h.waitApply(t); c.LogLevel != "warn" || !slices.Equal(c.Authz.AllowedEmails, []string{"z@x.test"}) {
		t.Errorf("SIGHUP applied log_level %q emails %v", c.LogLevel, c.Authz.AllowedEmails)
	}
}

// TestReloaderConfigMapSwap mimics the kubelet: config.yaml -> ..data/config.yaml,
// ..data -> ..<timestamp>, and an update renames a new ..data symlink over
// the old one. Nothing named config.yaml changes in the watched directory.
func TestReloaderConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mkVersion := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mkVersion("..2026_01_01", configYAML("http://127.0.0.1:8080", "info", "a@x.test"))
	for _, l := range []struct{ target, name string }{
		{"..2026_01_01", "..data"},
		{filepath.Join("..data", "config.yaml"), "config.yaml"},
	} {
		if err := os.Symlink(l.target, filepath.Join(dir, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	h := startReloader(t, Source{Args: []string{"--config", filepath.Join(dir, "config.yaml")}})

	mkVersion("..2026_01_02", configYAML("http://127.0.0.1:8080", "debug", "new@x.test"))
	if err := os.Symlink("..2026_01_02", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	c := h.waitApply(t)
	if c.LogLevel != "debug" || !slices.Equal(c.Authz.AllowedEmails, []string{"new@x.test"}) {
		t.Errorf("after the swap applied log_level %q emails %v", c.LogLevel, c.Authz.AllowedEmails)
	}
}

// TestReloaderRefusesEmptyFile: an in-place rewrite passes through an empty
// file. With the OIDC settings in the environment the defaults would
// validate, and applying them would drop the allow-list (fail open).
func TestReloaderRefusesEmptyFile(t *testing.T) {
	file, src := tempConfig(t, "authz:\n  allowed_emails: [a@x.test]\n")
	src.Env = []string{"OIDC_DISCOVERY_URL=https://idp.invalid", "OIDC_CLIENT_ID=mcp"}
	h := startReloader(t, src)

	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.waitLog(t, "reload refused")
	h.hup(t)
	h.waitLog(t, "reload refused")
	if n := len(h.applied); n != 0 {
		t.Fatalf("empty file applied: %+v", <-h.applied)
	}
	writeAtomic(t, file, "authz:\n  allowed_emails: [b@x.test]\n")
	if c := h.waitApply(t); !slices.Equal(c.Authz.AllowedEmails, []string{"b@x.test"}) {
		t.Errorf("applied emails %v", c.Authz.AllowedEmails)
	}
}

// Every reload attempt reports its result, so config_reloads_total shows a
// refused configuration and not only the applied ones.
func TestReloaderReportsEveryResult(t *testing.T) {
	var content string
	src := Source{
		Args:     []string{"--config", "/config.yaml"},
		ReadFile: func(string) ([]byte, error) { return []byte(content), nil },
	}
	content = configYAML("http://127.0.0.1:8080", "info", "a@x.test")
	loaded := mustLoad(t, src)
	var results []string
	r := NewReloader(src, loaded, func(Config) {}, zaptest.NewLogger(t)).
		WithObserver(func(result string) { results = append(results, result) })

	steps := []struct {
		name    string
		content string
		want    string
	}{
		{"same file", configYAML("http://127.0.0.1:8080", "info", "a@x.test"), ReloadUnchanged},
		{"restart-only change", configYAML("http://127.0.0.1:9090", "info", "a@x.test"), ReloadUnchanged},
		{"reloadable change", configYAML("http://127.0.0.1:8080", "debug", "a@x.test"), ReloadApplied},
		{"invalid value", configYAML("http://127.0.0.1:8080", "loud", "a@x.test"), ReloadRefused},
		{"unknown key", "bogus: 1\n", ReloadRefused},
		{"empty file", "", ReloadRefused},
	}
	for _, s := range steps {
		content = s.content
		applied := r.Reload()
		if got := results[len(results)-1]; got != s.want || applied != (s.want == ReloadApplied) {
			t.Errorf("%s: result %q (applied %v), want %q", s.name, got, applied, s.want)
		}
	}
	if len(results) != len(steps) {
		t.Errorf("observer called %d times for %d reloads", len(results), len(steps))
	}
}
