package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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
	front := httptest.NewServer(srv.Handler())
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
