package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/identity"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
)

// upgradeSeen is what the upgrading upstream saw of one request.
type upgradeSeen struct {
	upgrade, connection, settings string
	forwardedUser                 string
}

// upgradingUpstream accepts ANY protocol upgrade it is offered, the way a
// lenient h2c or custom-protocol server would: it answers 101 with the
// protocol asked for and then serves raw bytes on the tunnel. Through the
// tunnel, it reads one more HTTP/1.1 request and reports its identity
// header, which is exactly what the proxy must never let through
// unchecked. A request without an upgrade gets a plain 200 "plain".
func upgradingUpstream(t *testing.T) (*httptest.Server, <-chan upgradeSeen, <-chan string) {
	t.Helper()
	seen := make(chan upgradeSeen, 4)
	tunnelled := make(chan string, 4)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- upgradeSeen{
			upgrade:       r.Header.Get("Upgrade"),
			connection:    r.Header.Get("Connection"),
			settings:      r.Header.Get("Http2-Settings"),
			forwardedUser: r.Header.Get("X-Forwarded-User"),
		}
		up := r.Header.Get("Upgrade")
		if up == "" {
			_, _ = io.WriteString(w, "plain")
			return
		}
		// Answer with the first offered protocol, as a server picking from
		// the client's list does.
		proto, _, _ := strings.Cut(up, ",")
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(testTimeout))
		_, _ = fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", strings.TrimSpace(proto))
		_ = brw.Flush()
		inner, err := http.ReadRequest(brw.Reader)
		if err != nil {
			return
		}
		tunnelled <- inner.Header.Get("X-Forwarded-User")
		_, _ = io.WriteString(brw, "HTTP/1.1 204 No Content\r\n\r\n")
		_ = brw.Flush()
	}))
	t.Cleanup(s.Close)
	return s, seen, tunnelled
}

// TestOnlyWebSocketUpgradesAreTunnelled: an upgrade to anything but
// WebSocket (h2c, TLS, a made-up protocol) would give the client a raw
// tunnel to the upstream in which later requests skip identity header
// stripping and session binding. Such requests are forwarded as plain
// HTTP/1.1 without the upgrade (curl --http2 over http:// keeps working);
// a WebSocket offer, in any case and in a list, is tunnelled as
// "websocket".
func TestOnlyWebSocketUpgradesAreTunnelled(t *testing.T) {
	tests := []struct {
		name    string
		headers []string // raw request header lines
		// wantUpgrade is the Upgrade header the upstream must see ("" for
		// none); a non-empty one means the client gets the 101.
		wantUpgrade string
	}{
		{name: "h2c as curl sends it",
			headers: []string{"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}},
		{name: "h2c with HTTP2-Settings not named in Connection",
			headers: []string{"Connection: upgrade", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}},
		{name: "h2c upper case", headers: []string{"Connection: UPGRADE", "Upgrade: H2C"}},
		{name: "TLS upgrade (RFC 2817)", headers: []string{"Connection: Upgrade", "Upgrade: TLS/1.2, HTTP/1.1"}},
		{name: "made-up protocol", headers: []string{"Connection: keep-alive, Upgrade", "Upgrade: raw-tcp"}},
		{name: "websocket look-alike", headers: []string{"Connection: Upgrade", "Upgrade: websocketx"}},
		{name: "websocket with a version", headers: []string{"Connection: Upgrade", "Upgrade: websocket/13"}},
		{name: "second Upgrade line is not read", headers: []string{"Connection: Upgrade", "Upgrade: h2c", "Upgrade: websocket"}},
		{name: "websocket without Connection: upgrade is no upgrade", headers: []string{"Upgrade: websocket"}},
		{name: "websocket", headers: []string{"Connection: Upgrade", "Upgrade: websocket"}, wantUpgrade: "websocket"},
		{name: "websocket mixed case", headers: []string{"Connection: keep-alive, upgrade", "Upgrade: WebSocket"}, wantUpgrade: "websocket"},
		{name: "h2c offered before websocket", headers: []string{"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c, websocket", "HTTP2-Settings: AAMA"}, wantUpgrade: "websocket"},
		{name: "websocket in a list with empty elements", headers: []string{"Connection: Upgrade", "Upgrade: , websocket ,"}, wantUpgrade: "websocket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, seen, tunnelled := upgradingUpstream(t)
			p := newProxy(t, proxy.Options{Upstream: mustURL(t, up.URL)})
			front := frontServer(t, withIdentity(p, &identity.Identity{Subject: "alice"}, ""))

			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(front.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			_ = conn.SetDeadline(time.Now().Add(testTimeout))
			req := "GET /mcp HTTP/1.1\r\nHost: " + strings.TrimPrefix(front.URL, "http://") + "\r\n" +
				strings.Join(tt.headers, "\r\n") + "\r\n\r\n"
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the response: %v", err)
			}
			var got upgradeSeen
			select {
			case got = <-seen:
			case <-ctx.Done():
				t.Fatal("the upstream never saw the request")
			}
			if got.upgrade != tt.wantUpgrade {
				t.Errorf("upstream saw Upgrade %q, want %q", got.upgrade, tt.wantUpgrade)
			}
			if got.settings != "" {
				t.Errorf("upstream saw HTTP2-Settings %q", got.settings)
			}
			if got.forwardedUser != "alice" {
				t.Errorf("upstream saw X-Forwarded-User %q, want alice", got.forwardedUser)
			}
			if tt.wantUpgrade == "" {
				if strings.Contains(strings.ToLower(got.connection), "upgrade") {
					t.Errorf("upstream saw Connection %q", got.connection)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || string(body) != "plain" {
					t.Fatalf("client got %d %q, want the upstream's plain 200 (no tunnel)", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
				t.Fatalf("client got %d Upgrade %q, want 101 websocket", resp.StatusCode, resp.Header.Get("Upgrade"))
			}
			// The tunnel works both ways.
			if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-User: mallory\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-tunnelled:
			case <-ctx.Done():
				t.Fatal("nothing arrived through the WebSocket tunnel")
			}
			inner, err := http.ReadResponse(br, nil)
			if err != nil || inner.StatusCode != http.StatusNoContent {
				t.Fatalf("tunnelled response: %v %v", inner, err)
			}
		})
	}
}
