package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpsession"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpserver"
)

// The session hop scenario measures what issue 11's one hop costs: an MCP
// session of the stateful protocol (2025-11-25) is owned by the replica
// whose MCP server holds it; a request of it that lands on another replica
// is forwarded there once, with the caller's own credentials, and
// authenticated again. Two sidecar processes (A and B) share Redis and the
// cookie secret, like two replicas of one deployment; each advertises its
// own listen address. One session is created through A, so A owns it;
// the same tools/call of that session is then sent to A (served locally)
// and to B (one hop to A).

const (
	// mcpStatefulPath is where the shared upstream serves the example MCP
	// server with sessions (Mcp-Session-Id kept in its memory) and JSON
	// responses, so every POST is one request and one answer; the hop
	// sidecars' mcp_path.
	mcpStatefulPath = "/mcp-sessions"
	// hopProtocolVersion is the protocol the SDK client is pinned to: the
	// latest one with sessions.
	hopProtocolVersion = "2025-11-25"
	// hopsMetric is the sidecar's hop counter.
	hopsMetric = "mcp_oidc_proxy_mcp_session_hops_total"
)

// Sidecar kinds of the session hop scenario: cookie sessions on Redis like
// kindRedis, the MCP endpoint at mcpStatefulPath, each advertising its own
// listen address, both with A's external URL (one deployment);
const (
	kindHopA = "mcp-hop-a" // the session's owner;
	kindHopB = "mcp-hop-b" // the replica that forwards to A.
)

var hopKinds = []string{kindHopA, kindHopB}

// statefulMCP serves the example MCP server with sessions (what
// 2025-11-25 clients speak), answering each POST with one JSON response.
func statefulMCP() http.Handler {
	s := mcpserver.NewServer()
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{JSONResponse: true})
}

// hopPath is one row of the session hop table.
type hopPath struct {
	label string
	kind  string // "" for the upstream itself
}

func hopPaths() []hopPath {
	return []hopPath{
		{"direct upstream", ""},
		{"bare ReverseProxy", kindBare},
		{"sidecar A, session owner (served locally)", kindHopA},
		{"sidecar B, another replica (one hop to A)", kindHopB},
	}
}

// Row indexes into hopPaths for the report.
const (
	hpDirect = iota
	hpBare
	hpOwner
	hpHop
)

// hopTally is what the loads of B's target answered, counted by
// afterRun.
type hopTally struct{ answered, runs int64 }

// hopResult is the session hop scenario's numbers, one target per
// hopPaths row.
type hopResult struct {
	targets []target
	load    [][]loadResult
	latency []latencyResult
	headers []string // the names of the headers the SDK client set on tools/call
	initLen int      // bytes of the captured initialize
	owner   string   // the owner sealed into A's session id
	// The hop counters' growth over the scenario, by result label.
	hopsA, hopsB map[string]float64
	// answeredB is how many requests B answered (probe, closed and open
	// loop); inFlightB bounds those still in flight when a closed-loop run
	// stopped (connections per run), which B may have forwarded too.
	answeredB, inFlightB int64
}

// capturedSession is the 2025-11-25 handshake and tools/call as the SDK
// client sent them.
type capturedSession struct {
	initialize, initialized, call mcpRequest
}

// captureSessionSDK runs the official MCP Go SDK client pinned to
// hopProtocolVersion against a stateful server, calls echo, and returns
// the initialize, notifications/initialized and tools/call it sent, with
// their session header removed (each target has its own session).
func captureSessionSDK(ctx context.Context) (capturedSession, error) {
	var c capturedSession
	seen, err := captureMCP(ctx, statefulMCP(), mcpStatefulPath, &mcp.ClientSessionOptions{ProtocolVersion: hopProtocolVersion},
		func(cs *mcp.ClientSession) error {
			if v := cs.InitializeResult().ProtocolVersion; v != hopProtocolVersion {
				return fmt.Errorf("negotiated protocol %q, want %s", v, hopProtocolVersion)
			}
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": echoText}}); err != nil {
				return fmt.Errorf("tools/call: %w", err)
			}
			return nil
		})
	if err != nil {
		return c, err
	}
	var ok [3]bool
	c.initialize, ok[0] = seen["initialize"]
	c.initialized, ok[1] = seen["notifications/initialized"]
	c.call, ok[2] = seen["tools/call"]
	if ok != [3]bool{true, true, true} {
		return c, fmt.Errorf("captured %d requests, not an initialize, a notifications/initialized and a tools/call", len(seen))
	}
	for _, r := range []*mcpRequest{&c.initialize, &c.initialized, &c.call} {
		r.headers = slices.DeleteFunc(r.headers, func(h string) bool {
			return strings.HasPrefix(h, mcpsession.SessionHeader+": ")
		})
	}
	if !strings.Contains(c.initialize.body, `"protocolVersion":"`+hopProtocolVersion+`"`) {
		return c, fmt.Errorf("the captured initialize %q does not ask for %s", clipBody([]byte(c.initialize.body)), hopProtocolVersion)
	}
	return c, nil
}

