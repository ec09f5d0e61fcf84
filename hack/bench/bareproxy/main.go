// Command bareproxy is the limit every proxy in hack/bench is measured
// against: a bare net/http/httputil.ReverseProxy with no authentication in
// front of one upstream. It runs as its own process, like the proxies it is
// compared with, so its memory (VmRSS) and CPU are its own.
//
//	bareproxy -listen 127.0.0.1:8081 -upstream http://127.0.0.1:8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("bareproxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	upstream := fs.String("upstream", "", "upstream base URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		return fmt.Errorf("-upstream %q is not a URL: %v", *upstream, err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	// Enough idle upstream connections for the load generator's; Go's
	// default of two per host would measure connection churn instead.
	rp.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	// Load generators drop their connections mid-request when a run ends;
	// those are not errors worth a line each.
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "bareproxy: %v\n", err)
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	srv := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
