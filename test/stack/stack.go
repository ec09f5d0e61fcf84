// Package stack starts the pieces the end-to-end suites and the hack/
// programs run the proxy against: the example upstream (the official-SDK
// MCP server at /mcp) and proxy replicas configured through flags exactly
// as a user would. The OpenID provider is test/oidcprovider's (Start in
// tests, New and Serve elsewhere).
//
// It does not import testing, so hack/ programs can use it; callers that
// are tests register Stop with t.Cleanup themselves.
package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/server"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// DefaultTimeout bounds a replica's start-up and its shutdown when
// ProxyOptions.Timeout is zero.
const DefaultTimeout = 20 * time.Second

// Listen opens a listener on a free loopback port.
func Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	return ln, nil
}

// UpstreamMux serves the example MCP server at /mcp. Each suite adds the
// handlers only it needs.
func UpstreamMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpserver.Handler())
	return mux
}

// Serve serves h on ln in the background and returns its base URL and a
// function that closes the server and every connection to it.
func Serve(ln net.Listener, h http.Handler) (string, func()) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }
}

// Flags are the flags every replica here starts from: its listeners, the
// upstream, the provider's registered client and cookies without Secure
// (everything is plain-HTTP loopback). Callers append their own; later
// flags win.
func Flags(listen, admin, upstream, issuer string) []string {
	return []string{
		"--listen", listen,
		"--admin-listen", admin,
		"--upstream", upstream,
		"--external-url", "http://" + listen,
		"--oidc-discovery-url", issuer,
		"--oidc-client-id", oidcprovider.DefaultClientID,
		"--oidc-client-secret", oidcprovider.DefaultClientSecret,
		"--session-insecure-cookies",
	}
}

// LoadConfig loads and validates flags exactly as the binary does.
func LoadConfig(args []string) (config.Config, error) {
	loaded, err := config.Load(config.Source{Args: args})
	if err != nil {
		return config.Config{}, fmt.Errorf("config.Load: %w", err)
	}
	if err := loaded.Config.Validate(); err != nil {
		return config.Config{}, fmt.Errorf("Validate: %w", err)
	}
	return loaded.Config, nil
}

// ProxyOptions describe one replica.
type ProxyOptions struct {
	// Listener and AdminListener default to free loopback ports.
	Listener, AdminListener net.Listener
	// Flags returns the command line for the listeners' addresses.
	Flags func(listen, admin string) []string
	// Logger builds the replica's logger at the configured log level; nil
	// discards the logs.
	Logger func(zap.AtomicLevel) *zap.Logger
	// Version, Now and HTTPClient are passed to server.Options.
	Version    string
	Now        func() time.Time
	HTTPClient *http.Client
	// NoWait returns without waiting for /readyz.
	NoWait bool
	// Timeout bounds the wait for /readyz and Stop; DefaultTimeout if zero.
	Timeout time.Duration
}

// Proxy is one running replica.
type Proxy struct {
	URL   string // base URL of the main listener
	Admin string // base URL of the admin listener
	Srv   *server.Server
	Args  []string // the flags it was started with

	cancel   context.CancelFunc
	done     chan struct{} // closed once Serve returned serveErr
	serveErr error
	timeout  time.Duration

	mu      sync.Mutex
	stopped bool
	result  error
}

// StartProxy runs a replica until Stop (or ctx ends) and, unless
// o.NoWait, waits until its /readyz answers 200. On error nothing is left
// running and the listeners are closed.
func StartProxy(ctx context.Context, o ProxyOptions) (_ *Proxy, err error) {
	ln, adminLn := o.Listener, o.AdminListener
	defer func() {
		if err != nil {
			for _, l := range []net.Listener{ln, adminLn} {
				if l != nil {
					_ = l.Close()
				}
			}
		}
	}()
	if ln == nil {
		if ln, err = Listen(); err != nil {
			return nil, err
		}
	}
	if adminLn == nil {
		if adminLn, err = Listen(); err != nil {
			return nil, err
		}
	}
	args := o.Flags(ln.Addr().String(), adminLn.Addr().String())
	cfg, err := LoadConfig(args)
	if err != nil {
		return nil, err
	}
	level, err := zap.ParseAtomicLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	logger := zap.NewNop()
	if o.Logger != nil {
		logger = o.Logger(level)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}

	ctx, cancel := context.WithCancel(ctx)
	srv, err := server.New(ctx, cfg, server.Options{
		Version: o.Version, Logger: logger, Level: level, Now: o.Now, HTTPClient: o.HTTPClient,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("server.New: %w", err)
	}
	p := &Proxy{
		URL: "http://" + ln.Addr().String(), Admin: "http://" + adminLn.Addr().String(),
		Srv: srv, Args: args, cancel: cancel, done: make(chan struct{}), timeout: timeout,
	}
	go func() {
		p.serveErr = srv.Serve(ctx, ln, adminLn)
		close(p.done)
	}()
	if o.NoWait {
		return p, nil
	}
	if err := p.waitReady(ctx); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// waitReady polls /readyz until it answers 200, Serve returns, ctx ends or
// the timeout passes.
func (p *Proxy) waitReady(ctx context.Context) error {
	url := p.Admin + "/readyz"
	deadline := time.Now().Add(p.timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer")
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		last = err
		select {
		case <-p.done:
			return fmt.Errorf("proxy stopped before it was ready: %v", p.serveErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return fmt.Errorf("%s not ready within %v (last: %w)", url, p.timeout, last)
}

// Shutdown cancels the Serve context (what SIGTERM does) and returns at
// once, so a test can watch the graceful shutdown; Stop waits for it.
func (p *Proxy) Shutdown() { p.cancel() }

// Done is closed once Serve has returned.
func (p *Proxy) Done() <-chan struct{} { return p.done }

// Stop cancels the Serve context and returns Serve's result; later calls
// return the same result.
func (p *Proxy) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return p.result
	}
	p.cancel()
	select {
	case <-p.done:
		p.result = p.serveErr
	case <-time.After(p.timeout):
		p.result = fmt.Errorf("Serve did not return within %v", p.timeout)
	}
	p.stopped = true
	return p.result
}

// Outage is an HTTP transport that fails every request while it is down, as
// an unreachable identity provider does, and passes them to Base otherwise.
// Give it to a replica (ProxyOptions.HTTPClient) to cut that replica alone
// off from the provider.
type Outage struct {
	Base http.RoundTripper
	down atomic.Bool
}

// ErrOutage is what requests fail with while an Outage is down.
var ErrOutage = errors.New("stack: identity provider unreachable")

// SetDown starts (true) or ends (false) the outage.
func (o *Outage) SetDown(down bool) { o.down.Store(down) }

// RoundTrip implements http.RoundTripper.
func (o *Outage) RoundTrip(r *http.Request) (*http.Response, error) {
	if o.down.Load() {
		return nil, ErrOutage
	}
	return o.Base.RoundTrip(r)
}
