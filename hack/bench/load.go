package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// target is one URL the load generators load, with its credentials.
type target struct {
	name    string
	kind    string // the proxy kind serving it; "" for the upstream itself
	url     string
	headers []string // "Name: value"
}

// probe checks once that t answers the upstream's 200: a target answering
// anything else would make its numbers meaningless.
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
		return fmt.Errorf("GET %s answered %d %q, want 200 %s", t.url, resp.StatusCode, body, dataBody)
	}
	return nil
}

// loadResult is one closed-loop run.
type loadResult struct {
	rps      float64
	p50, p99 time.Duration
}

// ---------------------------------------------------------------------------
// wrk.

var (
	rpsRe      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	pctRe      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	non2xxRe   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	sockErrsRe = regexp.MustCompile(`(?m)^\s*Socket errors:.*$`)
)

// runWrk loads t for d and parses wrk's summary. Any non-2xx answer or
// socket error makes the run invalid: the number would not be the one the
// target is about.
func runWrk(ctx context.Context, o options, t target, d time.Duration) (loadResult, error) {
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
		return loadResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	if m := non2xxRe.FindStringSubmatch(out); m != nil && m[1] != "0" {
		return loadResult{}, fmt.Errorf("wrk saw %s non-2xx answers:\n%s", m[1], out)
	}
	if m := sockErrsRe.FindString(out); m != "" {
		return loadResult{}, fmt.Errorf("wrk saw socket errors (%s):\n%s", strings.TrimSpace(m), out)
	}
	var r loadResult
	m := rpsRe.FindStringSubmatch(out)
	if m == nil {
		return loadResult{}, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	if r.rps, err = strconv.ParseFloat(m[1], 64); err != nil {
		return loadResult{}, fmt.Errorf("Requests/sec %q: %w", m[1], err)
	}
	for _, p := range pctRe.FindAllStringSubmatch(out, -1) {
		d, err := time.ParseDuration(p[2] + p[3])
		if err != nil {
			return loadResult{}, fmt.Errorf("latency %q: %w", p[0], err)
		}
		if p[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return loadResult{}, fmt.Errorf("no 50%%/99%% latency in wrk output:\n%s", out)
	}
	return r, nil
}

// ---------------------------------------------------------------------------
// The Go closed loop: o.connections workers, each sending its next request
// as soon as the last answered, for d. Used where wrk is not installed
// (-loader go, the smoke test); slower than wrk, so its absolute numbers are
// lower, but every target in one run is loaded the same way.

func runGoLoop(ctx context.Context, o options, t target, d time.Duration) (loadResult, error) {
	tr := &http.Transport{MaxIdleConns: o.connections, MaxIdleConnsPerHost: o.connections, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		done    atomic.Int64
		mu      sync.Mutex
		lats    []time.Duration
		firstMu sync.Mutex
		first   error
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		firstMu.Lock()
		if first == nil {
			first = err
		}
		firstMu.Unlock()
		cancel()
	}
	start := time.Now()
	for range o.connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() { mu.Lock(); lats = append(lats, mine...); mu.Unlock() }()
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
				if err != nil {
					fail(err)
					return
				}
				for _, h := range t.headers {
					name, value, _ := strings.Cut(h, ": ")
					req.Header.Set(name, value)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Errorf("GET %s answered %d", t.name, resp.StatusCode))
					return
				}
				mine = append(mine, time.Since(t0))
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return loadResult{}, first
	}
	if len(lats) == 0 {
		return loadResult{}, errors.New("no request completed")
	}
	sortDurations(lats)
	return loadResult{
		rps: float64(done.Load()) / elapsed.Seconds(),
		p50: quantile(lats, 0.50), p99: quantile(lats, 0.99),
	}, nil
}

// ---------------------------------------------------------------------------
// Open-loop latency at a fixed rate (vegeta): requests leave on schedule
// whether or not earlier ones have answered, so a slow proxy shows up as
// latency rather than as fewer requests (the coordinated omission a closed
// loop like wrk has).

type latencyResult struct {
	p50, p99, p999 time.Duration
	pooledP99      time.Duration // over every round's requests together
	requests       uint64
	success        float64
	errs           []string
}

// openLoopClient is one target's HTTP client for the open loop, shared by
// its rounds so its connections stay open between them, as a client's
// would (a vegeta Attacker cannot be reused once its attack ends).
func openLoopClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 10000, MaxIdleConnsPerHost: 10000, IdleConnTimeout: time.Minute,
	}}
}

// runVegeta loads t at rate for d and adds the results to each of ms.
func runVegeta(c *http.Client, ms []*vegeta.Metrics, t target, rate int, d time.Duration) {
	header := http.Header{}
	for _, h := range t.headers {
		name, value, _ := strings.Cut(h, ": ")
		header.Set(name, value)
	}
	atk := vegeta.NewAttacker(vegeta.Client(c), vegeta.KeepAlive(true))
	targeter := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: t.url, Header: header})
	for res := range atk.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, d, t.name) {
		for _, m := range ms {
			m.Add(res)
		}
	}
}

// latencyOf closes m and reads the percentiles.
func latencyOf(m *vegeta.Metrics) latencyResult {
	m.Close()
	return latencyResult{
		p50: m.Latencies.P50, p99: m.Latencies.P99, p999: m.Latencies.Quantile(0.999),
		requests: m.Requests, success: m.Success, errs: m.Errors,
	}
}

// medianLatency takes each percentile's median over the rounds.
func medianLatency(rs []latencyResult) latencyResult {
	pick := func(f func(latencyResult) time.Duration) time.Duration {
		ds := make([]time.Duration, 0, len(rs))
		for _, r := range rs {
			ds = append(ds, f(r))
		}
		sortDurations(ds)
		return ds[(len(ds)-1)/2]
	}
	return latencyResult{
		p50:  pick(func(r latencyResult) time.Duration { return r.p50 }),
		p99:  pick(func(r latencyResult) time.Duration { return r.p99 }),
		p999: pick(func(r latencyResult) time.Duration { return r.p999 }),
	}
}
