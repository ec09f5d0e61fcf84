package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// WebSocket upgrades survive every wrapper the server puts around the proxy
// (request ID, metrics and access log, identity), in both directions.
func TestWebSocketThroughTheServer(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		if err := c.Write(ctx, websocket.MessageText, []byte("hello "+r.Header.Get("X-Forwarded-User"))); err != nil {
			return
		}
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	defer upstream.Close()

	srv, err := New(context.Background(), bypassConfig(t, upstream.URL), Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
	if err != nil {
		t.Fatal(err)
	}
	// httptest.Server.Close does not wait for hijacked connections, so the
	// test waits for the proxy's handler itself: it logs when the tunnel
	// ends, and must not log into a finished test.
	var handlers sync.WaitGroup
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		srv.Handler().ServeHTTP(w, r)
	}))
	defer handlers.Wait()
	defer front.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(front.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("dial through the server: %v", err)
	}
	defer c.CloseNow()
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "hello bypass-user" {
		t.Fatalf("first message = %q, %v; want the upstream's greeting with the identity", msg, err)
	}
	for _, m := range []string{"one", "two"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo: "+m {
			t.Fatalf("echo = %q, %v; want %q", got, err, "echo: "+m)
		}
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
}

// A proxied WebSocket is a hijacked connection, which http.Server.Shutdown
// neither waits for nor closes. SIGTERM must treat it like any other open
// stream: it keeps working during the grace period, Serve waits for it, and
// once the grace period is over the proxy closes it before Serve returns.
func TestShutdownWaitsForWebSocketsWithinTheGracePeriod(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	defer upstream.Close()

	tests := []struct {
		name  string
		grace string
		// clientCloses: the client ends the WebSocket during the grace
		// period; otherwise the grace period runs out.
		clientCloses bool
	}{
		{name: "stream ends within the grace period", grace: "1m", clientCloses: true},
		{name: "grace period runs out", grace: "200ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := bypassConfig(t, upstream.URL, "--shutdown-grace", tt.grace)
			srv, err := New(context.Background(), cfg, Options{Logger: zaptest.NewLogger(t), Level: zap.NewAtomicLevel()})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			adminLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			serveCtx, stop := context.WithCancel(context.Background())
			defer stop()
			done := make(chan error, 1)
			go func() { done <- srv.Serve(serveCtx, ln, adminLn) }()

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", nil)
			if err != nil {
				t.Fatalf("dial through the server: %v", err)
			}
			defer c.CloseNow()
			echo := func(m string) error {
				if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
					return err
				}
				_, got, err := c.Read(ctx)
				if err == nil && string(got) != m {
					t.Fatalf("echo = %q, want %q", got, m)
				}
				return err
			}
			if err := echo("before"); err != nil {
				t.Fatal(err)
			}

			stop() // SIGTERM
			if tt.clientCloses {
				if err := echo("during the grace period"); err != nil {
					t.Fatalf("WebSocket broken right after SIGTERM: %v", err)
				}
				select {
				case err := <-done:
					t.Fatalf("Serve returned (%v) while a WebSocket was still open", err)
				default:
				}
				_ = c.Close(websocket.StatusNormalClosure, "")
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve = %v, want nil", err)
				}
			case <-ctx.Done():
				t.Fatal("Serve did not return")
			}
			if !tt.clientCloses {
				if err := echo("after the grace period"); err == nil {
					t.Fatal("the WebSocket still works after Serve returned; want it closed when the grace period ran out")
				}
			}
		})
	}
}
