package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

const testTimeout = 30 * time.Second

func TestListenAddr(t *testing.T) {
	tests := []struct {
		host, port string
		want       string
		wantErr    bool
	}{
		{"", "", ":8080", false},
		{"", "15081", ":15081", false},
		{"127.0.0.1", "15081", "127.0.0.1:15081", false},
		{"::1", "", "[::1]:8080", false},
		{"localhost", "15081", "", true},
		{"", "0", "", true},
		{"", "65536", "", true},
		{"", "http", "", true},
	}
	for _, tt := range tests {
		got, err := listenAddr(func(k string) string {
			return map[string]string{"HOST": tt.host, "PORT": tt.port}[k]
		})
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("HOST=%q PORT=%q: %q, %v; want %q, error %v", tt.host, tt.port, got, err, tt.want, tt.wantErr)
		}
	}
}

// headerTransport adds the identity header the proxy would forward.
type headerTransport struct{ user string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-User", h.user)
	return http.DefaultTransport.RoundTrip(r)
}

func TestHandler(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	srv := httptest.NewServer(Handler(zap.New(core), nil))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()

	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", resp.StatusCode, body)
	}

	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: headerTransport{"alice"}}}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %v %+v", err, res)
	}
	if got := res.StructuredContent.(map[string]any)["headers"].(map[string]any)["X-Forwarded-User"]; got != "alice" {
		t.Errorf("whoami saw X-Forwarded-User %v, want alice", got)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ticks", Arguments: map[string]any{"count": 0}}); err != nil {
		t.Fatalf("ticks: %v", err)
	}

	calls := logs.FilterMessage("tool call").All()
	if len(calls) != 2 {
		t.Fatalf("%d tool call log lines, want 2: %+v", len(calls), logs.All())
	}
	first := calls[0].ContextMap()
	if first["tool"] != "whoami" || first["user"] != "alice" {
		t.Errorf("first log line %v, want tool whoami user alice", first)
	}
	if second := calls[1].ContextMap(); second["tool"] != "ticks" || second["toolError"] != true {
		t.Errorf("second log line %v, want tool ticks with toolError", second)
	}
}

// TestServeStopsOnCancel serves on a free port and wants a clean return
// once the context ends.
func TestServeStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, zap.NewNop()) }()
	waitfor.NoError(t, testTimeout, "the server to answer /healthz", func() error {
		resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	// A stream far longer than the test: the shutdown must end it.
	resp, err := http.Get("http://" + ln.Addr().String() + "/events?count=600&interval=1s")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open /events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	stopped := time.Now()
	cancel()
	body, err := io.ReadAll(resp.Body)
	if err != nil || !regexp.MustCompile(`event: shutdown\ndata: \d+\n\n$`).Match(body) {
		t.Errorf("the open stream ended with %q, %v; want a clean end with the shutdown event", body, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve = %v, want nil after cancel", err)
		}
		if d := time.Since(stopped); d >= shutdownGrace {
			t.Errorf("serve took %s to stop with an open stream; the stream must end at once, not at the grace period %s", d, shutdownGrace)
		}
	case <-time.After(testTimeout):
		t.Fatal("serve did not return after cancel")
	}
	if err := run(t.Context(), func(string) string { return "x" }, zap.NewNop()); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("run with PORT=x = %v, want the PORT error", err)
	}
}
