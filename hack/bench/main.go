// Command bench measures DESIGN.md's performance targets in one run, on
// loopback, and writes them with their ratios to bench/results.md.
//
// Every proxy runs as its own process, started from its binary with flags
// as a user would start it: a bare httputil.ReverseProxy (hack/bench/
// bareproxy, the limit any proxy here is measured against), mcp-oidc-proxy
// (built like `make build`) with a Redis cookie session, with a memory
// cookie session, with façade bearer tokens and in external mode with the
// provider's JWTs, and oauth2-proxy (built from its Go module by
// hack/oauth2-proxy-bin.sh) with the same Redis and a cookie session. The
// upstream (a small JSON answer, an SSE stream and the example MCP server),
// Redis and the OpenID providers are shared.
//
// Scenarios, all in one run:
//   - throughput: a closed loop (wrk -t1 -c32, or a Go loop with -loader go)
//     per target, rounds interleaved, medians; ratios to the bare proxy;
//   - latency: an open loop at a fixed rate (vegeta, 1,000 req/s) per
//     target; p50, p99, p99.9 and what each adds over the bare proxy;
//   - policy: MCP POSTs (tools/call of echo, tools/list, as the official
//     SDK client sends them at protocol 2026-07-28, captured at run time)
//     to the example MCP server served statelessly with JSON answers,
//     directly, through the bare proxy and through three sidecars that
//     differ only in having no policy, a policy, or a policy and the audit
//     trail; closed and open loop (at -policy-rate); the overhead as
//     ratios to the sidecar without a policy;
//   - session hop: one MCP session of protocol 2025-11-25 (the SDK
//     client's handshake, captured at run time) on the example MCP server
//     with sessions, created through sidecar A, so A owns it; its
//     tools/call sent to A (served locally) and to sidecar B (another
//     replica, sharing Redis and the cookie secret, which forwards it to A:
//     one hop), next to the upstream and the bare proxy; closed and open
//     loop (at -hop-rate); what the hop adds, and B's hop counter checked
//     against the requests it answered;
//   - streams: as many concurrent SSE streams as -streams through a fresh
//     process of each proxy; VmRSS idle and per stream; event delay;
//   - admission: dry-run pod creations through envtest's kube-apiserver with
//     the injector's webhook installed, annotated against plain pods;
//   - start-up: exec to the first 200 from the readiness URL;
//   - the sidecar's binary size.
//
// It exits 0 whether or not a target is met; non-zero only when something
// could not be measured. -smoke runs every scenario with tiny counts (the
// test in this package does, in CI); -only policy or -only hop runs that
// scenario alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

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
	smoke                bool
	loader               string
	threads, connections int
	duration, warmup     time.Duration
	rounds               int
	rate                 int
	rateDuration         time.Duration
	rateRounds           int
	streams              int
	streamsCap           string // why streams is lower than asked, if it is
	streamEvents         int
	streamInterval       time.Duration
	streamOpenTimeout    time.Duration
	admissions           int
	redisServer, wrk     string
	logLevel             string
	out, work            string
	proxyBin             string
	oauth2Proxy          string
	timeout              time.Duration
	goProfiles           bool
	nofile               uint64
	only                 string // "" (every scenario), onlyPolicy or onlyHop
	policyDuration       time.Duration
	policyRate           int
	policyRateDuration   time.Duration
	hopDuration          time.Duration
	hopRate              int
	hopRateDuration      time.Duration
}

// -only's values: one scenario alone.
const (
	onlyPolicy = "policy"
	onlyHop    = "hop"
)

