// Package server wires the sidecar together: the protected listener
// (login endpoints, public paths, authenticated forwarding), the admin
// listener (health, readiness, metrics), configuration reloads and graceful
// shutdown.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/authn"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/authz"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/certreload"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/drain"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/forwarded"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/httpjson"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpguard"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcppath"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/metrics"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oidc"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probereplay"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/proxy"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/publicpath"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/resource"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/tokenexchange"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/tracing"
)

// Options are the process-level dependencies of a Server.
type Options struct {
	// Version is reported by /healthz and metrics.
	Version string
	// Logger is the base logger; Level controls it at runtime.
	Logger *zap.Logger
	Level  zap.AtomicLevel
	// HTTPClient talks to the OIDC provider (nil: a default with timeouts).
	HTTPClient *http.Client
	// Store replaces the store built from the configuration (tests).
	Store session.Store
	// Now is the clock (tests).
	Now func() time.Time
	// AppProbes are the app's original kubelet probes, handed over by the
	// injector; the admin handler replays them at probe.PathPrefix
	// (pkg/probereplay).
	AppProbes probe.Set
}

// Server is one running sidecar.
type Server struct {
	cfg     config.Config
	opts    Options
	log     *zap.Logger
	metrics *metrics.Metrics
	store   session.Store
	// sessions are store's session records, through the local session
	// cache when there is one (pkg/sessioncache).
	sessions session.Sessions
	rp       *oidc.RelyingParty
	authn    *authn.Authenticator
	policy   *authz.Policy
	proxy    *proxy.Proxy
	tracer   *tracing.Tracer
	public   atomic.Pointer[publicpath.Set]
	urls     *forwarded.Resolver   // external URL and trusted proxies, decided once per request
	hosts    *resource.HostGuard   // refuses hosts the operator does not expect
	origins  *resource.OriginGuard // refuses foreign browser origins off the MCP route
	mcp      *mcpAuth
	health   *health
	limits   *clientLimits
	started  time.Time
	handler  http.Handler
	// background runs beside the listeners in Serve (cache invalidation).
	background []func(context.Context)
	revoked    *oauth.RevokedSet // nil with the memory store
	// guard applies the MCP tool policy and writes the audit trail on the
	// MCP endpoint (mcpPath); exchange, when configured, hands the MCP
	// server a token for a downstream API.
	guard    *mcpguard.Guard
	audit    *audit.Logger
	mcpPath  mcppath.Matcher
	exchange *tokenexchange.Exchanger
	// main is the protected listener's server once Serve made it;
	// drainer switches its keep-alives off when the pod is deleted.
	main    mainServer
	drainer *drain.Drainer
}

// mainServer passes SetKeepAlivesEnabled to the protected listener's
// server, which exists only once Serve runs (the admin endpoint that
// drains is built before).
type mainServer struct{ p atomic.Pointer[http.Server] }

func (m *mainServer) SetKeepAlivesEnabled(v bool) {
	if srv := m.p.Load(); srv != nil {
		srv.SetKeepAlivesEnabled(v)
	}
}

