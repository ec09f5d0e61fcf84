// Command mcp-server is the example MCP server of the image
// ghcr.io/mcp-oidc-proxy/mcp-example-server (`make images`): the tools of
// test/mcpserver (whoami, echo, countdown, ticks), built with the official
// MCP Go SDK, over Streamable HTTP at /mcp, a plain SSE stream at /events,
// and /healthz for the kubelet's probes. whoami shows the identity headers
// the proxy forwarded.
//
// Settings: PORT (default 8080), the port it listens on; the injector's
// rebind mode moves the app by setting it. HOST (default: every address),
// the IP address it listens on; in rebind mode set it to 127.0.0.1 so that
// only the proxy beside it reaches the app. Each tool call is logged as one
// JSON line on stderr. On SIGTERM it stops accepting, ends open /events
// streams with a "shutdown" event and waits for other requests.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
)

// DefaultPort is the port used when PORT is not set.
const DefaultPort = 8080

// shutdownGrace bounds how long open requests may finish after SIGTERM.
const shutdownGrace = 10 * time.Second

func main() {
	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcp-server: logger:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, log); err != nil {
		log.Error("mcp-server stopped", zap.Error(err))
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, log *zap.Logger) error {
	addr, err := listenAddr(getenv)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return serve(ctx, ln, log)
}

// listenAddr is the address to listen on, from HOST and PORT.
func listenAddr(getenv func(string) string) (string, error) {
	port := DefaultPort
	if v := getenv("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return "", fmt.Errorf("PORT=%q: want a port number between 1 and 65535", v)
		}
		port = p
	}
	host := getenv("HOST")
	if host != "" && net.ParseIP(host) == nil {
		return "", fmt.Errorf("HOST=%q: want an IP address such as 127.0.0.1", host)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// serve serves Handler on ln until ctx ends, then shuts down gracefully:
// open /events streams end at once with their "shutdown" event, other
// requests get shutdownGrace to finish.
func serve(ctx context.Context, ln net.Listener, log *zap.Logger) error {
	stop := make(chan struct{})
	srv := &http.Server{Handler: Handler(log, stop), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(func() { close(stop) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", zap.String("address", ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Handler serves the MCP server at /mcp, the SSE stream at /events (ended
// when stop is closed) and /healthz, and logs each tool call.
func Handler(log *zap.Logger, stop <-chan struct{}) http.Handler {
	s := mcpserver.NewServer()
	s.AddReceivingMiddleware(logToolCalls(log))
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	mux.Handle("/events", mcpserver.Events(stop))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// logToolCalls logs every tools/call with the tool's name, the forwarded
// user (the proxy's identity header, never a credential), the duration and
// the outcome.
func logToolCalls(log *zap.Logger) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			call, ok := req.(*mcp.CallToolRequest)
			if !ok {
				return next(ctx, method, req)
			}
			start := time.Now()
			res, err := next(ctx, method, req)
			fields := []zap.Field{zap.String("tool", call.Params.Name), zap.Duration("duration", time.Since(start))}
			if extra := call.GetExtra(); extra != nil && extra.Header != nil {
				user := extra.Header.Get("X-Forwarded-User")
				if user == "" {
					user = extra.Header.Get("X-User-ID")
				}
				fields = append(fields, zap.String("user", user))
			}
			if r, isCall := res.(*mcp.CallToolResult); err == nil && isCall && r.IsError {
				fields = append(fields, zap.Bool("toolError", true))
			}
			if err != nil {
				log.Warn("tool call failed", append(fields, zap.Error(err))...)
				return res, err
			}
			log.Info("tool call", fields...)
			return res, nil
		}
	}
}
