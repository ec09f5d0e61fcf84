package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
)

// whoami is what the upstream tool saw in the forwarded HTTP request.
type whoami struct {
	User          string   `json:"user"`
	UserSpellings []string `json:"user_spellings"`
	Email         string   `json:"email"`
	Groups        string   `json:"groups"`
	RequestID     string   `json:"request_id"`
	Authorization string   `json:"authorization"`
	Cookie        string   `json:"cookie"`
}

type workIn struct {
	Steps int `json:"steps"`
}

type workOut struct {
	Done int `json:"done"`
}

// spoofingTransport is a hostile MCP client: it claims an identity, sends
// its bearer token and a proxy session cookie on every request.
type spoofingTransport struct{ base http.RoundTripper }

func (s spoofingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-User", "mallory")
	r.Header["x_forwarded_user"] = []string{"mallory"}
	r.Header.Set("X-Forwarded-Groups", "admins")
	r.Header.Set("Authorization", "Bearer client-token")
	r.Header.Set("Cookie", "mcp_session=secret; keep=1")
	return s.base.RoundTrip(r)
}

// newMCPUpstream runs a real MCP server (official SDK, Streamable HTTP).
// The "work" tool sends a progress notification and then waits until the
// client has received it, so it only completes if server->client SSE
// messages are streamed through the proxy while the call is still running.
func newMCPUpstream(t *testing.T, ack <-chan struct{}) *httptest.Server {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "test"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "echo identity headers"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, whoami, error) {
			h := req.Extra.Header
			var spellings []string
			for k, vs := range h {
				if strings.ReplaceAll(strings.ToLower(k), "_", "-") == "x-forwarded-user" {
					spellings = append(spellings, k+"="+strings.Join(vs, ","))
				}
			}
			slices.Sort(spellings)
			return nil, whoami{
				User:          h.Get("X-Forwarded-User"),
				UserSpellings: spellings,
				Email:         h.Get("X-Forwarded-Email"),
				Groups:        h.Get("X-Forwarded-Groups"),
				RequestID:     h.Get("X-Request-ID"),
				Authorization: h.Get("Authorization"),
				Cookie:        h.Get("Cookie"),
			}, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "work", Description: "reports progress, waits for the client to see it"},
		func(ctx context.Context, req *mcp.CallToolRequest, in workIn) (*mcp.CallToolResult, workOut, error) {
			token := req.Params.GetProgressToken()
			if token == nil {
				return nil, workOut{}, errors.New("no progress token")
			}
			for i := 1; i <= in.Steps; i++ {
				err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: token, Progress: float64(i), Total: float64(in.Steps), Message: "step",
				})
				if err != nil {
					return nil, workOut{}, err
				}
			}
			// A proxy that buffered the SSE response would hold the
			// progress back until this returns: the client's deadline then
			// fails the test instead of hanging it.
			select {
			case <-ack:
			case <-ctx.Done():
				return nil, workOut{}, ctx.Err()
			}
			return nil, workOut{Done: in.Steps}, nil
		})
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	s := httptest.NewServer(handler)
	t.Cleanup(s.Close)
	return s
}

func TestMCPThroughProxy(t *testing.T) {
	ack := make(chan struct{})
	var ackOnce sync.Once
	up := newMCPUpstream(t, ack)

	obs := &recordingObserver{}
	p := newProxy(t, proxy.Options{
		Upstream:     mustURL(t, up.URL),
		StripHeaders: []string{"Authorization"},
		StripCookies: []string{"mcp_session"},
		Observer:     obs,
	})
	alice := &identity.Identity{Subject: "alice", Email: "alice@example.com", Groups: []string{"dev", "ops"}}
	front := frontServer(t, withIdentity(p, alice, "req-mcp-1"))

	var (
		progressMu sync.Mutex
		progress   []float64
	)
	client := mcp.NewClient(&mcp.Implementation{Name: "client", Version: "test"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progressMu.Lock()
			progress = append(progress, req.Params.Progress)
			n := len(progress)
			progressMu.Unlock()
			if n == 2 {
				ackOnce.Do(func() { close(ack) })
			}
		},
	})
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   front.URL + "/mcp",
		HTTPClient: &http.Client{Transport: spoofingTransport{base: http.DefaultTransport}},
	}, nil)
	if err != nil {
		t.Fatalf("initialize through proxy: %v", err)
	}
	defer func() { _ = cs.Close() }()

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"whoami", "work"}) {
		t.Fatalf("tools = %v", names)
	}

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("tools/call whoami: %v %+v", err, res)
	}
	var who whoami
	remarshal(t, res.StructuredContent, &who)
	want := whoami{
		User:          "alice",
		UserSpellings: []string{"X-Forwarded-User=alice"},
		Email:         "alice@example.com",
		Groups:        "dev,ops",
		RequestID:     "req-mcp-1",
		Authorization: "",
		Cookie:        "keep=1",
	}
	if !equalWhoami(who, want) {
		t.Errorf("upstream saw %+v\nwant %+v", who, want)
	}

	params := &mcp.CallToolParams{Name: "work", Arguments: workIn{Steps: 2}}
	params.SetProgressToken("tok-1")
	res, err = cs.CallTool(ctx, params)
	if err != nil || res.IsError {
		t.Fatalf("tools/call work (progress not streamed through the proxy?): %v %+v", err, res)
	}
	var out workOut
	remarshal(t, res.StructuredContent, &out)
	if out.Done != 2 {
		t.Errorf("work result = %+v", out)
	}
	progressMu.Lock()
	gotProgress := slices.Clone(progress)
	progressMu.Unlock()
	if !slices.Equal(gotProgress, []float64{1, 2}) {
		t.Errorf("progress seen by client = %v, want [1 2]", gotProgress)
	}
	if obs.opened.Load() == 0 {
		t.Error("no SSE stream counted for SSE-answered tool calls")
	}
	if err := cs.Close(); err != nil {
		t.Errorf("close session (DELETE through proxy): %v", err)
	}
}

func remarshal(t *testing.T, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func equalWhoami(a, b whoami) bool {
	return a.User == b.User && slices.Equal(a.UserSpellings, b.UserSpellings) && a.Email == b.Email &&
		a.Groups == b.Groups && a.RequestID == b.RequestID && a.Authorization == b.Authorization && a.Cookie == b.Cookie
}
