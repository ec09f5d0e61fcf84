// Command bench measures DESIGN.md's throughput targets as ratios in one
// run, on loopback, against the same small-JSON upstream: direct (for
// scale), a bare httputil.ReverseProxy (the limit any proxy is measured
// against), and mcp-oidc-proxy with a Redis-backed cookie session and with
// a façade bearer token. Ratios rather than absolute numbers, because the
// absolute numbers depend on the machine while the ratios should not.
//
// It drives wrk (Debian package wrk; hack/bench/ensure-bench-deps.sh
// installs it) with the setup the targets were stated for: -t1 -c32. The
// load generator, the proxies, the upstream and Redis share the machine,
// exactly as when the targets were measured.
//
// It prints a report and exits 0 whether or not a target is met; it exits
// non-zero only when something could not be measured.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-proxy/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
)

// cookieSecret signs session cookies; any 32+ byte value will do on
// loopback.
const cookieSecret = "bench-cookie-secret-0123456789abcdef"

// dataBody is the small JSON response every target ends at.
const dataBody = `{"ok":true}`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the knobs of one run; the defaults are the setup DESIGN.md's
// targets were stated for.
type options struct {
	threads, connections int
	duration, warmup     time.Duration
	rounds               int
	redisServer          string
	wrk                  string
	logLevel             string
	cpuProfile           string
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&o.threads, "threads", 1, "wrk threads (-t)")
	fs.IntVar(&o.connections, "connections", 32, "wrk connections (-c)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration per target and round (-d)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured wrk run before each target's first round (0 to skip)")
	fs.IntVar(&o.rounds, "rounds", 1, "rounds over all targets, interleaved; the report takes each target's median")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk binary")
	fs.StringVar(&o.logLevel, "log-level", "error", "proxy log level")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (proxy, upstream and bare proxy are in-process) per measured target to <value>.<target>.pprof")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rounds < 1 || o.duration <= 0 || o.connections < 1 || o.threads < 1 {
		return errors.New("-rounds, -duration, -connections and -threads must be positive")
	}
	if _, err := exec.LookPath(o.wrk); err != nil {
		return fmt.Errorf("wrk not found (%w): install it with hack/bench/ensure-bench-deps.sh or `apt-get install wrk`", err)
	}
	if _, err := exec.LookPath(o.redisServer); err != nil {
		return fmt.Errorf("redis-server not found (%w): install it with hack/ensure-test-deps.sh or `apt-get install redis-server`", err)
	}

	env, err := start(ctx, o)
	if err != nil {
		return err
	}
	defer env.close()

	targets, err := env.targets(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "bench: wrk -t%d -c%d -d%s --latency, %d round(s), GET /data -> %s\n",
		o.threads, o.connections, o.duration, o.rounds, dataBody)

	results := make([][]wrkResult, len(targets))
	for round := range o.rounds {
		for i, t := range targets {
			if round == 0 && o.warmup > 0 {
				if _, err := runWrk(ctx, o, t, o.warmup); err != nil {
					return fmt.Errorf("warm-up of %s: %w", t.name, err)
				}
			}
			stopProfile, err := startProfile(o.cpuProfile, t.name, round)
			if err != nil {
				return err
			}
			r, err := runWrk(ctx, o, t, o.duration)
			stopProfile()
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			fmt.Fprintf(out, "bench: round %d %-22s %9.0f req/s\n", round+1, t.name, r.rps)
			results[i] = append(results[i], r)
		}
	}
	report(out, targets, results)
	return nil
}

// ---------------------------------------------------------------------------
// The environment: upstream, bare reverse proxy, Redis, OIDC provider, proxy.

type env struct {
	upstreamURL, bareURL, proxyURL string
	idp                            *oidcprovider.Provider
	closers                        []func()
}

// close stops everything start started, last first.
func (e *env) close() {
	for _, c := range slices.Backward(e.closers) {
		c()
	}
}

// serve runs h on a fresh loopback listener and returns its URL.
func (e *env) serve(h http.Handler) (string, error) {
	ln, err := stack.Listen()
	if err != nil {
		return "", err
	}
	url, stop := stack.Serve(ln, h)
	e.closers = append(e.closers, stop)
	return url, nil
}

