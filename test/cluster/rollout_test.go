package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
)

// streamEndBound is how long after the rollout started an SSE stream on an
// old pod may take to end: the pod's turn in the rollout (podsTimeout) plus
// its termination grace period (30s by default).
const streamEndBound = podsTimeout + 30*time.Second

// eventsPath asks the example server for a stream far longer than the
// rollout (600 events, 500ms apart), so it ends only because its pod stops.
const eventsPath = "/events?count=600&interval=500ms"

// streamEnd is how one SSE stream ended.
type streamEnd struct {
	pod    string
	events []string // the data of each event
	last   string   // the name of the last event
	err    error    // nil: the response ended cleanly (EOF after the last chunk)
	at     time.Time
}

// openStream opens the example server's SSE stream on tg with the cookie
// and reads it to its end in the background. It returns once the first
// event has arrived, so the stream is known to be open end to end.
func openStream(ctx context.Context, tg target, cookie *http.Cookie) (<-chan streamEnd, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tg.base+eventsPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.AddCookie(cookie)
	resp, err := (&http.Client{Transport: tg.rt}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: open stream: %w", tg.name, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: stream answered %d %s, want 200 text/event-stream", tg.name, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	first := make(chan error, 1)
	done := make(chan streamEnd, 1)
	go func() {
		defer resp.Body.Close()
		end := streamEnd{pod: tg.name}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				end.last = name
			}
			if ev, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				end.events = append(end.events, ev)
				if len(end.events) == 1 {
					first <- nil
				}
			}
		}
		end.err, end.at = sc.Err(), time.Now()
		if len(end.events) == 0 {
			first <- fmt.Errorf("%s: the stream ended before its first event: %v", tg.name, end.err)
		}
		done <- end
	}()
	select {
	case err := <-first:
		return done, err
	case <-time.After(apiTimeout):
		return nil, fmt.Errorf("%s: no event within %s", tg.name, apiTimeout)
	}
}

