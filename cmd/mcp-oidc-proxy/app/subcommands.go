package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/nftables"
	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/redirect"
)

// Subcommand names. They are part of the pod spec the injector writes, so
// they stay stable.
const (
	// CmdInitRedirect installs the port takeover rule (the init container).
	CmdInitRedirect = "init-redirect"
	// CmdWait blocks until the proxy answers (the classic sidecar's
	// postStart hook, so the kubelet starts the app only once the proxy is up).
	CmdWait = "wait"
)

// openConn opens the nftables connection init-redirect uses; injected so
// tests can exercise the command without touching the host's rules.
type openConn func() (redirect.Conn, error)

// openNftables opens a netlink connection in the current network namespace
// (the pod's, when run as its init container).
func openNftables() (redirect.Conn, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	return c, nil
}

// subcommand runs the subcommand named by io.Args[0], if there is one.
func subcommand(ctx context.Context, io IO) (code int, ok bool) {
	if len(io.Args) == 0 {
		return 0, false
	}
	switch io.Args[0] {
	case CmdInitRedirect:
		return initRedirect(io, io.Args[1:], openNftables), true
	case CmdWait:
		return wait(ctx, io, io.Args[1:]), true
	}
	return 0, false
}

// usageError prints a usage problem and returns exit code 2.
func usageError(io IO, cmd string, err error) int {
	fmt.Fprintf(io.Stderr, "mcp-oidc-proxy %s: %v\n", cmd, err)
	fmt.Fprintf(io.Stderr, "run 'mcp-oidc-proxy %s --help' for usage\n", cmd)
	return 2
}

// parseFlags parses args into fs. It returns (code, true) when the command
// must stop: 0 after --help, 2 on a usage error.
func parseFlags(io IO, fs *flag.FlagSet, args []string) (int, bool) {
	fs.SetOutput(io.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		// The flag package has already printed the error and the usage.
		return 2, true
	}
	if fs.NArg() > 0 {
		return usageError(io, fs.Name(), fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))), true
	}
	return 0, false
}

// initRedirect implements `mcp-oidc-proxy init-redirect --port P --to Q`
// (and `--remove`): it installs or removes the nftables redirect in the
// current network namespace and exits.
func initRedirect(io IO, args []string, open openConn) int {
	fs := flag.NewFlagSet(CmdInitRedirect, flag.ContinueOnError)
	var rule redirect.Rule
	fs.IntVar(&rule.Port, "port", 0, "pod port whose inbound TCP is taken over (required)")
	fs.IntVar(&rule.To, "to", 0, "local port of the proxy that receives it (required)")
	remove := fs.Bool("remove", false, "delete the redirect table instead of installing it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mcp-oidc-proxy %s --port P --to Q | --remove\n\n", CmdInitRedirect)
		fmt.Fprintln(fs.Output(), "Redirects inbound TCP for port P to local port Q with an nftables rule in table inet "+redirect.TableName+".")
		fmt.Fprintln(fs.Output(), "Needs CAP_NET_ADMIN in the pod's network namespace; traffic from loopback is not redirected.")
		fs.PrintDefaults()
	}
	if code, stop := parseFlags(io, fs, args); stop {
		return code
	}
	if !*remove {
		if err := rule.Validate(); err != nil {
			return usageError(io, CmdInitRedirect, err)
		}
	}

	log := NewLogger(io.Stderr, zap.NewAtomicLevelAt(zap.InfoLevel)).With(zap.String("command", CmdInitRedirect))
	defer func() { _ = log.Sync() }()
	conn, err := open()
	if err != nil {
		log.Error("cannot reach nftables", zap.Error(err))
		return 1
	}
	table := "inet " + redirect.TableName
	if *remove {
		if err := redirect.Remove(conn); err != nil {
			log.Error("removing the redirect failed", zap.String("table", table), zap.Error(err))
			return 1
		}
		log.Info("redirect removed", zap.String("table", table))
		return 0
	}
	if err := redirect.Install(conn, rule); err != nil {
		log.Error("installing the redirect failed", zap.Int("port", rule.Port), zap.Int("to", rule.To), zap.Error(err))
		return 1
	}
	log.Info("redirect installed", zap.Int("port", rule.Port), zap.Int("to", rule.To), zap.String("table", table))
	return 0
}

// wait implements `mcp-oidc-proxy wait --url URL --timeout D`: it polls URL
// until it answers 2xx (exit 0) or the timeout passes (exit 1).
func wait(ctx context.Context, io IO, args []string) int {
	fs := flag.NewFlagSet(CmdWait, flag.ContinueOnError)
	rawURL := fs.String("url", "", "http(s) URL to poll, e.g. http://127.0.0.1:15021/healthz (required)")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	interval := fs.Duration("interval", 200*time.Millisecond, "pause between attempts")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mcp-oidc-proxy %s --url URL [--timeout D]\n\n", CmdWait)
		fmt.Fprintln(fs.Output(), "Polls URL until it answers 2xx; exits 1 if it does not within the timeout.")
		fs.PrintDefaults()
	}
	if code, stop := parseFlags(io, fs, args); stop {
		return code
	}
	u, err := url.Parse(*rawURL)
	switch {
	case *rawURL == "":
		return usageError(io, CmdWait, errors.New("--url is required"))
	case err != nil:
		return usageError(io, CmdWait, fmt.Errorf("--url: %w", err))
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return usageError(io, CmdWait, fmt.Errorf("--url %q must be an absolute http or https URL", *rawURL))
	case *timeout <= 0:
		return usageError(io, CmdWait, fmt.Errorf("--timeout must be positive, got %s", *timeout))
	case *interval <= 0:
		return usageError(io, CmdWait, fmt.Errorf("--interval must be positive, got %s", *interval))
	}

	log := NewLogger(io.Stderr, zap.NewAtomicLevelAt(zap.InfoLevel)).With(zap.String("command", CmdWait), zap.String("url", u.Redacted()))
	defer func() { _ = log.Sync() }()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client := &http.Client{
		// No proxy from the environment: the target is the pod itself.
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	attempts, lastProblem := 0, "no attempt made"
	for {
		attempts++
		// One hung attempt must not use up the whole timeout.
		actx, acancel := context.WithTimeout(ctx, max(5**interval, time.Second))
		status, err := get(actx, client, u.String())
		acancel()
		switch {
		case err == nil && status >= 200 && status < 300:
			log.Info("ready", zap.Int("attempts", attempts))
			return 0
		case err != nil:
			lastProblem = err.Error()
		default:
			lastProblem = fmt.Sprintf("status %d", status)
		}
		t := time.NewTimer(*interval)
		select {
		case <-ctx.Done():
			t.Stop()
			log.Error("not ready before the timeout", zap.Duration("timeout", *timeout),
				zap.Int("attempts", attempts), zap.String("last_problem", lastProblem))
			return 1
		case <-t.C:
		}
	}
}

func get(ctx context.Context, c *http.Client, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "mcp-oidc-proxy-wait")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// appProbes reads the probe hand-over from the environment (last value wins,
// as in the configuration loader). It is not a configuration setting: the
// injector writes it, users never do, and it is not reloadable.
func appProbes(env []string) (probe.Set, error) {
	v := ""
	for _, kv := range env {
		if val, ok := strings.CutPrefix(kv, probe.EnvVar+"="); ok {
			v = val
		}
	}
	set, err := probe.Decode(v)
	if err != nil {
		return nil, fmt.Errorf("reading the app probes handed over by the injector: %w", err)
	}
	return set, nil
}
