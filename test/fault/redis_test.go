package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// Bounds the Redis outage test promises.
const (
	// storeDownAnswer: while Redis is frozen or dead, a cookie request is
	// answered (503) within this long, never left hanging.
	storeDownAnswer = 5 * time.Second
	// redisRecovery: once Redis answers again, cookie requests on every
	// replica succeed within this long, without a restart of the proxy.
	redisRecovery = 10 * time.Second
	// bearerDuringOutage: a bearer request is answered (200) within this
	// long while Redis is frozen or dead.
	bearerDuringOutage = 5 * time.Second
	// sessionCacheOff: the local session cache (pkg/sessioncache) may
	// serve a session it verified recently until it notices that its
	// invalidation channel is gone: at once when Redis closes the
	// connection, within two health intervals (2s) when Redis is frozen.
	// From then on every cookie request reaches Redis and gets its 503
	// (within storeDownAnswer).
	sessionCacheOff = 2*session.DefaultHealthInterval + storeDownAnswer
)

// Redis frozen (SIGSTOP), then killed (SIGKILL) and restarted on the same
// port and data directory, while two replicas sharing it serve cookie and
// bearer load. Redis runs with appendonly yes / appendfsync always (every
// acknowledged write is on disk), the production setting this test assumes.
//
// Promises (DESIGN.md, "Failure behaviour"):
//   - no session is lost: the cookie from before the outage works on both
//     replicas afterwards;
//   - while Redis is down, cookie requests get 503 session_store_unavailable
//     within storeDownAnswer: never 401, never a redirect to login, never a
//     cookie change;
//   - bearer (façade JWT) requests, plain and on an MCP session, keep
//     working, each answered within bearerDuringOutage;
//   - /readyz stays 200;
//   - the proxy reconnects by itself: cookie requests succeed on both
//     replicas within redisRecovery of Redis answering again.
func TestRedisOutageUnderLoad(t *testing.T) {
	e := newEnv(t, redisserver.WithAppendOnly())
	a := e.start(t, "A", replicaOptions{})
	b := e.start(t, "B", replicaOptions{})
	replicas := []*replica{a, b}

	cookie := e.login(t, a, b)
	facade := e.facadeClient(t, a)
	bearer := bearerOf(t, facade)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, r := range replicas {
		for _, c := range []credential{{cookie: cookie}, bearer} {
			if res := r.get(ctx, "/data", c, jsonAPI); res.Status != http.StatusOK {
				t.Fatalf("before the outage on %s: %s", r.name, res)
			}
		}
	}

	load := startLoad(ctx, replicas, map[string]credential{"cookie": {cookie: cookie}, "bearer": bearer})
	defer load.stop()

	// During the outage (frozen, then dead) assert the promises directly.
	checkDown := func(state string) {
		t.Helper()
		for _, r := range replicas {
			// Until the session cache turns itself off, a cached session
			// may still get 200; never anything but 200 or 503.
			var last result
			since := time.Now()
			if !waitfor.Poll(sessionCacheOff, waitfor.Interval, func() bool {
				last = r.get(ctx, "/data", credential{cookie: cookie}, jsonAPI)
				if last.Status != http.StatusOK && last.Status != http.StatusServiceUnavailable {
					t.Errorf("Redis %s: cookie request on %s = %s; want 200 (cached) or 503", state, r.name, last)
				}
				return last.Status == http.StatusServiceUnavailable
			}) {
				t.Errorf("Redis %s: cookie requests on %s still %s after %s; promised 503 once the session cache noticed the outage", state, r.name, last, sessionCacheOff)
			}
			t.Logf("measured: Redis %s, first cookie 503 on %s %s after the check began (bound %s)", state, r.name, time.Since(since).Round(time.Millisecond), sessionCacheOff)
		}
		for _, r := range replicas {
			for _, h := range []http.Header{jsonAPI, {"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}} {
				res := r.get(ctx, "/data", credential{cookie: cookie}, h)
				if res.Status != http.StatusServiceUnavailable || res.Header.Get("Location") != "" || len(res.Header.Values("Set-Cookie")) > 0 {
					t.Errorf("Redis %s: cookie request on %s (Accept %s) = %s Location %q Set-Cookie %q; want 503 without redirect or cookie change",
						state, r.name, h.Get("Accept"), res, res.Header.Get("Location"), res.Header.Values("Set-Cookie"))
				} else if code := errorCode(res); code != "session_store_unavailable" {
					t.Errorf("Redis %s: 503 error code = %q, want session_store_unavailable", state, code)
				}
				if res.Took > storeDownAnswer {
					t.Errorf("Redis %s: cookie request on %s took %s, promised 503 within %s", state, r.name, res.Took, storeDownAnswer)
				}
				t.Logf("measured: Redis %s, cookie request on %s answered %d in %s (bound %s)", state, r.name, res.Status, res.Took.Round(time.Millisecond), storeDownAnswer)
			}
			res := r.get(ctx, "/data", bearer, jsonAPI)
			if res.Status != http.StatusOK || res.Took > bearerDuringOutage {
				t.Errorf("Redis %s: bearer request on %s = %s in %s; want 200 within %s", state, r.name, res, res.Took, bearerDuringOutage)
			}
			t.Logf("measured: Redis %s, bearer request on %s answered %d in %s (bound %s)", state, r.name, res.Status, res.Took.Round(time.Millisecond), bearerDuringOutage)
			ready := r.getAdmin(ctx, "/readyz")
			if ready.Status != http.StatusOK {
				t.Errorf("Redis %s: /readyz on %s = %s, want 200", state, r.name, ready)
			}
		}
		start := time.Now()
		if _, err := callWhoami(ctx, facade.Session); err != nil {
			t.Errorf("Redis %s: MCP tools/call with a bearer token on an existing MCP session: %v; want it to keep working", state, err)
		}
		if took := time.Since(start); took > bearerDuringOutage {
			t.Errorf("Redis %s: MCP tools/call took %s, promised within %s", state, took, bearerDuringOutage)
		}
	}

	load.waitEach(t, phaseBefore, 20)
	load.phase.Store(phaseDown)
	e.redis.Pause()
	checkDown("frozen (SIGSTOP)")
	e.redis.Stop() // SIGKILL while frozen: no chance to save anything more
	checkDown("killed (SIGKILL)")

	e.redis.Restart()
	back := time.Now()
	for _, r := range replicas {
		var last result
		if !waitfor.Poll(redisRecovery, waitfor.Interval, func() bool {
			last = r.get(ctx, "/data", credential{cookie: cookie}, jsonAPI)
			return last.Status == http.StatusOK
		}) {
			t.Fatalf("cookie request on %s %s after Redis came back = %s; promised 200 within %s (no session lost, reconnect by itself)",
				r.name, time.Since(back).Round(time.Millisecond), last, redisRecovery)
		}
	}
	recovery := time.Since(back)
	t.Logf("measured: recovery on both replicas %s after Redis answered again (bound %s)", recovery.Round(time.Millisecond), redisRecovery)
	load.phase.Store(phaseRecovered)
	if _, err := callWhoami(ctx, facade.Session); err != nil {
		t.Errorf("MCP session after the outage: %v", err)
	}
	load.checkAfter(t, map[string]int{"bearer": http.StatusOK}, storeDownAnswer)

	// No session lost: the pre-outage cookie on both replicas, and the
	// session info still names the user.
	for _, r := range replicas {
		res := r.get(ctx, "/oauth2/session", credential{cookie: cookie}, jsonAPI)
		var info struct {
			Authenticated bool `json:"authenticated"`
		}
		if res.Status != http.StatusOK || json.Unmarshal(res.Body, &info) != nil || !info.Authenticated {
			t.Errorf("session on %s after the outage = %s; want the session from before it", r.name, res)
		}
	}
}

// getAdmin sends GET to the replica's admin listener.
func (r *replica) getAdmin(ctx context.Context, path string) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Admin+path, nil)
	if err != nil {
		return result{Err: err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{Err: err}
	}
	defer resp.Body.Close()
	return result{Status: resp.StatusCode, Header: resp.Header}
}

// errorCode is the proxy's JSON error code in res, or "".
func errorCode(res result) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(res.Body, &e)
	return e.Error.Code
}

// callWhoami calls the example server's whoami tool.
func callWhoami(ctx context.Context, cs *mcp.ClientSession) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		return nil, err
	}
	if res.IsError {
		return nil, fmt.Errorf("whoami returned a tool error: %+v", res.Content)
	}
	return res, nil
}
