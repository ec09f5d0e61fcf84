package fault

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/weblogin"
)

// The pod's deletion, as the kubelet runs it: the preStop hook the
// injector writes calls the built sidecar's /drain on its admin port.
//
// Promises: while the hook runs, a client's idle keep-alive connection to
// the protected port is closed and every answer closes its connection, so
// the client's next request opens a new one (which kube-proxy sends to a
// pod that stays); requests are still served; the hook answers 200 after
// the seconds it asked for, and the sidecar logs the drain.
func TestDrainHookMovesClientsOff(t *testing.T) {
	bin := buildSidecar(t)
	idp := oidcprovider.Start(t, oidcprovider.Options{})
	ln, err := stack.Listen()
	if err != nil {
		t.Fatal(err)
	}
	mux := stack.UpstreamMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	upURL, stop := stack.Serve(ln, mux)
	t.Cleanup(stop)
	sc := startSidecar(t, bin, func(listen, admin string) []string {
		return append(stack.Flags(listen, admin, upURL, idp.Issuer()), "--shutdown-grace", "1s", "--log-level", "info")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cookie, err := weblogin.Login(ctx, weblogin.Options{Provider: idp, StartOn: sc.URL, CookieName: cookieName})
	if err != nil {
		t.Fatal(err)
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	// get sends an authenticated request to the protected port and
	// reports whether it reused a connection and whether the sidecar
	// closes the connection after it.
	get := func() (reused, closed bool) {
		t.Helper()
		rctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, sc.URL+"/ok", nil)
		req.AddCookie(cookie)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET through the sidecar: %v", err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET through the sidecar: %d", resp.StatusCode)
		}
		return reused, resp.Close
	}
	get()
	if reused, closed := get(); !reused || closed {
		t.Fatalf("before the drain: reused %v, closed %v; the client must reuse its connection for this test to mean anything", reused, closed)
	}

	type hookResult struct {
		code int
		body string
		took time.Duration
		err  error
	}
	hook := make(chan hookResult, 1)
	start := time.Now()
	go func() {
		var res hookResult
		defer func() { res.took = time.Since(start); hook <- res }()
		resp, err := http.Get(sc.Admin + "/drain?seconds=2")
		if err != nil {
			res.err = err
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res.code, res.body = resp.StatusCode, string(b)
	}()
	waitfor.True(t, setupTimeout, "the sidecar to log the drain", func() bool { return strings.Contains(sc.out.String(), "draining") })
	for i := range 3 {
		if reused, closed := get(); reused || !closed {
			t.Fatalf("request %d during the drain: reused %v, closed after it %v; want a new connection each time, closed after the answer", i, reused, closed)
		}
	}
	res := <-hook
	if res.err != nil || res.code != http.StatusOK || res.took < 2*time.Second {
		t.Fatalf("the preStop hook: %d %q %v after %s; want 200 after 2s", res.code, res.body, res.err, res.took)
	}
}
