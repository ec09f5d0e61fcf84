package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpsession"
)

// results is everything one run measured.
type results struct {
	o            options
	root         string
	nofile       uint64
	started      time.Time
	finished     time.Time
	machine      []string
	binarySize   int64
	o2pVersion   string
	targets      []target
	load         [][]loadResult
	latency      []latencyResult
	policy       *policyResult
	hop          *hopResult
	streams      []streamResult
	admission    admissionResult
	startups     []startup
	profiles     string // why there are no profiles; "" when there are
	profileFiles []profileFile
	goProfiles   []goProfile
}

type profileFile struct{ target, path string }

// machineInfo lists the facts that make the numbers comparable.
func machineInfo(ctx context.Context, root string, o options) []string {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(string(b))
	}
	git := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return fmt.Sprintf("(git %s: %v)", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	commit := git("rev-parse", "HEAD")
	if st := git("status", "--porcelain", "--untracked-files=no"); st != "" {
		commit += " (with uncommitted changes)"
	}
	info := []string{
		fmt.Sprintf("commit: `%s` (%s)", commit, git("log", "-1", "--format=%s")),
		fmt.Sprintf("CPUs (nproc): %d; CPU: %s", runtime.NumCPU(), cpu),
		fmt.Sprintf("kernel: %s", read("/proc/sys/kernel/osrelease")),
		fmt.Sprintf("Go: %s (builds the sidecar and the bare proxy; the harness itself %s)", commandLine(ctx, "go", "env", "GOVERSION"), runtime.Version()),
		fmt.Sprintf("load average at the start: %s", read("/proc/loadavg")),
	}
	if o.loader == "wrk" {
		info = append(info, "wrk: "+commandLine(ctx, o.wrk, "-v"))
	}
	info = append(info, "redis-server: "+commandLine(ctx, o.redisServer, "--version"))
	return info
}

