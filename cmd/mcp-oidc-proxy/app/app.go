// Package app turns arguments, environment and the config file into a
// validated configuration and hands it to a run function. The run function
// is injected so tests can check flag/env/file merging without a server.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/memlimit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/server"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// Version is set at build time with -ldflags "-X .../app.Version=...".
var Version = "dev"

// IO is the process's view of the world.
type IO struct {
	Args   []string
	Env    []string
	Stdout io.Writer
	Stderr io.Writer
	// Reload delivers SIGHUP.
	Reload <-chan os.Signal
	// ReadFile reads files (default os.ReadFile).
	ReadFile func(string) ([]byte, error)
}

// RunFunc runs the sidecar with a validated configuration.
type RunFunc func(ctx context.Context, rt Runtime) error

// Runtime is what Main hands to the run function.
type Runtime struct {
	Config  config.Config
	Source  config.Source
	Loaded  *config.Loaded
	Logger  *zap.Logger
	Level   zap.AtomicLevel
	Reload  <-chan os.Signal
	Version string
}

// Main returns the process exit code: 0 on success or clean shutdown, 2 for
// usage and configuration errors, 1 for runtime failures. A first argument
// naming a subcommand (init-redirect, wait) runs that instead of the proxy.
func Main(ctx context.Context, io IO, run RunFunc) int {
	if code, ok := subcommand(ctx, io); ok {
		return code
	}
	src := config.Source{Args: io.Args, Env: io.Env, ReadFile: io.ReadFile}
	loaded, err := config.LoadValidated(src)
	switch {
	case errors.Is(err, config.ErrHelp):
		PrintUsage(io.Stdout)
		return 0
	case err == nil && loaded.ShowVersion:
		fmt.Fprintln(io.Stdout, "mcp-oidc-proxy", Version)
		return 0
	}
	if err != nil {
		fmt.Fprintf(io.Stderr, "mcp-oidc-proxy: invalid configuration:\n%s\n", indent(err))
		return 2
	}
	level, _ := zap.ParseAtomicLevel(loaded.Config.LogLevel)
	logger := NewLogger(io.Stderr, level)
	defer func() { _ = logger.Sync() }()
	// Injected sidecars get their pod's name through the downward API;
	// put it on every line so logs can be told apart without a collector.
	if pod := src.Getenv(config.PodNameEnv); pod != "" {
		logger = logger.With(zap.String("pod", pod), zap.String("namespace", src.Getenv(config.PodNamespaceEnv)))
	}

	if err := run(ctx, Runtime{
		Config: loaded.Config, Source: src, Loaded: loaded, Logger: logger, Level: level,
		Reload: io.Reload, Version: Version,
	}); err != nil {
		logger.Error("mcp-oidc-proxy stopped with an error", zap.Error(err))
		return 1
	}
	return 0
}

// NewLogger returns the JSON logger used everywhere. Sampling is off: a
// security proxy must not drop log lines under load.
func NewLogger(w io.Writer, level zap.AtomicLevel) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeDuration = zapcore.StringDurationEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), level)
	return zap.New(core, zap.ErrorOutput(zapcore.AddSync(w)))
}

// Serve is the production run function: it builds the server, binds both
// listeners, watches for reloads and serves until ctx ends.
func Serve(ctx context.Context, rt Runtime) error {
	// go-redis logs pool errors through a process-wide logger; route them
	// into ours. This is the binary's entry point, so the global is ours to set.
	redis.SetLogger(session.RedisLogger{Log: rt.Logger.Named("redis")})
	// OpenTelemetry reports export failures through its own process-wide
	// handler, which would print plain text to stderr between our JSON lines.
	otelLog := rt.Logger.Named("otel")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		otelLog.Warn("OpenTelemetry error", zap.Error(err))
	}))
	if _, err := ApplyMemoryLimit(rt, debug.SetMemoryLimit); err != nil {
		return err
	}
	probes, err := AppProbes(rt.Source.Env)
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, rt.Config, server.Options{Version: rt.Version, Logger: rt.Logger, Level: rt.Level, AppProbes: probes})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", rt.Config.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", rt.Config.Listen, err)
	}
	adminLn, err := lc.Listen(ctx, "tcp", rt.Config.AdminListen)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("admin listen on %s: %w", rt.Config.AdminListen, err)
	}
	reloader := config.NewReloader(rt.Source, rt.Loaded, srv.Apply, rt.Logger.Named("config")).
		WithObserver(srv.Metrics().ConfigReload)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if err := reloader.Run(rctx, rt.Reload); err != nil {
			rt.Logger.Warn("configuration reloads disabled", zap.Error(err))
		}
	}()
	if rt.Config.AuthMode == "bypass" {
		rt.Logger.Warn("AUTH_MODE=bypass: every request is forwarded WITHOUT authentication; never run this outside local development")
	}
	return srv.Serve(ctx, ln, adminLn)
}

// PrintUsage prints every flag with its environment names and default,
// generated from the same table the loader uses.
func PrintUsage(w io.Writer) {
	fmt.Fprintf(w, "mcp-oidc-proxy %s: OpenID Connect authentication in front of an MCP server.\n\n", Version)
	fmt.Fprintln(w, "Usage: mcp-oidc-proxy [flags]")
	fmt.Fprintf(w, "       mcp-oidc-proxy %s --port P --to Q   (redirect inbound TCP for P to the proxy on Q; needs NET_ADMIN)\n", config.CmdInitRedirect)
	fmt.Fprintf(w, "       mcp-oidc-proxy %s --url URL --timeout D   (wait until URL answers 2xx)\n", config.CmdWait)
	fmt.Fprintln(w, "Precedence: flags > environment > config file > defaults.")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  --config\t%s\tYAML configuration file\n", config.ConfigFileEnv)
	fmt.Fprintf(tw, "  --version\t\tprint the version and exit\n")
	fields := config.Fields()
	for _, f := range fields {
		def := ""
		if f.Default != "" {
			def = " (default " + f.Default + ")"
		}
		reload := ""
		if f.Reload {
			reload = " [reloadable]"
		}
		fmt.Fprintf(tw, "  --%s %s\t%s\t%s%s%s\n", f.Flag, f.Type(), strings.Join(f.Env, ", "), f.Usage, def, reload)
	}
	_ = tw.Flush()
}

func indent(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "  - " + l
	}
	return strings.Join(lines, "\n")
}

// ApplyMemoryLimit gives the Go runtime a soft memory limit of
// memlimit.Fraction of the configured container limit (memory_limit), unless
// GOMEMLIMIT is set, which the runtime has already applied. set is
// runtime/debug.SetMemoryLimit in the binary; it is a parameter so tests do
// not change their own process's limit. It returns the limit in force and
// logs it.
func ApplyMemoryLimit(rt Runtime, set func(int64) int64) (int64, error) {
	d, err := memlimit.Derive(rt.Config.MemoryLimit, rt.Source.Getenv(memlimit.GoEnv))
	if err != nil {
		return 0, fmt.Errorf("memory_limit: %w", err)
	}
	limit := memlimit.Apply(d, set)
	if d.Limit > 0 || d.FromGoEnv {
		rt.Logger.Info("Go soft memory limit set", zap.Int64("limit_bytes", limit),
			zap.Int64("container_limit_bytes", d.Container), zap.Bool("from_gomemlimit", d.FromGoEnv))
	}
	return limit, nil
}
