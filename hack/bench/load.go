package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	// body, when set, is POSTed instead of a GET: a JSON-RPC request.
	body string
	// check, when set, judges the probe's answer instead of comparing it
	// with dataBody; every answer during the load must also pass
	// jsonrpcSuccess, so a denied or failed call never counts as throughput.
	check func(status int, header http.Header, body []byte) error
	// ids, when set, gives every request of body a JSON-RPC id of its own:
	// an MCP server with sessions refuses an id already in flight in the
	// session, as the concurrent requests of a static body would be.
	ids *idSeq
}

// idSeq numbers the JSON-RPC requests of one body: the body is split
// around its id, and every request gets the next number, unique over the
// whole run (wrk runs take blocks of numbers, see wrkScript).
type idSeq struct {
	head, tail string
	n          atomic.Int64
}

// newIDSeq splits body around its one "id":<id> member.
func newIDSeq(body string, id json.RawMessage) (*idSeq, error) {
	member := `"id":` + string(id)
	i := strings.Index(body, member)
	if i < 0 || strings.Count(body, member) != 1 {
		return nil, fmt.Errorf("body %q does not name its id %s exactly once", clipBody([]byte(body)), id)
	}
	return &idSeq{head: body[:i+len(`"id":`)], tail: body[i+len(member):]}, nil
}

// next returns the body with the next id, and that id.
func (s *idSeq) next() (string, json.RawMessage) {
	id := strconv.FormatInt(s.n.Add(1), 10)
	return s.head + id + s.tail, json.RawMessage(id)
}

// block reserves n ids and returns the last number before them.
func (s *idSeq) block(n int64) int64 { return s.n.Add(n) - n }

// payload is the body of the next request.
func (t target) payload() string {
	if t.ids != nil {
		b, _ := t.ids.next()
		return b
	}
	return t.body
}

func (t target) method() string {
	if t.body != "" {
		return http.MethodPost
	}
	return http.MethodGet
}

func (t target) newRequest(ctx context.Context) (*http.Request, error) {
	return t.newRequestWith(ctx, t.payload())
}

// newRequestWith is a request of t with payload as its body.
func (t target) newRequestWith(ctx context.Context, payload string) (*http.Request, error) {
	var body io.Reader
	if payload != "" {
		body = strings.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, t.method(), t.url, body)
	if err != nil {
		return nil, err
	}
	for _, h := range t.headers {
		name, value, _ := strings.Cut(h, ": ")
		req.Header.Set(name, value)
	}
	return req, nil
}

// jsonrpcSuccess is the load loops' cheap check of a JSON-RPC answer: a
// result that is not a tool error. An error response has no "result" key,
// and a quote inside a JSON string is escaped, so neither can match by
// accident. The probe checks each target's answer in full beforehand.
func jsonrpcSuccess(body []byte) bool {
	return bytes.Contains(body, []byte(`"result":`)) && !bytes.Contains(body, []byte(`"isError":true`))
}

// probe checks once that t answers the upstream's 200: a target answering
// anything else would make its numbers meaningless.
func probe(ctx context.Context, t target) error {
	req, err := t.newRequest(ctx)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if t.check != nil {
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return fmt.Errorf("%s %s: reading the answer: %w", t.method(), t.url, err)
		}
		if err := t.check(resp.StatusCode, resp.Header, body); err != nil {
			return fmt.Errorf("%s %s: %w", t.method(), t.url, err)
		}
		return nil
	}
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
	requests int // answered
}

// ---------------------------------------------------------------------------
// wrk.

