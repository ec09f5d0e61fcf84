package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/nftables"
	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/redirect"
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
	case config.CmdInitRedirect:
		return initRedirect(io, io.Args[1:], openNftables), true
	case config.CmdWait:
		return wait(ctx, io, io.Args[1:]), true
	}
	return 0, false
}

// CheckSubcommand parses and checks a subcommand's command line (args after
// the binary, the subcommand first) exactly as the subcommand does before
// it acts, without acting: the contract test runs the injector's command
// lines through it. ok is false when args[0] names no subcommand.
func CheckSubcommand(args []string) (ok bool, err error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case config.CmdInitRedirect:
		_, err := parseInitRedirect(args[1:], io.Discard)
		return true, err
	case config.CmdWait:
		_, err := parseWait(args[1:], io.Discard)
		return true, err
	}
	return false, nil
}

// usageError prints a usage problem and returns exit code 2.
func usageError(io IO, cmd string, err error) int {
	fmt.Fprintf(io.Stderr, "mcp-oidc-proxy %s: %v\n", cmd, err)
	fmt.Fprintf(io.Stderr, "run 'mcp-oidc-proxy %s --help' for usage\n", cmd)
	return 2
}

// parseFlags parses args into fs, printing flag errors and --help to out.
// It returns errStop for --help (0) and flag errors (2, already printed),
// errUsage for stray arguments.
func parseFlags(out io.Writer, fs *flag.FlagSet, args []string) error {
	fs.SetOutput(out)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errStop{0}
		}
		// The flag package has already printed the error and the usage.
		return errStop{2}
	}
	if fs.NArg() > 0 {
		return errUsage{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

// stopCode turns a parse error into the exit code: (code, true) when the
// command must stop.
func stopCode(io IO, cmd string, err error) (int, bool) {
	var stop errStop
	var usage errUsage
	switch {
	case err == nil:
		return 0, false
	case errors.As(err, &stop):
		return stop.code, true
	case errors.As(err, &usage):
		return usageError(io, cmd, usage.err), true
	}
	return usageError(io, cmd, err), true
}

// initRedirectCmd is init-redirect's parsed and checked command line.
type initRedirectCmd struct {
	rule   redirect.Rule
	remove bool
}

// errStop ends a subcommand after --help (exit 0) or a usage error the flag
// package has already printed (exit 2).
type errStop struct{ code int }

func (e errStop) Error() string { return fmt.Sprintf("stop with exit code %d", e.code) }

// errUsage is a usage problem found after parsing; the caller prints it.
type errUsage struct{ err error }

func (e errUsage) Error() string { return e.err.Error() }
func (e errUsage) Unwrap() error { return e.err }

// parseInitRedirect reads `--port P --to Q` or `--remove`, printing flag
// errors and --help to out.
func parseInitRedirect(args []string, out io.Writer) (initRedirectCmd, error) {
	fs := flag.NewFlagSet(config.CmdInitRedirect, flag.ContinueOnError)
	var cmd initRedirectCmd
	fs.IntVar(&cmd.rule.Port, config.FlagRedirectPort, 0, "pod port whose inbound TCP is taken over (required)")
	fs.IntVar(&cmd.rule.To, config.FlagRedirectTo, 0, "local port of the proxy that receives it (required)")
	fs.BoolVar(&cmd.remove, config.FlagRedirectRemove, false, "delete the redirect table instead of installing it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mcp-oidc-proxy %s --%s P --%s Q | --%s\n\n", config.CmdInitRedirect, config.FlagRedirectPort, config.FlagRedirectTo, config.FlagRedirectRemove)
		fmt.Fprintln(fs.Output(), "Redirects inbound TCP for port P to local port Q with an nftables rule in table inet "+redirect.TableName+".")
		fmt.Fprintln(fs.Output(), "Needs CAP_NET_ADMIN in the pod's network namespace; traffic from loopback is not redirected.")
		fs.PrintDefaults()
	}
	if err := parseFlags(out, fs, args); err != nil {
		return cmd, err
	}
	if !cmd.remove {
		if err := cmd.rule.Validate(); err != nil {
			return cmd, errUsage{err}
		}
	}
	return cmd, nil
}

// initRedirect implements `mcp-oidc-proxy init-redirect --port P --to Q`
// (and `--remove`): it installs or removes the nftables redirect in the
// current network namespace and exits.
func initRedirect(io IO, args []string, open openConn) int {
	cmd, err := parseInitRedirect(args, io.Stderr)
	if code, stop := stopCode(io, config.CmdInitRedirect, err); stop {
		return code
	}
	rule, remove := cmd.rule, &cmd.remove

	log := NewLogger(io.Stderr, zap.NewAtomicLevelAt(zap.InfoLevel)).With(zap.String("command", config.CmdInitRedirect))
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

// waitCmd is wait's parsed and checked command line.
type waitCmd struct {
	url               *url.URL
	timeout, interval time.Duration
}

// parseWait reads `--url URL [--timeout D] [--interval D]`, printing flag
// errors and --help to out.
func parseWait(args []string, out io.Writer) (waitCmd, error) {
	fs := flag.NewFlagSet(config.CmdWait, flag.ContinueOnError)
	var cmd waitCmd
	rawURL := fs.String(config.FlagWaitURL, "", "http(s) URL to poll, e.g. http://127.0.0.1:15021/healthz (required)")
	fs.DurationVar(&cmd.timeout, config.FlagWaitTimeout, 60*time.Second, "give up after this long")
	fs.DurationVar(&cmd.interval, config.FlagWaitInterval, 200*time.Millisecond, "pause between attempts")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mcp-oidc-proxy %s --%s URL [--%s D]\n\n", config.CmdWait, config.FlagWaitURL, config.FlagWaitTimeout)
		fmt.Fprintln(fs.Output(), "Polls URL until it answers 2xx; exits 1 if it does not within the timeout.")
		fs.PrintDefaults()
	}
	if err := parseFlags(out, fs, args); err != nil {
		return cmd, err
	}
	u, err := url.Parse(*rawURL)
	switch {
	case *rawURL == "":
		return cmd, errUsage{errors.New("--url is required")}
	case err != nil:
		return cmd, errUsage{fmt.Errorf("--url: %w", err)}
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return cmd, errUsage{fmt.Errorf("--url %q must be an absolute http or https URL", *rawURL)}
	case cmd.timeout <= 0:
		return cmd, errUsage{fmt.Errorf("--timeout must be positive, got %s", cmd.timeout)}
	case cmd.interval <= 0:
		return cmd, errUsage{fmt.Errorf("--interval must be positive, got %s", cmd.interval)}
	}
	cmd.url = u
	return cmd, nil
}

// wait implements `mcp-oidc-proxy wait --url URL --timeout D`: it polls URL
// until it answers 2xx (exit 0) or the timeout passes (exit 1).
func wait(ctx context.Context, io IO, args []string) int {
	cmd, err := parseWait(args, io.Stderr)
	if code, stop := stopCode(io, config.CmdWait, err); stop {
		return code
	}
	u, timeout, interval := cmd.url, &cmd.timeout, &cmd.interval

	log := NewLogger(io.Stderr, zap.NewAtomicLevelAt(zap.InfoLevel)).With(zap.String("command", config.CmdWait), zap.String("url", u.Redacted()))
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

// AppProbes reads the probe hand-over from the environment (last value wins,
// as in the configuration loader). It is not a configuration setting: the
// injector writes it, users never do, and it is not reloadable. Serve and
// the contract test (test/contract) read it through here.
func AppProbes(env []string) (probe.Set, error) {
	set, err := probe.Decode(config.Source{Env: env}.Getenv(probe.EnvVar))
	if err != nil {
		return nil, fmt.Errorf("reading the app probes handed over by the injector: %w", err)
	}
	return set, nil
}
