// Command mcp-oidc-proxy is the authenticating sidecar. All wiring lives in
// package app so that it can be tested without starting a process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-proxy/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	os.Exit(app.Main(ctx, app.IO{
		Args: os.Args[1:], Env: os.Environ(), Stdout: os.Stdout, Stderr: os.Stderr, Reload: hup,
	}, app.Serve))
}