// openSession starts an MCP session at url with the captured handshake
// (and extra headers, the cookie) and returns the session id it answered.
func openSession(ctx context.Context, url string, c capturedSession, extra []string) (string, error) {
	t := target{url: url, headers: append(slices.Clone(c.initialize.headers), extra...), body: c.initialize.body}
	req, err := t.newRequestWith(ctx, t.body)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("initialize: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if err != nil {
		return "", fmt.Errorf("initialize: reading the answer: %w", err)
	}
	if _, err := parseAnswer(resp.StatusCode, resp.Header, body, c.initialize.id); err != nil {
		return "", fmt.Errorf("initialize: %w", err)
	}
	var init struct {
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &init); err != nil || init.Result.ProtocolVersion != hopProtocolVersion {
		return "", fmt.Errorf("initialize answered %q, want protocol %s", clipBody(body), hopProtocolVersion)
	}
	sid := resp.Header.Get(mcpsession.SessionHeader)
	if sid == "" {
		return "", fmt.Errorf("initialize answered no %s", mcpsession.SessionHeader)
	}
	t = target{url: url, headers: append(slices.Clone(c.initialized.headers), extra...), body: c.initialized.body}
	t.headers = append(t.headers, mcpsession.SessionHeader+": "+sid)
	if req, err = t.newRequestWith(ctx, t.body); err != nil {
		return "", err
	}
	if resp, err = http.DefaultClient.Do(req); err != nil {
		return "", fmt.Errorf("notifications/initialized: %w", err)
	}
	body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("notifications/initialized answered %d %q, want 202", resp.StatusCode, clipBody(body))
	}
	return sid, nil
}