func (r *results) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	o := r.o
	p("# mcp-oidc-proxy benchmark results\n\n")
	if o.smoke {
		p("**Smoke run (-smoke): tiny counts that check the harness; the numbers mean nothing.**\n\n")
	}
	p("Written by `make bench` (`go run ./hack/bench`), %s to %s UTC.\n\n",
		r.started.Format("2006-01-02 15:04:05"), r.finished.Format("15:04:05"))
	for _, m := range r.machine {
		p("- %s\n", m)
	}
	if r.o2pVersion != "" {
		p("- oauth2-proxy: %s\n", r.o2pVersion)
	}
	p("- RLIMIT_NOFILE for the harness and every proxy: %d\n", r.nofile)
	p("\nThe machine is shared: other work (compiles, tests) runs at the same time on its %d cores, and the load\n", runtime.NumCPU())
	p("generator, the upstream, Redis, the OpenID providers and the proxy under test share them too. Absolute\n")
	p("numbers move from run to run; the ratios within one run are what the targets are about. Every proxy is\n")
	p("a separate process started from its binary with flags; all traffic is on 127.0.0.1.\n\n")
	if o.only != "" {
		p("**Only the %s scenario (-only %s).**\n\n", o.only, o.only)
		r.policyMarkdown(&b)
		r.hopMarkdown(&b)
		r.startupMarkdown(&b)
		r.profilesMarkdown(&b)
		return b.String()
	}

	bare := median(r.load[tBare])
	o2p := median(r.load[tO2P])
	var verdicts []string
	verdict := func(name string, met bool, got, goal, miss string) {
		v := "met"
		if !met {
			v = "**missed**"
			if miss != "" {
				v += " (" + miss + ")"
			}
		}
		verdicts = append(verdicts, fmt.Sprintf("| %s | %s | %s | %s |", name, goal, got, v))
	}

	// Throughput.
	loader := o.closedLoop("")
	p("## Throughput (closed loop)\n\n")
	p("%s, GET /data answering `%s`; %v per target and round, %d round(s) interleaved, median shown", loader, dataBody, o.duration, o.rounds)
	if o.warmup > 0 {
		p(", after a %v warm-up", o.warmup)
	}
	p(". Latencies are the closed loop's (they grow with queueing; see the open-loop table for added latency).\n\n")
	p("| path | req/s | p50 | p99 | × bare | rounds (req/s) |\n|---|---:|---:|---:|---:|---|\n")
	for i, t := range r.targets {
		m := median(r.load[i])
		var rounds []string
		for _, x := range r.load[i] {
			rounds = append(rounds, fmt.Sprintf("%.0f", x.rps))
		}
		p("| %s | %.0f | %s | %s | %.2f | %s |\n", t.name, m.rps, fmtDur(m.p50), fmtDur(m.p99), m.rps/bare.rps, strings.Join(rounds, ", "))
	}
	cr := median(r.load[tCookieRedis])
	p("\nmcp-oidc-proxy with a Redis cookie session against oauth2-proxy with the same Redis: **%.2f ×**.\n\n", cr.rps/o2p.rps)
	ratioVerdict := func(name string, idx int, goal float64) {
		got := median(r.load[idx]).rps / bare.rps
		verdict(name, got >= goal, fmt.Sprintf("%.2f × bare (%.0f of %.0f req/s)", got, median(r.load[idx]).rps, bare.rps),
			fmt.Sprintf("≥ %.1f × bare", goal), fmt.Sprintf("%.2f short, %.0f%% below", goal-got, 100*(goal-got)/goal))
	}
	ratioVerdict("throughput, cookie with Redis", tCookieRedis, 0.8)
	{
		got := cr.rps / o2p.rps
		verdict("throughput, cookie with Redis against oauth2-proxy", got >= 2.5, fmt.Sprintf("%.2f × oauth2-proxy", got),
			"≥ 2.5 × oauth2-proxy", fmt.Sprintf("%.2f short", 2.5-got))
	}
	ratioVerdict("throughput, bearer JWT (façade)", tBearerFacade, 0.9)
	ratioVerdict("throughput, bearer JWT (external IdP)", tBearerExternal, 0.9)

	// Latency.
	p("## Latency at a fixed rate (open loop)\n\n")
	p("vegeta (github.com/tsenart/vegeta/v12) at %d req/s for %v per target in %d interleaved round(s), keep-alive; \"added\" is over the bare ReverseProxy in this run.\n\n", o.rate, o.rateDuration, o.rateRounds)
	p("Each percentile is the median of the rounds' (one stall of this shared machine queues hundreds of requests at this\n")
	p("rate and would otherwise decide the p99 of whichever target it lands on); the pooled p99 over all rounds is shown too.\n\n")
	p("| path | p50 | p99 | p99.9 | p50 added | p99 added | p99.9 added | p99 pooled | p99 pooled added | requests | success |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	bl := r.latency[tBare]
	for i, t := range r.targets {
		l := r.latency[i]
		add := func(a, b time.Duration) string {
			if i == tDirect || i == tBare {
				return ""
			}
			return fmtSigned(a - b)
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %.2f%% |\n", t.name, fmtDur(l.p50), fmtDur(l.p99), fmtDur(l.p999),
			add(l.p50, bl.p50), add(l.p99, bl.p99), add(l.p999, bl.p999), fmtDur(l.pooledP99), add(l.pooledP99, bl.pooledP99), l.requests, 100*l.success)
	}
	for i, t := range r.targets {
		if errs := r.latency[i].errs; len(errs) > 0 {
			p("\n%s: errors: %s\n", t.name, strings.Join(errs[:min(3, len(errs))], "; "))
		}
	}
	p("\n")
	for _, i := range []int{tCookieRedis, tCookieMemory, tBearerFacade, tBearerExternal} {
		added := r.latency[i].p99 - bl.p99
		verdict("p99 added at "+fmt.Sprint(o.rate)+" req/s, "+r.targets[i].name, added < time.Millisecond && r.latency[i].success == 1,
			fmtSigned(added)+" (median of rounds)", "< 1 ms", fmt.Sprintf("%s over", fmtDur(added-time.Millisecond)))
	}

	r.policyMarkdown(&b)
	r.hopMarkdown(&b)

	// Streams.
	p("## Held SSE streams\n\n")
	p("Up to %d concurrent GET /sse through a fresh process of each proxy (opened 64 at a time, within %v); then %d events,\n", o.streams, o.streamOpenTimeout, o.streamEvents)
	p("one every %v, to every stream. RSS is VmRSS of the proxy process from /proc/<pid>/status: idle right after\n", o.streamInterval)
	p("/readyz (or its first 200), then after login and one request (the base), then with every stream held after the events;\n")
	p("per stream = (held − base) / streams. Event delay: from the upstream's write to the client's read of each event.\n\n")
	p("| proxy | streams held | opened in | idle RSS | base RSS | RSS held | per stream | per stream × bare | delay p50 | delay p99 | fewest events a stream got |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var barePer float64
	for _, s := range r.streams {
		if s.kind == kindBare {
			barePer = s.perStream()
		}
	}
	for _, s := range r.streams {
		ratio := ""
		if barePer > 0 {
			ratio = fmt.Sprintf("%.2f", s.perStream()/barePer)
		}
		p("| %s | %d of %d | %v | %s | %s | %s | %s | %s | %s | %s | %d of %d |\n", s.kind, s.held, s.want, s.openTime.Round(time.Millisecond),
			mib(s.idleRSS), mib(s.loggedRSS), mib(s.heldRSS), kib(s.perStream()), ratio, fmtDur(s.delayP50), fmtDur(s.delayP99), s.minEvents, s.events)
	}
	if o.streamsCap != "" {
		p("\nFewer than asked: %s.\n", o.streamsCap)
	}
	for _, s := range r.streams {
		if s.openErr != "" {
			p("\n%s: opening stopped at the first failure: %s\n", s.kind, s.openErr)
		}
	}
	p("\n")
	for _, s := range r.streams {
		if s.kind != kindRedis {
			continue
		}
		verdict("streams held by mcp-oidc-proxy", s.held >= 10000 && s.minEvents == s.events, fmt.Sprintf("%d (every stream got %d of %d events)", s.held, s.minEvents, s.events),
			"10,000, every event delivered", streamsMiss(s, o))
		verdict("memory per held stream", s.perStream() <= 32<<10, kib(s.perStream()), "≤ 32 KiB",
			fmt.Sprintf("%s over", kib(s.perStream()-32<<10)))
		verdict("idle RSS", s.idleRSS <= 30<<20, mib(s.idleRSS), "≤ 30 MiB", fmt.Sprintf("%s over", mib(s.idleRSS-30<<20)))
	}

	// Admission.
	a := r.admission
	p("## Admission\n\n")
	p("kube-apiserver and etcd from envtest (KUBEBUILDER_ASSETS); the shipped MutatingWebhookConfiguration\n")
	p("(config/webhook) with its clientConfig pointed at the injector on https://127.0.0.1, the injector run\n")
	p("in-process through the same app.Run as the binary (self-managed certificate). Timed: %d sequential dry-run pod\n", a.n)
	p("creations through the API server of each kind, interleaved, after 5 of each to warm up. An annotated pod goes\n")
	p("through the webhook over HTTPS and comes back with the sidecar; a plain pod is kept from the webhook by its\n")
	p("match conditions, so the difference is what admission through the injector adds.\n\n")
	p("Then the webhook alone: %d AdmissionReviews for an annotated pod POSTed straight to it over HTTPS (trusting the\n", a.n)
	p("caBundle it installed, one kept-alive connection, as the API server's client), each checked to come back allowed with a patch.\n\n")
	p("| request | p50 | p99 |\n|---|---:|---:|\n")
	p("| API server, annotated pod (through the webhook) | %s | %s |\n| API server, plain pod (no webhook) | %s | %s |\n| difference (what the webhook adds) | %s | %s |\n| AdmissionReview straight to the webhook | %s | %s |\n\n",
		fmtDur(a.annotatedP50), fmtDur(a.annotatedP99), fmtDur(a.plainP50), fmtDur(a.plainP99),
		fmtSigned(a.annotatedP50-a.plainP50), fmtSigned(a.annotatedP99-a.plainP99), fmtDur(a.directP50), fmtDur(a.directP99))
	verdict("admission review p99 (the webhook over HTTPS)", a.directP99 < 5*time.Millisecond, fmtDur(a.directP99), "< 5 ms",
		fmt.Sprintf("%s over", fmtDur(a.directP99-5*time.Millisecond)))
	verdict("admission p99 through the API server (annotated pod, dry run)", a.annotatedP99 < 5*time.Millisecond, fmtDur(a.annotatedP99), "< 5 ms",
		fmt.Sprintf("%s over; a plain pod's p99 is %s, the webhook adds %s", fmtDur(a.annotatedP99-5*time.Millisecond), fmtDur(a.plainP99), fmtSigned(a.annotatedP99-a.plainP99)))

	r.startupMarkdown(&b)

	// Binary.
	p("## Sidecar binary\n\n")
	p("cmd/mcp-oidc-proxy built as `make build` does (CGO_ENABLED=0, -trimpath, -tags %s, -ldflags '-s -w'): %d bytes (%.1f MB, %s).\n\n",
		sidecarTags, r.binarySize, float64(r.binarySize)/1e6, mib(r.binarySize))
	verdict("sidecar binary", r.binarySize <= 30e6, fmt.Sprintf("%.1f MB", float64(r.binarySize)/1e6), "≤ 30 MB",
		fmt.Sprintf("%.1f MB over", float64(r.binarySize-30e6)/1e6))

	// Targets.
	p("## Targets (DESIGN.md \"Targets\", issue 9)\n\n| target | goal | this run | verdict |\n|---|---|---|---|\n")
	for _, v := range verdicts {
		p("%s\n", v)
	}
	r.profilesMarkdown(&b)
	return b.String()
}

// profilesMarkdown lists the CPU profiles taken during the run, or says
// why there are none.
func (r *results) profilesMarkdown(b *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	o := r.o
	p("\n## Profiles\n\n")
	if r.profiles != "" {
		p("%s.\n", r.profiles)
		if len(r.goProfiles) > 0 {
			p("\nInstead, the same request path in-process: test/e2e's BenchmarkCookieSessionRedis (proxy with a Redis cookie\n")
			p("session, GETs from a Go client in the same process) with -cpuprofile and -memprofile, for %v. The tables keep\n", o.duration)
			p("only samples whose stack passes through this module's pkg/ (so not the client). Open the files with `go tool pprof`.\n")
			for _, gp := range r.goProfiles {
				p("\n%s: `%s`\n\n```\n%s\n```\n", gp.kind, strings.TrimPrefix(gp.path, r.root+"/"), gp.top)
			}
		}
	} else if len(r.profileFiles) == 0 {
		p("The sidecar serves pprof, but no profile was taken in this run.\n")
	} else {
		slices.SortFunc(r.profileFiles, func(a, b profileFile) int { return strings.Compare(a.path, b.path) })
		p("CPU profiles of the sidecar from its admin listener during the first measured round (`go tool pprof -top <file>`):\n\n")
		for _, f := range r.profileFiles {
			p("- %s: `%s`\n", f.target, strings.TrimPrefix(f.path, r.root+"/"))
		}
	}
}

func (r *results) startupMarkdown(b *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("## Start-up\n\n")
	p("From exec to the first 200 of the readiness URL (mcp-oidc-proxy: admin /readyz, which waits for OIDC discovery\n")
	p("and, with Redis, the store; oauth2-proxy: /ready; the bare proxy: its first proxied 200), polled every 2 ms.\n\n")
	p("| process | start-up |\n|---|---:|\n")
	for _, s := range r.startups {
		p("| %s | %s |\n", s.name, fmtDur(s.d))
	}
	p("\n")
}

// abs resolves a path relative to the repository root.
func (r *results) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.root, p)
}

