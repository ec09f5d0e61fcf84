package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
)

// TestSmoke runs every scenario with tiny counts (-smoke) and checks that
// each produced numbers, so `make bench` cannot rot between runs. It asserts
// nothing about how fast anything is. It needs redis-server
// (hack/ensure-test-deps.sh), KUBEBUILDER_ASSETS (hack/envtest-bins.sh; run
// by the harness when unset) and builds oauth2-proxy with
// hack/oauth2-proxy-bin.sh unless $OAUTH2_PROXY names one. The closed loop
// is the Go one, so wrk is not needed.
func TestSmoke(t *testing.T) {
	o, err := parse([]string{"-smoke", "-loader", "go", "-out", "-", "-work", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := measure(ctx, o)
	if err != nil {
		t.Fatalf("measure: %v", err)
	}

	if len(res.targets) != tO2P+1 {
		t.Fatalf("%d targets, want %d", len(res.targets), tO2P+1)
	}
	for i, tg := range res.targets {
		if len(res.load[i]) != o.rounds {
			t.Errorf("%s: %d throughput rounds, want %d", tg.name, len(res.load[i]), o.rounds)
		}
		for _, r := range res.load[i] {
			if r.rps <= 0 || r.p50 <= 0 || r.p99 < r.p50 {
				t.Errorf("%s: throughput %+v, want positive req/s and ordered latencies", tg.name, r)
			}
		}
		l := res.latency[i]
		if l.requests == 0 || l.success != 1 || l.p50 <= 0 || l.p99 < l.p50 || l.p999 < l.p99 {
			t.Errorf("%s: open loop %+v, want every request answered 200 and ordered percentiles", tg.name, l)
		}
	}
	checkPolicy(t, o, res.policy)
	checkHop(t, o, res.hop)
	kinds := map[string]bool{}
	for _, s := range res.streams {
		kinds[s.kind] = true
		if s.held != o.streams || s.openErr != "" {
			t.Errorf("%s: held %d of %d streams (%s)", s.kind, s.held, o.streams, s.openErr)
		}
		if s.minEvents != s.events {
			t.Errorf("%s: a stream got %d of %d events", s.kind, s.minEvents, s.events)
		}
		if s.idleRSS <= 0 || s.loggedRSS <= 0 || s.heldRSS <= 0 || s.delayP99 <= 0 {
			t.Errorf("%s: stream numbers missing: %+v", s.kind, s)
		}
	}
	for _, k := range []string{kindBare, kindRedis, kindO2P} {
		if !kinds[k] {
			t.Errorf("no stream result for %s", k)
		}
	}
	a := res.admission
	if !a.injected || a.n != o.admissions || a.annotatedP50 <= 0 || a.annotatedP99 < a.annotatedP50 || a.plainP50 <= 0 ||
		a.directP50 <= 0 || a.directP99 < a.directP50 {
		t.Errorf("admission %+v, want the sidecar injected and ordered percentiles", a)
	}
	started := map[string]bool{}
	for _, s := range res.startups {
		started[s.name] = true
		if s.d <= 0 {
			t.Errorf("start-up of %s: %v", s.name, s.d)
		}
	}
	for _, k := range []string{kindBare, kindRedis, kindMemory, kindExternal, kindO2P, kindPolicyNone, kindPolicy, kindPolicyAudit, kindHopA, kindHopB} {
		if !started[k] {
			t.Errorf("no start-up time for %s", k)
		}
	}
	if res.binarySize <= 0 {
		t.Errorf("binary size %d", res.binarySize)
	}

	md := res.markdown()
	for _, want := range []string{"## Throughput", "## Latency", "## Held SSE streams", "## Admission", "## Start-up",
		"## Sidecar binary", "## Targets", "| cookie, Redis |", "| bearer JWT, external IdP |", "| oauth2-proxy, cookie, Redis |", "CPUs (nproc): ",
		"## Policy", "| sidecar, no policy |", "| sidecar, policy |", "| sidecar, policy + audit |", "| tools/call | **", "| tools/list | **",
		"## Session hop", "| sidecar A, session owner (served locally) |", "| sidecar B, another replica (one hop to A) |",
		"| closed loop req/s |", "| p50 at 100 req/s |", "| p99 at 100 req/s |", `{result="forwarded"}` + "` grew by"} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	if strings.Contains(md, "NaN") || strings.Contains(md, "Inf") {
		t.Errorf("results.md has a NaN or Inf:\n%s", md)
	}
}

// checkPolicy checks the policy scenario produced its rows: ten targets
// (tools/call and tools/list on five paths), every run with numbers,
// every open-loop answer a JSON-RPC success, and an audit line for every
// request the audited sidecar answered.
func checkPolicy(t *testing.T, o options, pr *policyResult) {
	t.Helper()
	if pr == nil {
		t.Fatal("no policy scenario result")
	}
	if want := 2 * len(policyPaths()); len(pr.targets) != want || len(pr.load) != want || len(pr.latency) != want {
		t.Fatalf("policy: %d targets, %d closed-loop and %d open-loop results, want %d each", len(pr.targets), len(pr.load), len(pr.latency), want)
	}
	checkRuns(t, o, pr.targets, pr.load, pr.latency)
	if got := pr.targets[pr.index("tools/list", ppAudit)].name; got != "tools/list, sidecar, policy + audit" {
		t.Errorf("target order: %q where tools/list through the audited sidecar belongs", got)
	}
	if a := pr.audit; a.answered <= 0 || a.lines < a.answered || a.bytes <= a.lines {
		t.Errorf("audit %+v, want a line (of some bytes) for each answered request", a)
	}
	// The sample is from the first audited run: the tools/call of echo,
	// which the last rule allows.
	for _, want := range []string{`"logger":"audit"`, `"method":"tools/call"`, `"name":"echo"`, `"decision":"` + audit.DecisionAllowed + `"`, `"rule":"company-users"`} {
		if !strings.Contains(pr.audit.sample, want) {
			t.Errorf("audit line %q lacks %s", pr.audit.sample, want)
		}
	}
	for _, tg := range pr.targets {
		for _, h := range tg.headers {
			if c, ok := strings.CutPrefix(h, "Cookie: "); ok && strings.Contains(pr.audit.sample, c) {
				t.Errorf("the audit line carries the session cookie")
			}
		}
	}
	for _, h := range []string{"Mcp-Method", "Mcp-Protocol-Version", "Content-Type", "Accept"} {
		if !slices.Contains(pr.headers, h) {
			t.Errorf("captured SDK headers %v lack %s", pr.headers, h)
		}
	}
}

// checkRuns checks the runs of a scenario's targets: o.rounds closed-loop
// rounds each with positive throughput and ordered latencies, and an open
// loop in which every answer was a JSON-RPC success.
func checkRuns(t *testing.T, o options, targets []target, load [][]loadResult, latency []latencyResult) {
	t.Helper()
	for i, tg := range targets {
		if len(load[i]) != o.rounds {
			t.Errorf("%s: %d throughput rounds, want %d", tg.name, len(load[i]), o.rounds)
		}
		for _, r := range load[i] {
			if r.rps <= 0 || r.requests <= 0 || r.p50 <= 0 || r.p99 < r.p50 {
				t.Errorf("%s: throughput %+v, want positive req/s and requests and ordered latencies", tg.name, r)
			}
		}
		if l := latency[i]; l.requests == 0 || l.success != 1 || l.p50 <= 0 || l.p99 < l.p50 {
			t.Errorf("%s: open loop %+v, want every request a JSON-RPC success and ordered percentiles", tg.name, l)
		}
	}
}

// checkHop checks the session hop scenario produced its rows: four
// targets (direct, bare, owner, another replica), every run with numbers,
// every open-loop answer a JSON-RPC success, and B's hop counter grown by
// the requests it answered.
func checkHop(t *testing.T, o options, hr *hopResult) {
	t.Helper()
	if hr == nil {
		t.Fatal("no session hop scenario result")
	}
	if want := len(hopPaths()); len(hr.targets) != want || len(hr.load) != want || len(hr.latency) != want {
		t.Fatalf("hop: %d targets, %d closed-loop and %d open-loop results, want %d each", len(hr.targets), len(hr.load), len(hr.latency), want)
	}
	checkRuns(t, o, hr.targets, hr.load, hr.latency)
	if got := hr.targets[hpHop]; got.kind != kindHopB || !strings.Contains(got.name, "one hop to A") {
		t.Errorf("target order: %q (%s) where B's belongs", got.name, got.kind)
	}
	fwd := int64(hr.hopsB["forwarded"])
	if fwd < hr.answeredB || hr.answeredB < 1+int64(hr.latency[hpHop].requests) {
		t.Errorf("B forwarded %d requests and answered %d (open loop alone %d)", fwd, hr.answeredB, hr.latency[hpHop].requests)
	}
	if len(hr.hopsA) != 0 && hr.hopsA["forwarded"] != 0 {
		t.Errorf("A counted hops %v", hr.hopsA)
	}
	if owner := "http://" + hr.owner + "/"; !strings.HasPrefix(hr.targets[hpOwner].url, owner) || strings.HasPrefix(hr.targets[hpHop].url, owner) {
		t.Errorf("A's session id names %q as its owner; B is %s", hr.owner, hr.targets[hpHop].url)
	}
	for _, h := range []string{"Mcp-Protocol-Version", "Content-Type", "Accept"} {
		if !slices.Contains(hr.headers, h) {
			t.Errorf("captured SDK headers %v lack %s", hr.headers, h)
		}
	}
}