func start(ctx context.Context, o options) (_ *env, err error) {
	e := &env{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()

	// The upstream: /data is what is measured; /mcp lets the MCP client
	// complete its initialize handshake while it obtains a bearer token.
	mux := stack.UpstreamMux()
	mux.HandleFunc("/data", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, dataBody)
	})
	if e.upstreamURL, err = e.serve(mux); err != nil {
		return nil, err
	}

	// The bare reverse proxy, with enough idle upstream connections for
	// wrk's connections (the default two per host would measure connection
	// churn rather than proxying).
	target, err := url.Parse(e.upstreamURL)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	// wrk drops its connections mid-request when a run ends; those are not
	// errors worth a line each. Anything else still reaches stderr.
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "bench: bare reverse proxy: %v\n", err)
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	if e.bareURL, err = e.serve(rp); err != nil {
		return nil, err
	}

	redisURL, stopRedis, err := startRedis(ctx, o.redisServer)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, stopRedis)

	// The OpenID provider. Its access tokens outlive the run, so no session
	// refresh lands inside a measurement.
	idpLn, err := stack.Listen()
	if err != nil {
		return nil, err
	}
	e.idp, err = oidcprovider.New(idpLn, oidcprovider.Options{AccessTokenLifetime: time.Hour})
	if err != nil {
		_ = idpLn.Close()
		return nil, fmt.Errorf("OpenID provider: %w", err)
	}
	go func() { _ = e.idp.Serve() }()
	e.closers = append(e.closers, func() { _ = e.idp.Close() })

	// The proxy, configured with flags as a user would.
	proxy, err := stack.StartProxy(ctx, stack.ProxyOptions{
		Flags: func(listen, admin string) []string {
			return append(stack.Flags(listen, admin, e.upstreamURL, "http://"+idpLn.Addr().String()),
				"--session-store", "redis",
				"--redis-url", redisURL,
				"--session-cookie-secret", cookieSecret,
				"--log-level", o.logLevel,
				"--shutdown-grace", "2s",
			)
		},
		Logger:  func(level zap.AtomicLevel) *zap.Logger { return app.NewLogger(os.Stderr, level) },
		Version: "bench", Timeout: 30 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	e.proxyURL = proxy.URL
	e.closers = append(e.closers, func() { _ = proxy.Stop() })
	return e, nil
}

// startRedis runs a private, non-persistent redis-server on a free loopback
// port and returns its URL and a function that stops it.
func startRedis(ctx context.Context, bin string) (string, func(), error) {
	// Reserve a free port, then hand it to redis-server. Another process
	// could take it in between; redis-server then fails to start and the
	// readiness wait below reports it.
	ln, err := stack.Listen()
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().(*net.TCPAddr)
	_ = ln.Close()
	var logs strings.Builder
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(addr.Port),
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// Do not outlive the benchmark if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if redisPing(addr.String()) == nil {
			return fmt.Sprintf("redis://%s/0", addr), stop, nil
		}
		select {
		case <-exited:
			return "", nil, fmt.Errorf("redis-server exited at start-up: %s", strings.TrimSpace(logs.String()))
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s did not answer PING within 10s", addr)
		}
	}
}

// redisPing sends an inline PING and expects +PONG.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Credentials and targets.

// target is one thing wrk loads.
type target struct {
	name    string
	url     string
	headers []string // "Name: value"
	// ratio is the DESIGN.md target as a fraction of the bare reverse
	// proxy's throughput; 0 when the row is for scale only.
	ratio float64
}

func (e *env) targets(ctx context.Context) ([]target, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cookie, err := e.sessionCookie(ctx)
	if err != nil {
		return nil, fmt.Errorf("browser login for a session cookie: %w", err)
	}
	token, err := e.bearerToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("MCP OAuth flow for a bearer token: %w", err)
	}
	ts := []target{
		{name: "direct upstream", url: e.upstreamURL + "/data"},
		{name: "bare ReverseProxy", url: e.bareURL + "/data"},
		{name: "proxy, Redis cookie", url: e.proxyURL + "/data", headers: []string{"Cookie: " + cookie}, ratio: 0.8},
		{name: "proxy, bearer JWT", url: e.proxyURL + "/data", headers: []string{"Authorization: Bearer " + token}, ratio: 0.9},
	}
	// A target that answers anything but the upstream's 200 would make its
	// number meaningless; check once before loading it.
	for _, t := range ts {
		if err := probe(ctx, t); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	return ts, nil
}

// sessionCookie logs the demo user in through the proxy's browser flow and
// returns the Cookie header value the browser would then send.
func (e *env) sessionCookie(ctx context.Context) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		_ = resp.Body.Close()
		return resp, nil
	}
	resp, err := get(e.proxyURL + "/oauth2/start?rd=/")
	if err != nil {
		return "", err
	}
	authURL := resp.Header.Get("Location")
	if authURL == "" {
		return "", fmt.Errorf("login start answered %d without a redirect", resp.StatusCode)
	}
	callback, err := e.idp.Login(ctx, nil, authURL)
	if err != nil {
		return "", err
	}
	if resp, err = get(callback.String()); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("callback answered %d", resp.StatusCode)
	}
	u, err := url.Parse(e.proxyURL + "/data")
	if err != nil {
		return "", err
	}
	var pairs []string
	for _, c := range jar.Cookies(u) {
		pairs = append(pairs, c.Name+"="+c.Value)
	}
	if len(pairs) == 0 {
		return "", errors.New("no session cookie after the callback")
	}
	return strings.Join(pairs, "; "), nil
}