// New builds a server from a validated configuration. It performs no
// network I/O: OIDC discovery runs in the background from Serve, and
// readiness reports its outcome.
func New(ctx context.Context, cfg config.Config, opts Options) (*Server, error) {
	opts = withDefaults(opts)
	s := &Server{cfg: cfg, opts: opts, log: opts.Logger, started: opts.Now(), metrics: metrics.New(opts.Version, metrics.WithMCPToolLabel(cfg.Audit.ToolNameLabel))}
	if err := s.buildEdge(cfg); err != nil {
		return nil, err
	}
	upstream, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	s.health = newHealth(upstream, opts.Version, s.started, opts.Now)
	s.drainer = drain.New(&s.main, drain.Options{Linger: cfg.ShutdownGrace, Logger: s.log.Named("drain")})
	if err := s.buildStore(cfg); err != nil {
		return nil, err
	}
	s.policy = authz.New(rulesFrom(cfg))
	if err := s.buildMCPGuard(cfg); err != nil {
		return nil, err
	}
	s.public.Store(publicpath.New(cfg.PublicPaths))
	if cfg.Tracing.Enabled {
		s.tracer, err = tracing.New(ctx, tracing.Options{
			Endpoint: cfg.Tracing.Endpoint, SampleRatio: cfg.Tracing.SampleRatio, Version: opts.Version,
		})
		if err != nil {
			return nil, err
		}
	}
	if cfg.AuthMode == "oidc" {
		if err := s.buildLogin(cfg); err != nil {
			return nil, err
		}
	}
	if s.proxy, err = s.newProxy(cfg, upstream); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

// Handler is the protected listener's handler (exposed for tests and for
// embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler serves /healthz, /readyz, /metrics, the replayed app probes
// under probe.PathPrefix and, with the pprof setting, /debug/pprof/
// (unauthenticated, like the rest of the admin port, so only these exact
// paths bypass authentication).
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+config.HealthPath, s.health)
	mux.HandleFunc("GET "+config.ReadyPath, s.ready)
	mux.Handle("GET "+config.DrainPath, s.drainer)
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.Handle(probe.PathPrefix, probereplay.NewReplayer(s.opts.AppProbes, probereplay.Options{Logger: s.log.Named("probe")}))
	if s.cfg.Pprof {
		// pprof.Index also serves the named profiles (heap, allocs,
		// goroutine, ...) below /debug/pprof/.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Apply installs the reloadable part of a new configuration: log level,
// identity header names, authorization lists, public paths, the claims
// sessions keep, the MCP policy and the audit settings. In-flight
// requests and open connections are untouched.
func (s *Server) Apply(cfg config.Config) {
	if lvl, err := zap.ParseAtomicLevel(cfg.LogLevel); err == nil {
		s.opts.Level.SetLevel(lvl.Level())
	}
	s.proxy.SetHeaders(headerNames(cfg.Headers))
	s.policy.Set(rulesFrom(cfg))
	s.public.Store(publicpath.New(cfg.PublicPaths))
	if s.rp != nil {
		s.rp.SetExtraClaims(cfg.Policy.Claims)
	}
	if err := s.applyMCPPolicy(cfg); err != nil {
		s.log.Error("MCP policy not applied; the running policy stays", zap.Error(err))
	}
}

// Metrics exposes the metrics (for the reloader and tests).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Serve runs both listeners until ctx ends, then shuts down gracefully: it
// stops accepting, lets in-flight requests and open streams finish for up
// to the configured grace period, closes what remains and returns nil.
func (s *Server) Serve(ctx context.Context, ln, adminLn net.Listener) error {
	bg, stopBackground := s.startBackground(ctx)
	defer stopBackground()
	if s.cfg.TLS.CertFile != "" {
		var err error
		if ln, err = s.tlsListener(bg, ln); err != nil {
			return err
		}
	}

	// http.Server.Shutdown neither waits for nor closes hijacked
	// connections, and a proxied WebSocket is one. Counting handlers lets
	// the shutdown wait for them like for any stream, and cancelling the
	// base context of every request once the grace period is over makes
	// ReverseProxy close their upstream side, which ends them.
	var active sync.WaitGroup
	forceCtx, force := context.WithCancel(context.WithoutCancel(ctx))
	defer force()
	main, admin := s.httpServers(forceCtx, &active)

	errc := make(chan error, 2)
	go func() { errc <- serveErr(main.Serve(ln)) }()
	go func() { errc <- serveErr(admin.Serve(adminLn)) }()
	s.log.Info("serving",
		zap.String("listen", ln.Addr().String()),
		zap.String("admin_listen", adminLn.Addr().String()),
		zap.String("upstream", s.cfg.Upstream),
		zap.String("auth_mode", s.cfg.AuthMode),
		zap.String("session_store", s.cfg.Session.Store))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.drain(main, &active, force)
	s.stop(admin, stopBackground)
	return runErr
}

// startBackground starts what runs beside the listeners (the caches'
// invalidation listeners, OIDC discovery) on a context that outlives ctx
// until stop is called, so that they serve the whole grace period. stop
// cancels them and waits for the ones that use the store.
func (s *Server) startBackground(ctx context.Context) (context.Context, func()) {
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	for _, run := range s.background {
		background.Go(func() { run(bg) })
	}
	if s.rp != nil {
		go func() {
			if err := s.rp.Run(bg); err == nil {
				s.log.Info("OIDC discovery succeeded; ready", zap.String("issuer", s.rp.Issuer()))
			}
		}()
	}
	return bg, func() {
		cancel()
		background.Wait() // the caches' listeners use the store's client
	}
}

// tlsListener serves ln with the configured certificate pair, reloaded when
// its files change (pkg/certreload) for as long as bg lives.
func (s *Server) tlsListener(bg context.Context, ln net.Listener) (net.Listener, error) {
	cw, err := certreload.New(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile,
		certreload.Options{Logger: s.log, Observe: s.metrics.TLSCertificateReload})
	if err != nil {
		return nil, fmt.Errorf("tls: loading certificate: %w", err)
	}
	go func() {
		if err := cw.Run(bg); err != nil {
			s.log.Error("tls certificate watcher stopped", zap.Error(err))
		}
	}()
	return tls.NewListener(ln, &tls.Config{
		GetCertificate: cw.GetCertificate,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
	}), nil
}

// httpServers are the protected listener's server, whose handlers active
// counts and whose requests end when forceCtx is cancelled, and the admin
// listener's.
func (s *Server) httpServers(forceCtx context.Context, active *sync.WaitGroup) (main, admin *http.Server) {
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Done()
		s.handler.ServeHTTP(w, r)
	})
	errLog, _ := zap.NewStdLogAt(s.log.Named("http"), zap.WarnLevel)
	main = &http.Server{
		Handler:           counted,
		BaseContext:       func(net.Listener) context.Context { return forceCtx },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	s.main.p.Store(main)
	admin = &http.Server{Handler: s.AdminHandler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: errLog}
	return main, admin
}

