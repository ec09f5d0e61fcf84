package mcpsession_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpsession"
)

// startPlain is a replica whose MCP server is a trivial handler, so a
// benchmark measures the router and the hop, not the SDK.
func startPlain(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewUnstartedServer(nil)
	rt, err := mcpsession.New(mcpsession.Options{Sealer: newSealer(b, testSecret), Self: srv.Listener.Addr().String(), Issuer: testIssuer})
	if err != nil {
		b.Fatal(err)
	}
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`)
	})
	srv.Config.Handler = rt.KeepCredentials(fakeAuthn(rt.Wrap(upstream)))
	srv.Start()
	b.Cleanup(srv.Close)
	return srv
}

// benchmarkWrap sends tool calls of a session owned by owner to target.
func benchmarkWrap(b *testing.B, owner, target *httptest.Server) {
	sid, err := newSealer(b, testSecret).Seal(mcpsession.Claims{
		Owner: owner.Listener.Addr().String(), Upstream: "UPSTREAM", Issuer: testIssuer, Subject: "alice",
		Expiry: time.Now().Add(time.Hour),
	})
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequest(http.MethodPost, target.URL+"/mcp", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer alice")
		req.Header.Set(mcpsession.SessionHeader, sid)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkWrapLocal is a request of a session this replica owns, over
// loopback HTTP.
func BenchmarkWrapLocal(b *testing.B) {
	a := startPlain(b)
	benchmarkWrap(b, a, a)
}

// BenchmarkWrapHop is the same request sent to the other replica, which
// forwards it one hop to the owner: the difference to BenchmarkWrapLocal
// is what the hop adds.
func BenchmarkWrapHop(b *testing.B) {
	a := startPlain(b)
	other := startPlain(b)
	benchmarkWrap(b, a, other)
}