// streamFDReserve is how many descriptor pairs a process keeps for
// everything but the streams (listeners, Redis, logs, the runtime).
const streamFDReserve = 50

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&o.smoke, "smoke", false, "every scenario with tiny counts (seconds): checks the harness, not the proxy")
	fs.StringVar(&o.loader, "loader", "wrk", "closed-loop load generator: wrk or go")
	fs.IntVar(&o.threads, "threads", 1, "wrk threads (-t)")
	fs.IntVar(&o.connections, "connections", 32, "closed-loop connections (wrk -c)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured closed-loop duration per target and round")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured closed-loop run before each target's first round (0 to skip)")
	fs.IntVar(&o.rounds, "rounds", 3, "closed-loop rounds over all targets, interleaved; the report takes each target's median")
	fs.IntVar(&o.rate, "rate", 1000, "open-loop request rate (req/s) of the latency scenario")
	fs.DurationVar(&o.rateDuration, "rate-duration", 20*time.Second, "open-loop duration per target, split over -rate-rounds interleaved rounds")
	fs.IntVar(&o.rateRounds, "rate-rounds", 5, "interleaved open-loop rounds the -rate-duration is split into")
	fs.IntVar(&o.streams, "streams", 10000, "SSE streams to hold at once through each proxy")
	fs.IntVar(&o.streamEvents, "stream-events", 5, "events sent to every held stream")
	fs.DurationVar(&o.streamInterval, "stream-interval", time.Second, "time between events")
	fs.DurationVar(&o.streamOpenTimeout, "stream-open-timeout", 2*time.Minute, "how long opening the streams may take")
	fs.IntVar(&o.admissions, "admissions", 200, "timed dry-run pod creations of each kind")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk binary")
	fs.StringVar(&o.logLevel, "log-level", "error", "mcp-oidc-proxy log level")
	fs.StringVar(&o.out, "out", "bench/results.md", "where the results go (relative to the repository root); - for stdout only")
	fs.StringVar(&o.work, "work", "bin/bench", "where the binaries are built (relative to the repository root)")
	fs.StringVar(&o.proxyBin, "proxy-bin", "", "an mcp-oidc-proxy binary to measure instead of building cmd/mcp-oidc-proxy")
	fs.StringVar(&o.oauth2Proxy, "oauth2-proxy", os.Getenv("OAUTH2_PROXY"), "oauth2-proxy binary (default $OAUTH2_PROXY, else built by hack/oauth2-proxy-bin.sh)")
	fs.DurationVar(&o.timeout, "timeout", 40*time.Minute, "bound on the whole run")
	fs.BoolVar(&o.goProfiles, "go-profiles", true, "when the sidecar serves no pprof, profile its request path with test/e2e's BenchmarkCookieSessionRedis into profiles/ beside -out")
	fs.Uint64Var(&o.nofile, "nofile", 1<<17, "RLIMIT_NOFILE raised to for this process and its children (streams need about three descriptors each)")
	fs.StringVar(&o.only, "only", "", "run one scenario alone: policy or hop (then -out defaults to -, so bench/results.md keeps the full run)")
	fs.DurationVar(&o.policyDuration, "policy-duration", 5*time.Second, "measured closed-loop duration per target and round of the policy scenario")
	fs.IntVar(&o.policyRate, "policy-rate", 300, "open-loop request rate (req/s) of the policy scenario (the MCP SDK server upstream answers a few thousand a second at most)")
	fs.DurationVar(&o.policyRateDuration, "policy-rate-duration", 10*time.Second, "open-loop duration per target of the policy scenario, split over -rate-rounds")
	fs.DurationVar(&o.hopDuration, "hop-duration", 5*time.Second, "measured closed-loop duration per target and round of the session hop scenario")
	fs.IntVar(&o.hopRate, "hop-rate", 300, "open-loop request rate (req/s) of the session hop scenario (the MCP SDK server upstream answers a few thousand a second at most)")
	fs.DurationVar(&o.hopRateDuration, "hop-rate-duration", 10*time.Second, "open-loop duration per target of the session hop scenario, split over -rate-rounds")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.only != "" && o.only != onlyPolicy && o.only != onlyHop {
		return o, fmt.Errorf("-only %q: want %s or %s", o.only, onlyPolicy, onlyHop)
	}
	outSet := false
	fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
	if o.only != "" && !outSet {
		o.out = "-"
	}
	if o.smoke {
		o.duration, o.warmup, o.rounds = time.Second, 0, 1
		o.rateDuration, o.rate, o.rateRounds = time.Second, 100, 1
		o.streams, o.streamEvents, o.streamInterval = 20, 2, 100*time.Millisecond
		o.admissions = 5
		o.policyDuration, o.policyRateDuration, o.policyRate = time.Second, time.Second, 100
		o.hopDuration, o.hopRateDuration, o.hopRate = time.Second, time.Second, 100
		o.timeout = min(o.timeout, 10*time.Minute)
	}
	if o.loader != "wrk" && o.loader != "go" {
		return o, fmt.Errorf("-loader %q: want wrk or go", o.loader)
	}
	if o.rounds < 1 || o.duration <= 0 || o.connections < 1 || o.threads < 1 || o.rate < 1 || o.rateRounds < 1 ||
		o.rateDuration <= 0 || o.policyDuration <= 0 || o.policyRateDuration <= 0 || o.policyRate < 1 ||
		o.hopDuration <= 0 || o.hopRateDuration <= 0 || o.hopRate < 1 || o.streams < 1 || o.streamEvents < 1 || o.admissions < 1 {
		return o, errors.New("counts and durations must be positive")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	res, err := measure(ctx, o)
	if err != nil {
		return err
	}
	md := res.markdown()
	fmt.Fprint(stdout, md)
	if o.out != "-" {
		path := res.abs(o.out)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", path)
	}
	return nil
}