// drain stops the protected listener and lets in-flight requests and open
// streams finish for up to the grace period; then force ends what is left.
func (s *Server) drain(main *http.Server, active *sync.WaitGroup, force func()) {
	s.log.Info("shutting down; waiting for in-flight requests and streams", zap.Duration("grace", s.cfg.ShutdownGrace))
	graceCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	err := main.Shutdown(graceCtx)
	if err == nil {
		err = waitGroup(graceCtx, active)
	}
	if err != nil {
		s.log.Warn("grace period over; closing remaining connections", zap.Error(err))
		force()
		_ = main.Close()
		// The handlers of the connections just closed return promptly;
		// wait briefly so nothing is still writing when Serve returns.
		closeCtx, cancelClose := context.WithTimeout(context.Background(), time.Second)
		_ = waitGroup(closeCtx, active)
		cancelClose()
	}
}

// stop ends the rest once the protected listener has drained: the admin
// listener, the span flush, the background work and the store.
func (s *Server) stop(admin *http.Server, stopBackground func()) {
	// The admin listener and the span flush get their own short deadline:
	// the grace period may already be spent on long streams.
	finalCtx, cancelFinal := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelFinal()
	_ = admin.Shutdown(finalCtx)
	if s.tracer != nil {
		if err := s.tracer.Shutdown(finalCtx); err != nil {
			s.log.Warn("flushing trace spans", zap.Error(err))
		}
	}
	stopBackground()
	if err := s.store.Close(); err != nil {
		s.log.Warn("closing session store", zap.Error(err))
	}
	s.log.Info("stopped")
}

// waitGroup waits for wg or ctx, whichever is first.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func serveErr(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ready reports whether this replica should receive traffic: the
// configuration is loaded (it is, or New would have failed) and OIDC
// discovery has succeeded. It deliberately ignores Redis and the upstream:
// a Redis blip would otherwise pull every replica out of the Service at once,
// turning a partial outage (cookie requests answered 503, bearer requests
// fine) into a total one; and the MCP server's own readiness is the app
// container's probe, not ours.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.rp != nil {
		if err := s.rp.Ready(); err != nil {
			httpjson.Write(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": "OIDC discovery has not succeeded yet"})
			return
		}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"ready": true})
}

func (s *Server) redirectURL(r *http.Request) string {
	if s.cfg.OIDC.RedirectURL != "" {
		return s.cfg.OIDC.RedirectURL
	}
	return s.urls.BaseURL(r) + "/oauth2/callback"
}