// Step 6: kubectl rollout restart replaces both pods. An MCP request sent
// through the Service every trafficInterval until the old pods are gone
// never fails: the drain hook keeps them serving, and moves the client's
// keep-alive connection to a new pod, before their apps stop. An SSE stream open on each old pod ends
// cleanly (the response completes; no reset, no truncated chunk), and
// afterwards the browser cookie and the MCP client's
// token work on the new pods without logging in again: sessions and
// tokens live in Redis and in keys every replica shares.
func (s *suite) stepRollout(t *testing.T) {
	s.diagnoseOnFailure(t, s.appNS)
	ctx, cancel := context.WithTimeout(context.Background(), streamEndBound+podsTimeout)
	defer cancel()
	old := map[types.UID]bool{}
	var ends []<-chan streamEnd
	for i, tg := range s.podTargets() {
		old[s.app.pods[i].UID] = true
		ch, err := openStream(ctx, tg, s.cookie)
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, ch)
	}
	t.Logf("an SSE stream is open on each of the %d old pods", len(ends))

	svc := s.serviceTargets()[0]
	svc.rt = transportTo(s.app.service) // its own connections
	stopTraffic := make(chan struct{})
	traffic := sendDuring(ctx, svc, s.cookie, stopTraffic)

	start := time.Now()
	for _, args := range [][]string{
		{"rollout", "restart", "deployment/mcp-server", "-n", s.appNS},
		{"rollout", "status", "deployment/mcp-server", "-n", s.appNS, "--timeout", podsTimeout.String()},
	} {
		out, err := s.kubectl(ctx, args...)
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		t.Logf("kubectl %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	}
	t.Logf("rollout done after %s", time.Since(start).Round(100*time.Millisecond))

	for _, ch := range ends {
		select {
		case end := <-ch:
			took := end.at.Sub(start).Round(100 * time.Millisecond)
			switch {
			case end.err != nil:
				t.Errorf("the SSE stream on %s broke %s after the rollout started, after %d events: %v; want a clean end (the sidecar drains, the app ends its streams)", end.pod, took, len(end.events), end.err)
			case end.last != "shutdown":
				t.Errorf("the SSE stream on %s ended with the event %q after %d events; want the app's \"shutdown\" event, sent when its pod stopped", end.pod, end.last, len(end.events))
			default:
				t.Logf("the SSE stream on %s ended cleanly %s after the rollout started: %d ticks, then the app's shutdown event", end.pod, took, len(end.events)-1)
			}
		case <-time.After(streamEndBound - time.Since(start)):
			t.Errorf("an SSE stream on an old pod was still open %s after the rollout started", streamEndBound)
		}
	}

	// Traffic goes on until the old pods are gone: their apps stop only
	// after the drain delay, after kubectl rollout status has returned.
	pods := s.waitPodsReady(t, s.appNS, appSelector, 2)
	close(stopTraffic)
	if tr := <-traffic; len(tr.failures) > 0 {
		t.Errorf("%d of %d MCP requests through the Service failed during the rollout; want none (old pods keep serving until they have left the Service):\n%s",
			len(tr.failures), tr.sent, strings.Join(tr.failures, "\n"))
	} else {
		t.Logf("all %d MCP requests sent through the Service during the rollout, until the old pods were gone (one every %s), succeeded", tr.sent, trafficInterval)
	}
	for _, p := range pods {
		if old[p.UID] {
			t.Fatalf("pod %s survived the rollout restart", p.Name)
		}
		checkInjected(t, &p)
	}
	s.app.pods = pods
	s.waitServiceServes(t)
	for _, tg := range s.targets() {
		if err := checkInitialize(ctx, tg, s.cookie); err != nil {
			t.Errorf("after the rollout: %v (the browser session must survive it)", err)
		}
	}
	t.Log("the browser session from before the rollout works on both new pods and through the Service")

	if s.mcp == nil {
		t.Fatal("step 4 left no MCP client")
	}
	tok, err := s.mcp.Tokens.Token()
	if err != nil {
		t.Fatal(err)
	}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "test-cluster", Version: "v1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: s.externalURL + "/mcp", OAuthHandler: mcpclient.StaticToken(tok.AccessToken)}, nil)
	if err != nil {
		t.Fatalf("MCP client with the token from before the rollout: %v (it must not need a new login)", err)
	}
	defer session.Close()
	if err := checkWhoami(ctx, session); err != nil {
		t.Fatal(err)
	}
	if n := s.mcp.Browser.Authorizations(); n != 1 {
		t.Errorf("the MCP client authorized %d times; the rollout must not log it out", n)
	}
	t.Log("the MCP client's access token from before the rollout works on the new pods")
}

// trafficInterval is how often sendDuring sends a request; maxTraffic
// bounds how many it sends.
const (
	trafficInterval = 100 * time.Millisecond
	maxTraffic      = int(podsTimeout / trafficInterval)
)

// trafficResult is what sendDuring saw.
type trafficResult struct {
	sent     int
	failures []string // when and how each failed request failed
}

// sendDuring sends an MCP initialize with the cookie to tg every
// trafficInterval, as a client using the Service would, until stop is
// closed or maxTraffic requests were sent.
func sendDuring(ctx context.Context, tg target, cookie *http.Cookie, stop <-chan struct{}) <-chan trafficResult {
	out := make(chan trafficResult, 1)
	go func() {
		var res trafficResult
		start := time.Now()
		tick := time.NewTicker(trafficInterval)
		defer tick.Stop()
		for res.sent < maxTraffic {
			select {
			case <-stop:
				out <- res
				return
			case <-ctx.Done():
				out <- res
				return
			case <-tick.C:
			}
			res.sent++
			if err := checkInitialize(ctx, tg, cookie); err != nil {
				res.failures = append(res.failures, fmt.Sprintf("  %s: %v", time.Since(start).Round(10*time.Millisecond), err))
			}
		}
		out <- res
	}()
	return out
}