// measure runs every scenario once.
func measure(ctx context.Context, o options) (*results, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var err error
	if o.loader == "wrk" {
		if _, err := exec.LookPath(o.wrk); err != nil {
			return nil, fmt.Errorf("wrk not found (%w): install it with hack/bench/ensure-bench-deps.sh, or use -loader go", err)
		}
	}
	if _, err := exec.LookPath(o.redisServer); err != nil {
		return nil, fmt.Errorf("redis-server not found (%w): install it with hack/ensure-test-deps.sh or `apt-get install redis-server`", err)
	}
	nofile, err := raiseNofile(o.nofile)
	if err != nil {
		return nil, err
	}
	// A stream costs the proxy two descriptors (client and upstream side)
	// and the harness two (client and upstream); where the hard limit cannot
	// be raised (no CAP_SYS_RESOURCE), it bounds the streams any process
	// here can hold.
	if most := int(nofile/2) - streamFDReserve; o.streams > most {
		fmt.Fprintf(os.Stderr, "bench: RLIMIT_NOFILE is %d, so at most %d streams (2 descriptors each, %d kept for the rest)\n", nofile, most, 2*streamFDReserve)
		o.streamsCap = fmt.Sprintf("asked for %d, but RLIMIT_NOFILE could only be raised to %d here (the hard limit; raising it needs CAP_SYS_RESOURCE), "+
			"and every stream takes two descriptors in the proxy (client and upstream side) and two in the harness, so %d is the most any process here can hold", o.streams, nofile, most)
		o.streams = most
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	res := &results{o: o, root: root, nofile: nofile, started: time.Now().UTC()}
	o.work = res.abs(o.work)
	res.machine = machineInfo(ctx, root, o)
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }

	e := &env{o: o, root: root, procs: map[string]*proc{}}
	defer e.close()
	logf("building mcp-oidc-proxy and the bare proxy (and oauth2-proxy unless -oauth2-proxy names one)")
	if err := e.build(ctx); err != nil {
		return nil, err
	}
	if res.binarySize, err = fileSize(e.proxyBin); err != nil {
		return nil, err
	}
	if e.o2pBin != "" {
		res.o2pVersion = commandLine(ctx, e.o2pBin, "--version")
	}
	if err := e.startShared(ctx); err != nil {
		return nil, err
	}
	var kinds []string
	switch o.only {
	case onlyPolicy:
		kinds = slices.Concat([]string{kindBare}, policyKinds)
	case onlyHop:
		kinds = slices.Concat([]string{kindBare}, hopKinds)
	default:
		kinds = slices.Concat([]string{kindBare, kindRedis, kindMemory, kindExternal, kindO2P}, policyKinds, hopKinds)
	}
	for _, kind := range kinds {
		p, err := e.launch(ctx, kind)
		if err != nil {
			return nil, err
		}
		e.procs[kind] = p
		e.closers = append(e.closers, p.stop)
	}
	res.profiles = e.profileNote(ctx)
	if o.only == "" {
		targets, err := e.targets(ctx)
		if err != nil {
			return nil, err
		}
		res.targets = targets

		// Throughput.
		logf("throughput: %s, %d connections, %v x %d round(s) per target", o.loader, o.connections, o.duration, o.rounds)
		if res.load, err = e.closedLoop(ctx, res, targets, o.duration); err != nil {
			return nil, err
		}
		// Latency at a fixed rate.
		logf("latency: vegeta at %d req/s for %v per target", o.rate, o.rateDuration)
		if res.latency, err = e.openLoop(targets, o.rate, o.rateDuration); err != nil {
			return nil, err
		}
	}

	// The policy scenario: MCP POSTs through sidecars with and without a
	// policy (and its audit trail).
	if o.only == "" || o.only == onlyPolicy {
		logf("policy: MCP tools/call and tools/list, closed loop %v x %d round(s), open loop at %d req/s for %v per target", o.policyDuration, o.rounds, o.policyRate, o.policyRateDuration)
		if res.policy, err = e.runPolicy(ctx, res); err != nil {
			return nil, fmt.Errorf("policy scenario: %w", err)
		}
	}
	// The session hop scenario: one MCP session owned by sidecar A, its
	// tools/call sent to A and, one hop away, to B.
	if o.only == "" || o.only == onlyHop {
		logf("session hop: tools/call in a %s session through its owner and through another replica, closed loop %v x %d round(s), open loop at %d req/s for %v per target",
			hopProtocolVersion, o.hopDuration, o.rounds, o.hopRate, o.hopRateDuration)
		if res.hop, err = e.runHop(ctx, res); err != nil {
			return nil, fmt.Errorf("session hop scenario: %w", err)
		}
	}
	for _, p := range e.procs {
		p.stop()
	}
	// The streams need every descriptor this process can have.
	http.DefaultClient.CloseIdleConnections()
	if o.only != "" {
		res.startups = e.startups
		res.finished = time.Now().UTC()
		return res, nil
	}

	// Streams, each proxy fresh and alone.
	for _, kind := range []string{kindBare, kindRedis, kindO2P} {
		logf("streams: holding up to %d through %s", o.streams, kind)
		s, err := e.runStreams(ctx, kind)
		if err != nil {
			return nil, fmt.Errorf("streams through %s: %w", kind, err)
		}
		logf("%s: held %d (opened in %v), idle RSS %s, %s per stream, delay p99 %v, fewest events %d/%d",
			kind, s.held, s.openTime.Round(time.Millisecond), mib(s.idleRSS), kib(s.perStream()), s.delayP99, s.minEvents, s.events)
		res.streams = append(res.streams, s)
	}

	// Admission.
	logf("admission: %d dry-run pod creations of each kind through envtest", o.admissions)
	if res.admission, err = e.runAdmission(ctx); err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	res.startups = e.startups

	if res.profiles != "" && o.goProfiles && !o.smoke && o.out != "-" {
		logf("profiles: test/e2e BenchmarkCookieSessionRedis with -cpuprofile and -memprofile (the sidecar serves no pprof)")
		dir := filepath.Join(filepath.Dir(res.abs(o.out)), "profiles")
		if res.goProfiles, err = benchProfiles(ctx, root, dir, o.duration); err != nil {
			return nil, fmt.Errorf("profiles: %w", err)
		}
	}
	res.finished = time.Now().UTC()
	return res, nil
}

