package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

const testTimeout = 30 * time.Second

func connect(t *testing.T, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v1"}, opts).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// TestTicksStreamsProgress calls ticks through the official client and
// wants one progress notification per tick, in order, before the result.
func TestTicksStreamsProgress(t *testing.T) {
	var mu sync.Mutex
	var progress []float64
	cs := connect(t, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, req.Params.Progress)
		},
	})
	params := &mcp.CallToolParams{Name: "ticks", Arguments: map[string]any{"count": 3, "intervalMs": 10}}
	params.SetProgressToken("ticks-1")
	res, err := cs.CallTool(t.Context(), params)
	if err != nil || res.IsError {
		t.Fatalf("ticks: %v %+v", err, res)
	}
	var out TicksOutput
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Ticks != 3 {
		t.Errorf("result %s, want ticks 3", b)
	}
	// The client handles notifications on its own goroutine, so the last
	// one may arrive after the result: poll for it.
	var got []float64
	waitfor.Poll(testTimeout, waitfor.Interval, func() bool {
		mu.Lock()
		got = slices.Clone(progress)
		mu.Unlock()
		return len(got) >= 3
	})
	if !slices.Equal(got, []float64{1, 2, 3}) {
		t.Errorf("progress %v, want [1 2 3]", got)
	}
}

func TestTicksRejectsBadArguments(t *testing.T) {
	cs := connect(t, nil)
	tests := []struct {
		name string
		args map[string]any
		want string
	}{
		{"zero count", map[string]any{"count": 0}, "count must be between 1 and 600"},
		{"too many", map[string]any{"count": 601}, "count must be between 1 and 600"},
		{"too fast", map[string]any{"count": 1, "intervalMs": 5}, "interval must be between"},
		{"too slow", map[string]any{"count": 1, "intervalMs": 10001}, "interval must be between"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "ticks", Arguments: tt.args})
			if err != nil {
				t.Fatalf("ticks: %v", err)
			}
			if !res.IsError || len(res.Content) == 0 || !strings.Contains(text(res), tt.want) {
				t.Errorf("result %+v, want a tool error containing %q", res, tt.want)
			}
		})
	}
}

func TestTickStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	n, err := tick(ctx, 100, MinTickInterval, func(i int) error {
		if i == 2 {
			cancel()
		}
		return nil
	})
	if n != 2 || !errors.Is(err, context.Canceled) {
		t.Errorf("tick = %d, %v; want 2, context.Canceled", n, err)
	}
	boom := errors.New("boom")
	n, err = tick(t.Context(), 5, MinTickInterval, func(i int) error {
		if i == 3 {
			return boom
		}
		return nil
	})
	if n != 2 || !errors.Is(err, boom) {
		t.Errorf("tick = %d, %v; want 2, boom", n, err)
	}
}

func TestEvents(t *testing.T) {
	srv := httptest.NewServer(Events(nil))
	t.Cleanup(srv.Close)
	tests := []struct {
		name       string
		method     string
		query      string
		wantStatus int
		wantBody   string
	}{
		{"stream", http.MethodGet, "?count=3&interval=10ms", http.StatusOK,
			"event: tick\ndata: 1\n\nevent: tick\ndata: 2\n\nevent: tick\ndata: 3\n\nevent: done\ndata: 3\n\n"},
		{"no count", http.MethodGet, "", http.StatusBadRequest, "count must be a number\n"},
		{"count out of range", http.MethodGet, "?count=601", http.StatusBadRequest, "count must be between 1 and 600, got 601\n"},
		{"bad interval", http.MethodGet, "?count=1&interval=soon", http.StatusBadRequest, "interval must be a duration such as 1s\n"},
		{"interval out of range", http.MethodGet, "?count=1&interval=1ms", http.StatusBadRequest, "interval must be between 10ms and 10s, got 1ms\n"},
		{"POST", http.MethodPost, "?count=1", http.StatusMethodNotAllowed, "method not allowed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, tt.method, srv.URL+tt.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Errorf("%d %q, want %d %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantStatus == http.StatusOK && resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Errorf("Content-Type %q, want text/event-stream", resp.Header.Get("Content-Type"))
			}
		})
	}
}

// TestEventsStop: closing stop ends an open stream at once with the event
// "shutdown", and the response completes (no truncated body), so a server
// shutting down can end its streams cleanly.
func TestEventsStop(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(Events(stop))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"?count=600&interval=10ms", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("event: tick\ndata: 1\n\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "event: tick\ndata: 1\n\n" {
		t.Fatalf("first event %q, %v", first, err)
	}
	close(stop)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the stream did not end cleanly after stop: %v (read %q)", err, rest)
	}
	if !regexp.MustCompile(`event: shutdown\ndata: \d+\n\n$`).Match(rest) {
		t.Fatalf("after stop the stream sent %q; want it to end with the shutdown event", rest)
	}
	if strings.Contains(string(rest), "event: done") {
		t.Errorf("the stream ran to its end (%q) although it was stopped", rest)
	}
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}
