package mcpsession_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpsession"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

const (
	testIssuer   = "https://idp.example"
	testProtocol = "2025-11-25"
)

// countObserver counts hop results.
type countObserver struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *countObserver) Hop(result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[result]++
}

func (o *countObserver) count(result string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[result]
}

// replica is one sidecar in front of its own MCP server (official Go SDK,
// stateful Streamable HTTP): requestid -> KeepCredentials -> a stand-in for
// authentication -> Router.Wrap -> a spy -> the MCP server.
type replica struct {
	name   string
	srv    *httptest.Server
	router *mcpsession.Router
	obs    *countObserver
	server *mcp.Server

	mu sync.Mutex
	// hopsIn counts arriving requests that carry the hop header, by method;
	// hopAuth are their Authorization headers as they arrived.
	hopsIn  map[string]int
	hopAuth []string
	// seen counts requests that reached the MCP server; leaks those that
	// still carried the hop header; methods the JSON-RPC methods it got.
	seen    int
	leaks   int
	methods map[string]int
}

type replicaOptions struct {
	secret []byte
	replay mcpsession.Store
	now    func() time.Time
	ttl    time.Duration
}

func startReplica(t testing.TB, name string, o replicaOptions) *replica {
	t.Helper()
	if o.secret == nil {
		o.secret = testSecret
	}
	srv := httptest.NewUnstartedServer(nil)
	rep := &replica{name: name, srv: srv, obs: &countObserver{}, hopsIn: map[string]int{}, methods: map[string]int{}}
	var log *zap.Logger
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt, zaptest.Level(zap.DebugLevel)).Named(name)
	}
	rt, err := mcpsession.New(mcpsession.Options{
		Sealer:     newSealer(t, o.secret),
		Self:       srv.Listener.Addr().String(),
		Issuer:     testIssuer,
		TTL:        o.ttl,
		HopTimeout: 2 * time.Second,
		Replay:     o.replay,
		Observer:   rep.obs,
		Logger:     log,
		Now:        o.now,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rep.router = rt
	rep.server = mcpserver.NewServer()
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return rep.server }, nil)
	srv.Config.Handler = requestid.Middleware(rep.recordIncoming(rt.KeepCredentials(fakeAuthn(rt.Wrap(rep.spy(mcpHandler))))))
	srv.Start()
	t.Cleanup(rep.close)
	return rep
}

func (rep *replica) addr() string { return rep.srv.Listener.Addr().String() }

// close stops the replica, cutting open streams: the pod is gone.
func (rep *replica) close() {
	rep.srv.CloseClientConnections()
	rep.srv.Close()
}

func (rep *replica) recordIncoming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(mcpsession.HopHeader) != "" {
			rep.mu.Lock()
			rep.hopsIn[r.Method]++
			rep.hopAuth = append(rep.hopAuth, r.Header.Get("Authorization"))
			rep.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// spy records what reaches the MCP server.
func (rep *replica) spy(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var method string
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			for _, m := range []string{`"notifications/initialized"`, `"initialize"`} {
				if bytes.Contains(body, []byte(`"method":`+m)) {
					method = strings.Trim(m, `"`)
					break
				}
			}
		}
		rep.mu.Lock()
		rep.seen++
		if r.Header.Get(mcpsession.HopHeader) != "" {
			rep.leaks++
		}
		if method != "" {
			rep.methods[method]++
		}
		rep.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (rep *replica) stats() (seen, leaks int, methods map[string]int, hopsIn map[string]int, hopAuth []string) {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	m := map[string]int{}
	for k, v := range rep.methods {
		m[k] = v
	}
	h := map[string]int{}
	for k, v := range rep.hopsIn {
		h[k] = v
	}
	return rep.seen, rep.leaks, m, h, append([]string(nil), rep.hopAuth...)
}

// fakeAuthn stands in for the bearer middleware: "Bearer <subject>" is the
// user; it removes Authorization as the real one does.
func fakeAuthn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || sub == "" {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r.WithContext(identity.NewContext(r.Context(), &identity.Identity{Subject: sub, Method: "bearer"})))
	})
}

// sent is one request the client transport sent.
type sent struct {
	method     string
	hasSession bool
	target     int
}

// spreader is the client's transport: it sends each request to one of
// the replicas, chosen by pick (the request's index in order), as a
// Service without session affinity would, with the user's bearer token.
type spreader struct {
	user    string
	targets []*url.URL
	pick    atomic.Pointer[func(n int) int]
	n       atomic.Int64
	mu      sync.Mutex
	log     []sent
	base    http.RoundTripper
}

func newSpreader(user string, reps ...*replica) *spreader {
	s := &spreader{user: user, base: &http.Transport{MaxIdleConnsPerHost: 16}}
	for _, rep := range reps {
		u, _ := url.Parse(rep.srv.URL)
		s.targets = append(s.targets, u)
	}
	s.setPick(func(n int) int { return n % len(s.targets) })
	return s
}

func (s *spreader) setPick(f func(n int) int) { s.pick.Store(&f) }

func (s *spreader) RoundTrip(req *http.Request) (*http.Response, error) {
	n := int(s.n.Add(1) - 1)
	i := (*s.pick.Load())(n)
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = s.targets[i].Scheme, s.targets[i].Host, ""
	out.Header.Set("Authorization", "Bearer "+s.user)
	s.mu.Lock()
	s.log = append(s.log, sent{method: req.Method, hasSession: req.Header.Get(mcpsession.SessionHeader) != "", target: i})
	s.mu.Unlock()
	return s.base.RoundTrip(out)
}

func (s *spreader) sent() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sent(nil), s.log...)
}

// connect starts an SDK client session (protocol 2025-11-25) through s.
func connect(t *testing.T, ctx context.Context, s *spreader, opts *mcp.ClientOptions, noStandaloneSSE bool) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpsession-test", Version: "v1"}, opts)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             "http://replicas.invalid/mcp",
		HTTPClient:           &http.Client{Transport: s},
		MaxRetries:           2,
		DisableStandaloneSSE: noStandaloneSSE,
	}, &mcp.ClientSessionOptions{ProtocolVersion: testProtocol})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func echo(ctx context.Context, cs *mcp.ClientSession, text string) error {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": text}})
	if err != nil {
		return err
	}
	if res.IsError {
		return fmt.Errorf("echo %q: tool error %v", text, res.Content)
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, 10*time.Second, what, cond)
}