// targets obtains every credential and lists the throughput and latency
// targets, checking that each answers the upstream's 200.
func (e *env) targets(ctx context.Context) ([]target, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p := e.procs
	redisCookie, err := sessionCookie(ctx, p[kindRedis].url, e.idp)
	if err != nil {
		return nil, fmt.Errorf("browser login (Redis): %w", err)
	}
	memCookie, err := sessionCookie(ctx, p[kindMemory].url, e.idp)
	if err != nil {
		return nil, fmt.Errorf("browser login (memory): %w", err)
	}
	facade, err := facadeToken(ctx, p[kindRedis].url, e.idp)
	if err != nil {
		return nil, fmt.Errorf("MCP OAuth flow through the façade: %w", err)
	}
	external, err := providerToken(ctx, e.ext)
	if err != nil {
		return nil, fmt.Errorf("provider token for external mode: %w", err)
	}
	o2pCookie, err := sessionCookie(ctx, p[kindO2P].url, e.idp)
	if err != nil {
		return nil, fmt.Errorf("browser login (oauth2-proxy): %w", err)
	}
	ts := []target{
		{name: "direct upstream", url: e.upstream + "/data"},
		{name: "bare ReverseProxy", kind: kindBare, url: p[kindBare].url + "/data"},
		{name: "cookie, Redis", kind: kindRedis, url: p[kindRedis].url + "/data", headers: []string{"Cookie: " + redisCookie}},
		{name: "cookie, memory", kind: kindMemory, url: p[kindMemory].url + "/data", headers: []string{"Cookie: " + memCookie}},
		{name: "bearer JWT, façade", kind: kindRedis, url: p[kindRedis].url + "/data", headers: []string{"Authorization: Bearer " + facade}},
		{name: "bearer JWT, external IdP", kind: kindExternal, url: p[kindExternal].url + "/data", headers: []string{"Authorization: Bearer " + external}},
		{name: "oauth2-proxy, cookie, Redis", kind: kindO2P, url: p[kindO2P].url + "/data", headers: []string{"Cookie: " + o2pCookie}},
	}
	for _, t := range ts {
		if err := probe(ctx, t); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	return ts, nil
}

// Indexes into targets() for the report.
const (
	tDirect = iota
	tBare
	tCookieRedis
	tCookieMemory
	tBearerFacade
	tBearerExternal
	tO2P
)

func (e *env) load(ctx context.Context, t target, d time.Duration) (loadResult, error) {
	if e.o.loader == "go" {
		return runGoLoop(ctx, e.o, t, d)
	}
	return runWrk(ctx, e.o, t, d)
}

// closedLoop loads every target for d per round, o.rounds rounds
// interleaved (after a warm-up of each in the first), and returns each
// target's runs.
func (e *env) closedLoop(ctx context.Context, res *results, targets []target, d time.Duration) ([][]loadResult, error) {
	o := e.o
	load := make([][]loadResult, len(targets))
	for round := range o.rounds {
		for i, t := range targets {
			if round == 0 && o.warmup > 0 {
				r, err := e.load(ctx, t, o.warmup)
				if err != nil {
					return nil, fmt.Errorf("warm-up of %s: %w", t.name, err)
				}
				if err := e.afterRun(t, int64(r.requests)); err != nil {
					return nil, fmt.Errorf("warm-up of %s: %w", t.name, err)
				}
			}
			stopProfile := e.startProfile(ctx, res, t, round)
			r, err := e.load(ctx, t, d)
			stopProfile()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			if err := e.afterRun(t, int64(r.requests)); err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			e.logf("round %d %-34s %9.0f req/s", round+1, t.name, r.rps)
			load[i] = append(load[i], r)
		}
	}
	return load, nil
}

// openLoop loads every target at rate for total, split into o.rateRounds
// rounds interleaved like the closed loop's, so a burst of other work on
// the machine lands on every target alike; each target's result takes the
// median of the rounds' percentiles, so one stall on this shared machine
// (which queues hundreds of requests at this rate) moves one round only.
func (e *env) openLoop(targets []target, rate int, total time.Duration) ([]latencyResult, error) {
	o := e.o
	clients := make([]*http.Client, len(targets))
	pooled := make([]*vegeta.Metrics, len(targets))
	rounds := make([][]latencyResult, len(targets))
	for i := range targets {
		clients[i], pooled[i] = openLoopClient(), &vegeta.Metrics{}
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	slice := max(time.Second, total/time.Duration(o.rateRounds))
	for range o.rateRounds {
		for i, t := range targets {
			var m vegeta.Metrics
			runVegeta(clients[i], []*vegeta.Metrics{&m, pooled[i]}, t, rate, slice)
			l := latencyOf(&m)
			if err := e.afterRun(t, int64(float64(l.requests)*l.success+0.5)); err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			rounds[i] = append(rounds[i], l)
		}
	}
	out := make([]latencyResult, 0, len(targets))
	for i, t := range targets {
		l := medianLatency(rounds[i])
		all := latencyOf(pooled[i])
		l.pooledP99, l.requests, l.success, l.errs = all.p99, all.requests, all.success, all.errs
		e.logf("%-34s p50 %v p99 %v p99.9 %v (median of rounds) p99 %v (pooled) success %.4f", t.name, l.p50, l.p99, l.p999, l.pooledP99, l.success)
		out = append(out, l)
	}
	return out, nil
}

// profileNote checks whether the sidecar's admin listener serves pprof;
// when it does, CPU profiles are taken during the first measured round of
// each mcp-oidc-proxy target.
func (e *env) profileNote(ctx context.Context) string {
	var p *proc
	for _, kind := range []string{kindRedis, kindPolicyNone, kindHopA} { // the first -only launched
		if p = e.procs[kind]; p != nil {
			break
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.admin+"/debug/pprof/", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Sprintf("the admin listener did not answer /debug/pprof/: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("the sidecar serves no pprof endpoint (GET %s/debug/pprof/ answered %d), so there is no profile from this run", "<admin>", resp.StatusCode)
	}
	return ""
}

// startProfile fetches a CPU profile from the sidecar's admin listener for
// the duration of one measured run (first round, mcp-oidc-proxy targets
// only, and only when it serves pprof) and returns what waits for it.
func (e *env) startProfile(ctx context.Context, res *results, t target, round int) func() {
	if res.profiles != "" || round != 0 || !strings.HasPrefix(t.kind, "mcp-") || e.o.out == "-" || e.o.smoke {
		return func() {}
	}
	secs := max(1, int(e.o.duration/time.Second)-1)
	dir := filepath.Join(filepath.Dir(res.abs(e.o.out)), "profiles")
	path := filepath.Join(dir, slug(t.name)+".cpu.pprof")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return
		}
		url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", e.procs[t.kind].admin, secs)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return
		}
		resp, err := (&http.Client{Timeout: time.Duration(secs+30) * time.Second}).Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return
		}
		f, err := os.Create(path)
		if err != nil {
			return
		}
		if _, err := io.Copy(f, resp.Body); err == nil {
			res.profileFiles = append(res.profileFiles, profileFile{target: t.name, path: path})
		}
		_ = f.Close()
	}()
	return func() { <-done }
}

func slug(name string) string {
	s := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(name))
	for strings.Contains(s, "--") {
		s = strings.ReplaceAll(s, "--", "-")
	}
	return strings.Trim(s, "-")
}

// raiseNofile raises RLIMIT_NOFILE (soft and, as root, hard) to want, or
// as far as allowed, for this process and the children it starts.
func raiseNofile(want uint64) (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if l.Cur >= want {
		return l.Cur, nil
	}
	n := syscall.Rlimit{Cur: want, Max: max(want, l.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n); err != nil {
		// Not root: as far as the hard limit goes.
		n = syscall.Rlimit{Cur: l.Max, Max: l.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return n.Cur, nil
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// commandLine runs a command for a one-line fact about the machine; the
// error is the fact when it fails.
func commandLine(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	// wrk -v prints its version and exits 1.
	if err != nil && line == "" {
		return fmt.Sprintf("(%s: %v)", name, err)
	}
	return line
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

// quantile of sorted d (nearest rank).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}
