// Package mcpserver is the example MCP server used by the demo and the
// end-to-end tests: a real server built with the official Go SDK, with tools
// that reveal what the proxy forwarded.
package mcpserver

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// IdentityHeaders are the headers the whoami tool reports. They cover both
// header presets of the proxy.
var identityHeaders = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username",
	"X-User-ID", "X-User-Email", "X-User-Name", "X-User-Groups",
	// The token exchange's default header (token_exchange.header).
	"X-Downstream-Token",
}

// WhoAmI is the structured result of the whoami tool.
type WhoAmI struct {
	Headers map[string]string `json:"headers"`
	// Leaked lists credentials that reached the server although the proxy
	// must strip them (Authorization, the proxy's cookies). Always empty
	// when the proxy works.
	Leaked []string `json:"leaked,omitempty"`
}

// EchoInput is the echo tool's argument.
type EchoInput struct {
	Text string `json:"text" jsonschema:"the text to echo back"`
}

// EchoOutput is the echo tool's result.
type EchoOutput struct {
	Text string `json:"text"`
}

// CountInput is the countdown tool's argument.
type CountInput struct {
	From int `json:"from" jsonschema:"count down from this number (at most 20)"`
}

// CountOutput is the countdown tool's result.
type CountOutput struct {
	Done bool `json:"done"`
}

// TicksInput is the ticks tool's argument.
type TicksInput struct {
	Count      int `json:"count" jsonschema:"how many ticks to send (1 to 600)"`
	IntervalMS int `json:"intervalMs,omitempty" jsonschema:"milliseconds between ticks (10 to 10000, default 1000)"`
}

// TicksOutput is the ticks tool's result: how many ticks were sent.
type TicksOutput struct {
	Ticks int `json:"ticks"`
}

// Limits of the ticks tool and the events stream: a stream lasts at most
// MaxTicks times MaxTickInterval.
const (
	MaxTicks            = 600
	MinTickInterval     = 10 * time.Millisecond
	MaxTickInterval     = 10 * time.Second
	DefaultTickInterval = time.Second
)

// tickInterval checks a requested tick count and interval (zero means the
// default) and returns the interval to use.
func tickInterval(count int, interval time.Duration) (time.Duration, error) {
	if count < 1 || count > MaxTicks {
		return 0, fmt.Errorf("count must be between 1 and %d, got %d", MaxTicks, count)
	}
	if interval == 0 {
		return DefaultTickInterval, nil
	}
	if interval < MinTickInterval || interval > MaxTickInterval {
		return 0, fmt.Errorf("interval must be between %s and %s, got %s", MinTickInterval, MaxTickInterval, interval)
	}
	return interval, nil
}

// tick calls send count times, interval apart (the first after one
// interval), and stops early when ctx ends or send fails.
func tick(ctx context.Context, count int, interval time.Duration, send func(i int) error) (int, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 1; i <= count; i++ {
		select {
		case <-ctx.Done():
			return i - 1, ctx.Err()
		case <-t.C:
		}
		if err := send(i); err != nil {
			return i - 1, err
		}
	}
	return count, nil
}

// NewServer returns the MCP server with the example tools.
func NewServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcp-oidc-proxy-example", Version: "v1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "Shows the identity headers the proxy forwarded"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, WhoAmI, error) {
			out := WhoAmI{Headers: map[string]string{}}
			if req.Extra != nil && req.Extra.Header != nil {
				h := req.Extra.Header
				for _, name := range identityHeaders {
					if v := h.Get(name); v != "" {
						out.Headers[name] = v
					}
				}
				if h.Get("Authorization") != "" {
					out.Leaked = append(out.Leaked, "Authorization")
				}
				for _, c := range (&http.Request{Header: h}).Cookies() {
					if strings.Contains(c.Name, "mcp-oidc") {
						out.Leaked = append(out.Leaked, "cookie "+c.Name)
					}
				}
			}
			return nil, out, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echoes the text back"},
		func(ctx context.Context, req *mcp.CallToolRequest, in EchoInput) (*mcp.CallToolResult, EchoOutput, error) {
			return nil, EchoOutput{Text: in.Text}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "countdown", Description: "Streams progress notifications while counting down"},
		func(ctx context.Context, req *mcp.CallToolRequest, in CountInput) (*mcp.CallToolResult, CountOutput, error) {
			if in.From > 20 {
				return nil, CountOutput{}, fmt.Errorf("from must be at most 20")
			}
			token := req.Params.GetProgressToken()
			for i := in.From; i > 0; i-- {
				if token != nil {
					err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
						ProgressToken: token, Progress: float64(in.From - i + 1), Total: float64(in.From),
						Message: fmt.Sprintf("%d", i),
					})
					if err != nil {
						return nil, CountOutput{}, err
					}
				}
			}
			return nil, CountOutput{Done: true}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "ticks", Description: "Sends a progress notification every interval (default 1s) for count ticks, " +
		"so the call's SSE stream stays open for count intervals"},
		func(ctx context.Context, req *mcp.CallToolRequest, in TicksInput) (*mcp.CallToolResult, TicksOutput, error) {
			interval, err := tickInterval(in.Count, time.Duration(in.IntervalMS)*time.Millisecond)
			if err != nil {
				return nil, TicksOutput{}, err
			}
			token := req.Params.GetProgressToken()
			n, err := tick(ctx, in.Count, interval, func(i int) error {
				if token == nil {
					return nil
				}
				return req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: token, Progress: float64(i), Total: float64(in.Count),
					Message: fmt.Sprintf("tick %d", i),
				})
			})
			if err != nil {
				return nil, TicksOutput{Ticks: n}, fmt.Errorf("after %d ticks: %w", n, err)
			}
			return nil, TicksOutput{Ticks: n}, nil
		})
	return s
}

// Events serves a plain Server-Sent Events stream (not MCP) for clients
// that only need a long-lived stream: GET ?count=N&interval=D sends the
// events "tick" with data 1..N, D apart (default 1s), then "done" with data
// N, and ends the response. Closing stop (nil: never) ends every open
// stream early with the event "shutdown" (data: the ticks sent), so a
// server that is shutting down completes its streams instead of leaving
// them to be cut when the process exits.
func Events(stop <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		count, err := strconv.Atoi(r.URL.Query().Get("count"))
		if err != nil {
			http.Error(w, "count must be a number", http.StatusBadRequest)
			return
		}
		var interval time.Duration
		if v := r.URL.Query().Get("interval"); v != "" {
			if interval, err = time.ParseDuration(v); err != nil {
				http.Error(w, "interval must be a duration such as 1s", http.StatusBadRequest)
				return
			}
		}
		if interval, err = tickInterval(count, interval); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stopped := make(chan struct{})
		go func() {
			select {
			case <-stop:
				close(stopped)
				cancel()
			case <-ctx.Done():
			}
		}()
		n, err := tick(ctx, count, interval, func(i int) error {
			if _, err := fmt.Fprintf(w, "event: tick\ndata: %d\n\n", i); err != nil {
				return err
			}
			return rc.Flush()
		})
		if err != nil {
			select {
			case <-stopped:
				_, _ = fmt.Fprintf(w, "event: shutdown\ndata: %d\n\n", n)
			default:
			}
			return
		}
		_, _ = fmt.Fprintf(w, "event: done\ndata: %d\n\n", n)
	})
}

// Handler serves NewServer over Streamable HTTP.
func Handler() http.Handler {
	s := NewServer()
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
}