// median returns the run with the median throughput (the lower middle one
// for an even count), keeping its latencies with it.
func median(rs []loadResult) loadResult {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b loadResult) int {
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

func fmtDur(d time.Duration) string {
	neg := ""
	if d < 0 {
		neg, d = "−", -d
	}
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%s%.2f s", neg, d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%s%.2f ms", neg, float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%s%.0f µs", neg, float64(d)/float64(time.Microsecond))
	}
}

func fmtSigned(d time.Duration) string {
	if d >= 0 {
		return "+" + fmtDur(d)
	}
	return fmtDur(d)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// streamsMiss says by how much, and why when the machine was the limit.
func streamsMiss(s streamResult, o options) string {
	switch {
	case s.held < 10000 && o.streamsCap != "" && s.held == o.streams:
		return fmt.Sprintf("%d short, every stream asked for was held: this machine's descriptor limit stopped at %d, see above", 10000-s.held, o.streams)
	case s.held < 10000:
		return fmt.Sprintf("%d short", 10000-s.held)
	default:
		return fmt.Sprintf("%d streams missed events", s.events-s.minEvents)
	}
}

// policyMarkdown is the policy scenario's section: what MCP requests cost
// through a sidecar with a policy, and with its audit trail, next to the
// same sidecar without one.
func (r *results) policyMarkdown(b *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	pr, o := r.policy, r.o
	if pr == nil {
		return
	}
	paths := policyPaths()
	call, list := pr.targets[pr.index("tools/call", ppDirect)], pr.targets[pr.index("tools/list", ppDirect)]
	p("## Policy\n\n")
	p("MCP requests through the sidecar without a policy, with one, and with one and the audit trail. The shared upstream also\n")
	p("serves the example MCP server (test/mcpserver, official Go SDK) at `%s`, stateless with JSON responses\n", mcpStatelessPath)
	p("(`StreamableHTTPOptions{Stateless: true, JSONResponse: true}`), so every POST is one request and one answer. The\n")
	p("requests are the ones the SDK client (its default protocol version, 2026-07-28) sent in this run, captured on the wire:\n")
	p("a `tools/call` of `echo` with `{\"text\":%q}` (%d bytes) and a `tools/list` (%d bytes), with the headers the client set\n", echoText, len(call.body), len(list.body))
	p("(%s; not the transport's Accept-Encoding and User-Agent) and, through the sidecars, the session cookie.\n\n", strings.Join(pr.headers, ", "))
	p("The three sidecars are separate processes with a Redis cookie session like the \"cookie, Redis\" target's and\n")
	p("`--mcp-path %s`, differing only in: nothing else (no policy: bodies are never parsed); `--policy-rules` (below)\n", mcpStatelessPath)
	p("`--policy-default deny` (every body on mcp_path is parsed, `tools/call` decided by the rules, `tools/list` filtered);\n")
	p("the same and `--audit-enabled` (one JSON line per JSON-RPC request on the process's log output).\n\n")
	p("```yaml\npolicy:\n  default: deny\n  rules:\n")
	for _, rule := range benchRules() {
		p("    - name: %s\n      effect: %s\n      when: '%s'\n", rule.Name, rule.Effect, strings.ReplaceAll(rule.When, "'", "''"))
	}
	p("```\n\n")
	p("The demo user (verified demo@example.com, groups mcp-users and admins) is allowed `echo` by the last rule, after all four\n")
	p("are evaluated, and tools/list shows them %d of the server's %d tools: %s (of %s).\n\n",
		len(pr.visible), len(pr.allTools), strings.Join(pr.visible, ", "), strings.Join(pr.allTools, ", "))
	p("Audit lines (level info) are written whatever `--log-level` is (pkg/audit.OwnLevel), so all three sidecars run at the\n")
	p("bench's `--log-level %s`, at which the sidecar logs nothing else per request. The audited sidecar's output goes straight\n", o.logLevel)
	p("to a file, `%s` (a pipe would need the harness to drain it on the same cores). After each run its audit\n", strings.TrimPrefix(filepath.Join(o.work, "policy-audit.log"), r.root+"/"))
	p("lines are counted, the run fails unless there is one for every answered request, and the file is emptied. In all:\n")
	p("%d audit lines, %.0f bytes each on average, for %d answered requests.", pr.audit.lines, float64(pr.audit.bytes)/float64(max(1, pr.audit.lines)), pr.audit.answered)
	if pr.audit.sample != "" {
		p(" One of them:\n\n```json\n%s\n```\n", pr.audit.sample)
	}
	p("\nEvery target was probed before its load: HTTP 200, application/json, a JSON-RPC result for the request's id, the\n")
	p("echoed text, and exactly the tools expected (all of them without the policy). During the load an answer that is not a\n")
	p("JSON-RPC success (a denial, a tool error) fails the run (wrk: a Lua `response()` check; the Go loop and vegeta: the same\n")
	p("check), so none counts as throughput.\n\n")

	loader := o.closedLoop("")
	p("Closed loop: %s, %v per target and round, %d round(s) interleaved over all ten targets, median shown", loader, o.policyDuration, o.rounds)
	if o.warmup > 0 {
		p(", after a %v warm-up", o.warmup)
	}
	p(". \"× no policy\" is the\nthroughput over the sidecar without a policy in this run.\n\n")
	p("| path | tools/call req/s | × no policy | p50 | p99 | tools/list req/s | × no policy | p50 | p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	callNone, listNone := median(pr.load[pr.index("tools/call", ppNone)]), median(pr.load[pr.index("tools/list", ppNone)])
	for i, path := range paths {
		c, l := median(pr.load[pr.index("tools/call", i)]), median(pr.load[pr.index("tools/list", i)])
		p("| %s | %.0f | %.2f | %s | %s | %.0f | %.2f | %s | %s |\n", path.label, c.rps, c.rps/callNone.rps, fmtDur(c.p50), fmtDur(c.p99),
			l.rps, l.rps/listNone.rps, fmtDur(l.p50), fmtDur(l.p99))
	}
	p("\nThe direct upstream row is the SDK server's own rate: it does most of the work of every request (it decodes the request and\n")
	p("encodes the answer, the tools' JSON schemas included, in a fresh stateless session), and it shares the two cores with the\n")
	p("proxy under test. So the proxies' req/s are bounded by it and differ by what the proxy's own CPU takes from it; the open\n")
	p("loop's added latency shows the per-request cost more directly.\n")
	p("\nOpen loop: vegeta at %d req/s (well under what the SDK server upstream answers) for %v per target in %d interleaved\n", o.policyRate, o.policyRateDuration, o.rateRounds)
	p("round(s), keep-alive, percentiles the median of the rounds'; \"added\" is over the sidecar without a policy in this run.\n\n")
	p("| path | tools/call p50 | p99 | p50 added | p99 added | tools/list p50 | p99 | p50 added | p99 added | requests (call, list) | success (call, list) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	lcNone, llNone := pr.latency[pr.index("tools/call", ppNone)], pr.latency[pr.index("tools/list", ppNone)]
	for i, path := range paths {
		c, l := pr.latency[pr.index("tools/call", i)], pr.latency[pr.index("tools/list", i)]
		add := func(a, b time.Duration) string {
			if i < ppPolicy {
				return ""
			}
			return fmtSigned(a - b)
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d, %d | %.2f%%, %.2f%% |\n", path.label, fmtDur(c.p50), fmtDur(c.p99), add(c.p50, lcNone.p50), add(c.p99, lcNone.p99),
			fmtDur(l.p50), fmtDur(l.p99), add(l.p50, llNone.p50), add(l.p99, llNone.p99), c.requests, l.requests, 100*c.success, 100*l.success)
	}
	for i, t := range pr.targets {
		if errs := pr.latency[i].errs; len(errs) > 0 {
			p("\n%s: errors: %s\n", t.name, strings.Join(errs[:min(3, len(errs))], "; "))
		}
	}
	p("\nOverhead next to the sidecar without a policy:\n\n")
	p("| request | policy / no policy (req/s) | policy + audit / no policy (req/s) | p50 added at %d req/s, policy | p50 added, policy + audit | p99 added, policy | p99 added, policy + audit |\n|---|---:|---:|---:|---:|---:|---:|\n", o.policyRate)
	for _, m := range []string{"tools/call", "tools/list"} {
		none, lNone := median(pr.load[pr.index(m, ppNone)]), pr.latency[pr.index(m, ppNone)]
		pol, aud := median(pr.load[pr.index(m, ppPolicy)]), median(pr.load[pr.index(m, ppAudit)])
		lPol, lAud := pr.latency[pr.index(m, ppPolicy)], pr.latency[pr.index(m, ppAudit)]
		p("| %s | **%.2f ×** | **%.2f ×** | %s | %s | %s | %s |\n", m, pol.rps/none.rps, aud.rps/none.rps,
			fmtSigned(lPol.p50-lNone.p50), fmtSigned(lAud.p50-lNone.p50), fmtSigned(lPol.p99-lNone.p99), fmtSigned(lAud.p99-lNone.p99))
	}
	p("\n")
}

// hopMarkdown is the session hop scenario's section: what a request of a
// session costs when it lands on a replica that does not own the session
// and is forwarded to the one that does.
func (r *results) hopMarkdown(b *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	hr, o := r.hop, r.o
	if hr == nil {
		return
	}
	call := hr.targets[hpOwner]
	p("## Session hop\n\n")
	p("What the one hop of issue 11 adds: a request of an MCP session (protocol %s, which keeps the session in the MCP\n", hopProtocolVersion)
	p("server's memory) that lands on a replica not owning the session is forwarded to the owner's serving port with the\n")
	p("caller's own cookie, and the owner authenticates it again. The shared upstream serves the example MCP server\n")
	p("(test/mcpserver, official Go SDK) with sessions at `%s` (`StreamableHTTPOptions{JSONResponse: true}`, stateful),\n", mcpStatefulPath)
	p("so every POST is one request and one answer. Two sidecar processes, A and B, are two replicas of one deployment: a\n")
	p("Redis cookie session like the \"cookie, Redis\" target's, the same Redis and cookie secret, `--mcp-path %s`, A's\n", mcpStatefulPath)
	p("external URL, and each `--mcp-session-advertise-address` its own listen address.\n\n")
	p("The official Go SDK client pinned to %s (`mcp.ClientSessionOptions{ProtocolVersion: %q}`) was run against\n", hopProtocolVersion, hopProtocolVersion)
	p("the same server and its requests captured on the wire: the initialize (%d bytes), notifications/initialized and a\n", hr.initLen)
	p("`tools/call` of `echo` with `{\"text\":%q}` (%d bytes, with the headers the client set: %s). The handshake was sent\n", echoText, len(call.body), strings.Join(hr.headers, ", "))
	p("once through A after a browser login there, so A's MCP server holds the session, and once to the upstream itself\n")
	p("for the direct and bare-proxy rows. The id A answered opens with the cookie secret's key and names A (`%s`) as\n", hr.owner)
	p("its owner. Every target then sends that tools/call with the session's id (A's sealed id and the cookie for A and\n")
	p("B, the upstream's own id for the other two), each request with a JSON-RPC id of its own (the SDK server refuses an\n")
	p("id already in flight in a session). Each target was probed first (HTTP 200, application/json, the echo's result for\n")
	p("its id); during the load any other answer, a 404 \"session not found\" included, fails the run.\n\n")

	loader := o.closedLoop(" (a Lua `request()` numbering the ids)")
	p("Closed loop: %s, %v per target and round, %d round(s) interleaved, median shown", loader, o.hopDuration, o.rounds)
	if o.warmup > 0 {
		p(", after a %v warm-up", o.warmup)
	}
	p(". Open loop: vegeta at %d req/s for %v per target in %d interleaved round(s), keep-alive, percentiles the median of\n", o.hopRate, o.hopRateDuration, o.rateRounds)
	p("the rounds'.\n\n")
	p("| path | req/s | p50 | p99 | open loop p50 | p99 | p99.9 | requests | success |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, path := range hopPaths() {
		m, l := median(hr.load[i]), hr.latency[i]
		p("| %s | %.0f | %s | %s | %s | %s | %s | %d | %.2f%% |\n", path.label, m.rps, fmtDur(m.p50), fmtDur(m.p99),
			fmtDur(l.p50), fmtDur(l.p99), fmtDur(l.p999), l.requests, 100*l.success)
	}
	for i, t := range hr.targets {
		if errs := hr.latency[i].errs; len(errs) > 0 {
			p("\n%s: errors: %s\n", t.name, strings.Join(errs[:min(3, len(errs))], "; "))
		}
	}
	own, hop := median(hr.load[hpOwner]), median(hr.load[hpHop])
	lOwn, lHop := hr.latency[hpOwner], hr.latency[hpHop]
	p("\nWhat the hop adds (B, via another replica, against A, direct to the owner):\n\n")
	p("| measure | direct to the owner (A) | via another replica (B) | the hop |\n|---|---:|---:|---:|\n")
	p("| closed loop req/s | %.0f | %.0f | **%.2f ×** |\n", own.rps, hop.rps, hop.rps/own.rps)
	p("| closed loop p50 | %s | %s | %s |\n", fmtDur(own.p50), fmtDur(hop.p50), fmtSigned(hop.p50-own.p50))
	p("| closed loop p99 | %s | %s | %s |\n", fmtDur(own.p99), fmtDur(hop.p99), fmtSigned(hop.p99-own.p99))
	p("| p50 at %d req/s | %s | %s | **%s** |\n", o.hopRate, fmtDur(lOwn.p50), fmtDur(lHop.p50), fmtSigned(lHop.p50-lOwn.p50))
	p("| p99 at %d req/s | %s | %s | **%s** |\n", o.hopRate, fmtDur(lOwn.p99), fmtDur(lHop.p99), fmtSigned(lHop.p99-lOwn.p99))
	p("| p99.9 at %d req/s | %s | %s | %s |\n", o.hopRate, fmtDur(lOwn.p999), fmtDur(lHop.p999), fmtSigned(lHop.p999-lOwn.p999))
	var rounds []string
	var ratios []float64
	for i := range min(len(hr.load[hpOwner]), len(hr.load[hpHop])) {
		a, b := hr.load[hpOwner][i].rps, hr.load[hpHop][i].rps
		rounds = append(rounds, fmt.Sprintf("%.0f → %.0f (%.2f ×)", a, b, b/a))
		ratios = append(ratios, b/a)
	}
	slices.Sort(ratios)
	p("\nClosed-loop rounds, A → B (B right after A in each round, so less apart in time than the medians): %s;\n", strings.Join(rounds, "; "))
	p("median of the per-round ratios: **%.2f ×**.\n", ratios[(len(ratios)-1)/2])
	p("\nA hop is a second sidecar on the request path (B authenticates and opens the id, then A authenticates again and\n")
	p("serves it), so on these shared cores it costs about one more sidecar's CPU per request: the closed-loop ratio is\n")
	p("bounded by that, while the open loop's added latency is the hop's own delay.\n\n")
	p("Sanity check, from both sidecars' /metrics before and after the scenario: B's `%s{result=\"%s\"}` grew by\n", hopsMetric, mcpsession.ResultForwarded)
	p("**%.0f**; B answered %d requests (the probe, every closed-loop run with its warm-up, every open-loop round), and at most\n", hr.hopsB[mcpsession.ResultForwarded], hr.answeredB)
	p("%d more were in flight when a closed-loop run stopped (the run fails unless the count lies in between, or when B\n", hr.inFlightB)
	p("forwarded nothing). The counters' growth by result: A (the owner, which must never hop): %s; B: %s.\n\n",
		fmtCounts(hr.hopsA), fmtCounts(hr.hopsB))
}

// fmtCounts lists a counter's growth by label.
func fmtCounts(c map[string]float64) string {
	if len(c) == 0 {
		return "no samples"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s +%.0f", k, c[k]))
	}
	return strings.Join(parts, ", ")
}

// closedLoop names the closed-loop load generator for the report: wrk with
// its threads and connections (and wrkNote, what its script does), or the
// Go loop.
func (o options) closedLoop(wrkNote string) string {
	if o.loader == "go" {
		return fmt.Sprintf("a Go closed loop with %d connections", o.connections)
	}
	return fmt.Sprintf("wrk -t%d -c%d%s", o.threads, o.connections, wrkNote)
}
