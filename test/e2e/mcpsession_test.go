package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// bearerTransport adds the façade's access token to every request.
type bearerTransport struct {
	base  http.RoundTripper
	token string
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// switchable sends every request to the replica it is set to.
type switchable struct{ to atomic.Pointer[replica] }

func (s *switchable) pick(*http.Request) *replica { return s.to.Load() }

// pinnedSession connects the official SDK client, speaking 2025-11-25 (a
// protocol with Mcp-Session-Id sessions), to public+"/mcp" through rt.
func pinnedSession(tb testing.TB, public string, rt http.RoundTripper) (*mcp.ClientSession, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	transport := &mcp.StreamableClientTransport{Endpoint: public + "/mcp", HTTPClient: &http.Client{Transport: rt, Timeout: waitFor}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-sessions", Version: "v1"}, nil).
		Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err == nil {
		tb.Cleanup(func() { _ = cs.Close() })
	}
	return cs, err
}

// hops reads mcp_oidc_proxy_mcp_session_hops_total{result} from a
// replica's /metrics.
func hops(tb testing.TB, r *replica, result string) string {
	tb.Helper()
	body := string(do(tb, http.MethodGet, r.Admin+"/metrics", nil, nil).Body)
	prefix := `mcp_oidc_proxy_mcp_session_hops_total{result="` + result + `"} `
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return "0"
}

// TestMCPSessionsFindTheirReplica: two replicas behind a client that
// alternates between them on every request, as a plain Service does. A
// 2025-11-25 session started on one replica works on both: the other
// forwards its requests to the owner, once. When the owner is gone the
// client gets the protocol's 404 and a new session works; with initialize
// replay the client does not notice. Ids that are forged, tampered with or
// another user's are unknown sessions.
func TestMCPSessionsFindTheirReplica(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: oidcprovider.Options{Users: policyUsers()}})
	pair := func(extra ...string) (a, b *replica, public string, token string) {
		// A stopped replica does not wait for the client's open stream.
		extra = append([]string{"--shutdown-grace", "1s"}, extra...)
		a = e.start(t, proxyOptions{advertise: true, args: extra})
		b = e.start(t, proxyOptions{advertise: true, args: append([]string{"--external-url", a.URL}, extra...)})
		c := facadeAuthorize(t, e, a.URL, a, b)
		return a, b, a.URL, c.tok.AccessToken
	}
	via := func(public, token string, rs ...*replica) http.RoundTripper {
		names := map[*replica]string{}
		for i, r := range rs {
			names[r] = string(rune('A' + i))
		}
		return bearerTransport{base: newRouter(public, names, alternate(rs...)), token: token}
	}

	t.Run("50 calls alternating between replicas", func(t *testing.T) {
		a, b, public, token := pair()
		cs, err := pinnedSession(t, public, via(public, token, a, b))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			if _, err := callTool(cs, "echo", map[string]any{"text": "hop"}); err != nil {
				t.Fatalf("call %d: %v", i+1, err)
			}
		}
		// One of the two owns the session; the other forwarded to it.
		if ha, hb := hops(t, a, "forwarded"), hops(t, b, "forwarded"); (ha == "0") == (hb == "0") {
			t.Errorf("forwarded hops A=%s B=%s, want exactly one replica forwarding", ha, hb)
		}
	})

	t.Run("unknown, tampered and foreign ids", func(t *testing.T) {
		a, b, public, token := pair()
		cs, err := pinnedSession(t, public, via(public, token, a))
		if err != nil {
			t.Fatal(err)
		}
		sid := cs.ID()
		if strings.Contains(sid, "-") && len(sid) < 40 {
			t.Errorf("the client sees what looks like the MCP server's own id %q, want a sealed one", sid)
		}
		tampered := []byte(sid)
		tampered[len(tampered)/2] ^= 1
		call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami"}}`
		v := http.Header{"Mcp-Protocol-Version": {"2025-11-25"}}
		for _, r := range []*replica{a, b} {
			for name, id := range map[string]string{
				"forged":        "m1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
				"tampered":      string(tampered),
				"server's kind": "0123456789abcdef",
			} {
				h := http.Header{"Accept": {"application/json, text/event-stream"}, "Authorization": {"Bearer " + token},
					"Mcp-Session-Id": {id}, "Mcp-Protocol-Version": {"2025-11-25"}}
				got := post(t, http.DefaultClient, r.URL+"/mcp", "application/json", call, h)
				if got.Status != http.StatusNotFound || !strings.Contains(string(got.Body), "-32001") {
					t.Errorf("%s id on %s: %s, want 404 -32001", name, r.URL, got)
				}
			}
			// Another user holding the demo user's id: unknown to them.
			bob := loginAs(t, e.idp, r.URL, bobUsername, bobPassword)
			h := http.Header{"Mcp-Session-Id": {sid}}
			for k, vv := range v {
				h[k] = vv
			}
			if got := rawMCP(t, r.URL+"/mcp", bob, call, h); got.Status != http.StatusNotFound {
				t.Errorf("another user's session id on %s: %s, want 404", r.URL, got)
			}
		}
		// The owner's own calls still work.
		if _, err := callTool(cs, "whoami", nil); err != nil {
			t.Errorf("the owner's session after the refused attempts: %v", err)
		}
	})

	t.Run("owner gone", func(t *testing.T) {
		a, b, public, token := pair()
		sw := &switchable{}
		sw.to.Store(a)
		cs, err := pinnedSession(t, public, bearerTransport{base: newRouter(public, map[*replica]string{a: "A", b: "B"}, sw.pick), token: token})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
		sw.to.Store(b)
		_, err = callTool(cs, "whoami", nil)
		if !errors.Is(err, mcp.ErrSessionMissing) {
			t.Fatalf("a call after the session's replica left: %v, want the SDK's session-not-found", err)
		}
		if hops(t, b, "owner_gone") == "0" {
			t.Error("owner_gone not counted")
		}
		// The client's recovery: a new session, now on B.
		ns, err := pinnedSession(t, public, via(public, token, b))
		if err != nil {
			t.Fatalf("new session after the owner left: %v", err)
		}
		if _, err := callTool(ns, "echo", map[string]any{"text": "again"}); err != nil {
			t.Errorf("call on the new session: %v", err)
		}
	})

	t.Run("owner gone with replay", func(t *testing.T) {
		a, b, public, token := pair("--mcp-session-replay-initialize")
		sw := &switchable{}
		sw.to.Store(a)
		cs, err := pinnedSession(t, public, bearerTransport{base: newRouter(public, map[*replica]string{a: "A", b: "B"}, sw.pick), token: token})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := callTool(cs, "echo", map[string]any{"text": "before"}); err != nil {
			t.Fatal(err)
		}
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
		sw.to.Store(b)
		// The same client session keeps working, now through B.
		for i := range 5 {
			if _, err := callTool(cs, "echo", map[string]any{"text": "after"}); err != nil {
				t.Fatalf("call %d after the owner left, with replay: %v", i+1, err)
			}
		}
		if hops(t, b, "replayed") == "0" {
			t.Error("replayed not counted")
		}
	})
}