// runHop runs the session hop scenario on the procs measure launched.
func (e *env) runHop(ctx context.Context, res *results) (*hopResult, error) {
	hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, err := captureSessionSDK(hctx)
	if err != nil {
		return nil, err
	}
	hr := &hopResult{initLen: len(c.initialize.body)}
	for _, h := range c.call.headers {
		name, _, _ := strings.Cut(h, ": ")
		hr.headers = append(hr.headers, name)
	}
	a := e.procs[kindHopA]
	// Logged in through A; B accepts the cookie through the shared Redis
	// and cookie secret.
	cookie, err := sessionCookie(hctx, a.url, e.idp)
	if err != nil {
		return nil, fmt.Errorf("browser login (A): %w", err)
	}
	cookieHeader := "Cookie: " + cookie
	upstreamSID, err := openSession(hctx, e.upstream+mcpStatefulPath, c, nil)
	if err != nil {
		return nil, fmt.Errorf("session at the upstream: %w", err)
	}
	sealedSID, err := openSession(hctx, a.url+mcpStatefulPath, c, []string{cookieHeader})
	if err != nil {
		return nil, fmt.Errorf("session through A: %w", err)
	}
	// The id A handed out opens with the shared secret and names A as its
	// owner, so B must hop.
	sealer, err := mcpsession.NewSealer([]byte(cookieSecret))
	if err != nil {
		return nil, err
	}
	claims, err := sealer.Open(sealedSID, time.Now())
	if err != nil {
		return nil, fmt.Errorf("the session id A answered is not sealed with the cookie secret: %w", err)
	}
	if hr.owner = claims.Owner; "http://"+claims.Owner != a.url {
		return nil, fmt.Errorf("A's session id names %q as its owner, want A (%s)", claims.Owner, a.url)
	}

	ids, err := newIDSeq(c.call.body, c.call.id)
	if err != nil {
		return nil, fmt.Errorf("captured tools/call: %w", err)
	}
	for _, path := range hopPaths() {
		t := target{name: "tools/call in a session, " + path.label, kind: path.kind, url: e.upstream + mcpStatefulPath,
			headers: slices.Clone(c.call.headers), body: c.call.body, ids: ids}
		if path.kind == "" || path.kind == kindBare {
			t.headers = append(t.headers, mcpsession.SessionHeader+": "+upstreamSID)
		} else {
			t.headers = append(t.headers, mcpsession.SessionHeader+": "+sealedSID, cookieHeader)
		}
		if path.kind != "" {
			t.url = e.procs[path.kind].url + mcpStatefulPath
		}
		hr.targets = append(hr.targets, t)
	}
	before := map[string]map[string]float64{}
	for _, kind := range hopKinds {
		if before[kind], err = hopCounts(hctx, e.procs[kind].admin); err != nil {
			return nil, err
		}
	}
	for _, t := range hr.targets {
		if err := probeCall(hctx, t); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	e.hopB = hopTally{}
	if hr.load, err = e.closedLoop(ctx, res, hr.targets, e.o.hopDuration); err != nil {
		return nil, err
	}
	if hr.latency, err = e.openLoop(hr.targets, e.o.hopRate, e.o.hopRateDuration); err != nil {
		return nil, err
	}
	// The probe, and every run's answered requests (warm-up included).
	hr.answeredB = 1 + e.hopB.answered
	// A closed-loop run that stops abandons at most one request per
	// connection, which B may still have forwarded; an open-loop run
	// waits for every answer, so this bound is loose by its runs.
	hr.inFlightB = e.hopB.runs * int64(e.o.connections)
	// The setup's two minutes may be over: the counters get their own.
	mctx, cancelM := context.WithTimeout(ctx, 30*time.Second)
	defer cancelM()
	after := map[string]map[string]float64{}
	for _, kind := range hopKinds {
		if after[kind], err = hopCounts(mctx, e.procs[kind].admin); err != nil {
			return nil, err
		}
	}
	hr.hopsA, hr.hopsB = diffCounts(before[kindHopA], after[kindHopA]), diffCounts(before[kindHopB], after[kindHopB])
	if err := hr.checkHops(); err != nil {
		return nil, err
	}
	return hr, nil
}

// checkHops is the sanity check of the counters: B forwarded every
// request it answered (and perhaps some a closed-loop run abandoned), A
// forwarded none, and neither refused a session or found its owner gone.
func (hr *hopResult) checkHops() error {
	fwd := int64(hr.hopsB[mcpsession.ResultForwarded])
	switch {
	case fwd == 0:
		return fmt.Errorf("B's %s{result=%q} did not grow: B forwarded nothing, so no hop was measured", hopsMetric, mcpsession.ResultForwarded)
	case fwd < hr.answeredB || fwd > hr.answeredB+hr.inFlightB:
		return fmt.Errorf("B forwarded %d requests, but answered %d (and at most %d more were in flight when a run stopped)", fwd, hr.answeredB, hr.inFlightB)
	}
	for label, n := range hr.hopsA {
		if n != 0 {
			return fmt.Errorf("A, the session's owner, counted %s{result=%q} %v: it should serve every request itself", hopsMetric, label, n)
		}
	}
	for label, n := range hr.hopsB {
		if label != mcpsession.ResultForwarded && n != 0 {
			return fmt.Errorf("B counted %s{result=%q} %v", hopsMetric, label, n)
		}
	}
	return nil
}

// probeCall sends t's tools/call once, with an id of its own, and checks
// the answer in full (checkEcho).
func probeCall(ctx context.Context, t target) error {
	body, id := t.ids.next()
	req, err := t.newRequestWith(ctx, body)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("POST %s: reading the answer: %w", t.url, err)
	}
	if err := checkEcho(id)(resp.StatusCode, resp.Header, b); err != nil {
		return fmt.Errorf("POST %s: %w", t.url, err)
	}
	return nil
}

// hopCounts reads the hop counter of a sidecar's /metrics by result
// label (a label not yet counted is absent: zero).
func hopCounts(ctx context.Context, admin string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s/metrics: %w", admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics answered %d", admin, resp.StatusCode)
	}
	return parseHopCounts(resp.Body)
}

// parseHopCounts reads hopsMetric's samples from a Prometheus text
// exposition.
func parseHopCounts(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), hopsMetric+`{`)
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("%s sample %q", hopsMetric, sc.Text())
		}
		result := ""
		for l := range strings.SplitSeq(labels, ",") {
			if v, ok := strings.CutPrefix(l, `result="`); ok {
				result = strings.TrimSuffix(v, `"`)
			}
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || result == "" {
			return nil, fmt.Errorf("%s sample %q", hopsMetric, sc.Text())
		}
		out[result] += n
	}
	return out, sc.Err()
}

func diffCounts(before, after map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}