// bearerToken runs the official MCP SDK client through the façade's OAuth
// flow (registration, login, consent, token) and returns its access token.
func (e *env) bearerToken(ctx context.Context) (string, error) {
	c, err := mcpclient.Connect(ctx, mcpclient.Options{
		Endpoint:   e.proxyURL + "/mcp",
		ClientName: "bench",
		Login:      func(ctx context.Context, authURL string) (*url.URL, error) { return e.idp.Login(ctx, nil, authURL) },
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	tok, err := c.Tokens.Token()
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

func probe(ctx context.Context, t target) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	for _, h := range t.headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK || string(body) != dataBody {
		return fmt.Errorf("GET /data answered %d %q, want 200 %s", resp.StatusCode, body, dataBody)
	}
	return nil
}

// ---------------------------------------------------------------------------
// wrk.

type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
}

var (
	rpsRe      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	pctRe      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	non2xxRe   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	sockErrsRe = regexp.MustCompile(`(?m)^\s*Socket errors:.*$`)
)

// runWrk loads t for d and parses wrk's summary. Any non-2xx answer or
// socket error makes the run invalid: the number would not be the one the
// target is about.
func runWrk(ctx context.Context, o options, t target, d time.Duration) (wrkResult, error) {
	args := []string{
		"-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.connections),
		"-d", fmt.Sprintf("%ds", max(1, int(d.Round(time.Second)/time.Second))),
		"--timeout", "5s", "--latency",
	}
	for _, h := range t.headers {
		args = append(args, "-H", h)
	}
	args = append(args, t.url)
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	raw, err := exec.CommandContext(ctx, o.wrk, args...).CombinedOutput()
	// wrk's output echoes the headers; never let a credential reach an
	// error message or a log.
	out := string(raw)
	for _, h := range t.headers {
		_, v, _ := strings.Cut(h, ": ")
		out = strings.ReplaceAll(out, v, "<redacted>")
	}
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	if m := non2xxRe.FindStringSubmatch(out); m != nil && m[1] != "0" {
		return wrkResult{}, fmt.Errorf("wrk saw %s non-2xx answers:\n%s", m[1], out)
	}
	if m := sockErrsRe.FindString(out); m != "" {
		return wrkResult{}, fmt.Errorf("wrk saw socket errors (%s):\n%s", strings.TrimSpace(m), out)
	}
	var r wrkResult
	m := rpsRe.FindStringSubmatch(out)
	if m == nil {
		return wrkResult{}, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	if r.rps, err = strconv.ParseFloat(m[1], 64); err != nil {
		return wrkResult{}, fmt.Errorf("Requests/sec %q: %w", m[1], err)
	}
	for _, p := range pctRe.FindAllStringSubmatch(out, -1) {
		d, err := time.ParseDuration(p[2] + p[3])
		if err != nil {
			return wrkResult{}, fmt.Errorf("latency %q: %w", p[0], err)
		}
		if p[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return wrkResult{}, fmt.Errorf("no 50%%/99%% latency in wrk output:\n%s", out)
	}
	return r, nil
}

// startProfile starts a CPU profile for one measured run when prefix is set
// and returns what stops it.
func startProfile(prefix, name string, round int) (func(), error) {
	if prefix == "" {
		return func() {}, nil
	}
	slug := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(name))
	path := fmt.Sprintf("%s.%s.%d.pprof", prefix, strings.Trim(strings.ReplaceAll(slug, "--", "-"), "-"), round+1)
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// ---------------------------------------------------------------------------
// The report.

// median returns the run with the median throughput (the lower middle one
// for an even count), keeping its latencies with it.
func median(rs []wrkResult) wrkResult {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b wrkResult) int {
		switch {
		case a.rps < b.rps:
			return -1
		case a.rps > b.rps:
			return 1
		}
		return 0
	})
	return s[(len(s)-1)/2]
}

func report(out io.Writer, targets []target, results [][]wrkResult) {
	med := make([]wrkResult, len(targets))
	for i := range targets {
		med[i] = median(results[i])
	}
	bare := med[1] // targets() puts the bare reverse proxy second
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50\tp99\t× bare\tgoal\tresult\t")
	met, total := 0, 0
	for i, t := range targets {
		r := med[i]
		ratio := r.rps / bare.rps
		goal, verdict := "", ""
		if t.ratio > 0 {
			total++
			goal = fmt.Sprintf("≥ %.2f", t.ratio)
			verdict = "FAIL"
			if ratio >= t.ratio {
				verdict = "pass"
				met++
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.2f\t%s\t%s\t\n", t.name, r.rps, fmtDur(r.p50), fmtDur(r.p99), ratio, goal, verdict)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "\nthroughput targets met: %d of %d (DESIGN.md \"Targets\"; ratios against the bare ReverseProxy in this run)\n", met, total)
	fmt.Fprintln(out, "p99 added latency at a fixed 1,000 req/s: not measured (needs a constant-rate load generator such as wrk2, which Debian does not package)")
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
}
