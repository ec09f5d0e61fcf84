// Package mcpserver is the example MCP server used by the demo and the
// end-to-end tests: a real server built with the official Go SDK, with tools
// that reveal what the proxy forwarded.
package mcpserver

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// IdentityHeaders are the headers the whoami tool reports. They cover both
// header presets of the proxy.
var identityHeaders = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username",
	"X-User-ID", "X-User-Email", "X-User-Name", "X-User-Groups",
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
	return s
}

// Handler serves NewServer over Streamable HTTP.
func Handler() http.Handler {
	s := NewServer()
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
}