var (
	rpsRe      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	pctRe      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	non2xxRe   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	requestsRe = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	// failedRe is the line the Lua script of a JSON-RPC target prints.
	failedRe   = regexp.MustCompile(`(?m)^JSON-RPC failures: (\d+)$`)
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
	if t.body != "" {
		script, err := wrkScript(o, t)
		if err != nil {
			return loadResult{}, err
		}
		args = append(args, "-s", script)
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
	if t.body != "" {
		m := failedRe.FindStringSubmatch(out)
		if m == nil {
			return loadResult{}, fmt.Errorf("no JSON-RPC failure count in wrk output:\n%s", out)
		}
		if m[1] != "0" {
			return loadResult{}, fmt.Errorf("wrk saw %s answers that were not JSON-RPC successes:\n%s", m[1], out)
		}
	}
	var r loadResult
	if m := requestsRe.FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	}
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

// idsPerWrkThread is the block of JSON-RPC ids each wrk thread numbers its
// requests from in one run: more than a thread sends in any run here.
const idsPerWrkThread = 1_000_000_000

// wrkScript writes the Lua script that makes wrk POST t's body (the
// headers go on wrk's command line) and count the answers that are not
// JSON-RPC successes (jsonrpcSuccess), printed at the end for runWrk to
// read. Written into dir at run time, one per target.
func wrkScript(o options, t target) (string, error) {
	// A long bracket whose level the body does not contain.
	level := "="
	for strings.Contains(t.body, "]"+level+"]") {
		level += "="
	}
	open, closeb := "["+level+"[", "]"+level+"]"
	script := `-- written by hack/bench for ` + t.name + `
wrk.method = "POST"
wrk.body = ` + open + t.body + closeb + `
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) failed = 0 end
`
	if t.ids != nil {
		// Every request its own JSON-RPC id, from a block of numbers
		// reserved for this run (idsPerWrkThread for each thread; Lua
		// writes a whole number below 1e14 exactly).
		base := t.ids.block(int64(o.threads) * idsPerWrkThread)
		script = `-- written by hack/bench for ` + t.name + `
wrk.method = "POST"
local head, tail = ` + open + t.ids.head + closeb + `, ` + open + t.ids.tail + closeb + `
local threads = {}
function setup(thread)
  thread:set("next_id", ` + strconv.FormatInt(base, 10) + ` + #threads * ` + strconv.FormatInt(idsPerWrkThread, 10) + `)
  table.insert(threads, thread)
end
function init(args) failed = 0 end
function request()
  next_id = next_id + 1
  return wrk.format(nil, nil, nil, head .. next_id .. tail)
end
`
	}
	script += `function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"result":', 1, true) or string.find(body, '"isError":true', 1, true) then
    failed = failed + 1
  end
end
function done(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do n = n + thread:get("failed") end
  io.write(string.format("JSON-RPC failures: %d\n", n))
end
`
	path := filepath.Join(o.work, "wrk-"+slug(t.name)+".lua")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		return "", fmt.Errorf("wrk script: %w", err)
	}
	return path, nil
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
			var buf bytes.Buffer
			for ctx.Err() == nil {
				req, err := t.newRequest(ctx)
				if err != nil {
					fail(err)
					return
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					return
				}
				buf.Reset()
				_, err = buf.ReadFrom(resp.Body)
				_ = resp.Body.Close()
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("%s %s: reading the answer: %w", t.method(), t.name, err))
					}
					return
				}
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Errorf("%s %s answered %d", t.method(), t.name, resp.StatusCode))
					return
				}
				if t.body != "" && !jsonrpcSuccess(buf.Bytes()) {
					fail(fmt.Errorf("%s %s answered %q, not a JSON-RPC success", t.method(), t.name, clipBody(buf.Bytes())))
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
		requests: int(done.Load()),
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
	vt := vegeta.Target{Method: t.method(), URL: t.url, Header: header}
	if t.body != "" {
		vt.Body = []byte(t.body)
	}
	targeter := vegeta.NewStaticTargeter(vt)
	if t.ids != nil {
		targeter = func(tgt *vegeta.Target) error {
			*tgt = vt
			tgt.Body = []byte(t.payload())
			return nil
		}
	}
	for res := range atk.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, d, t.name) {
		// A 200 that is a JSON-RPC error (a denial) is a failure here.
		if t.body != "" && res.Error == "" && res.Code == http.StatusOK && !jsonrpcSuccess(res.Body) {
			res.Code, res.Error = 0, "answer is not a JSON-RPC success: "+clipBody(res.Body)
		}
		for _, m := range ms {
			m.Add(res)
		}
	}
}

// clipBody bounds an answer quoted in an error.
func clipBody(b []byte) string {
	const most = 200
	if len(b) > most {
		return string(b[:most]) + "..."
	}
	return string(b)
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
