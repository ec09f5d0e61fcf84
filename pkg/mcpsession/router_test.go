package mcpsession_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpsession"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
)

const notFoundBody = `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}`

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rawPost sends one JSON-RPC message to rep as user, with session id sid
// (if any) and extra headers, and returns the response and its body.
func rawPost(t *testing.T, rep *replica, user, sid, body string, extra map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, rep.srv.URL+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+user)
	if sid != "" {
		req.Header.Set(mcpsession.SessionHeader, sid)
		req.Header.Set("Mcp-Protocol-Version", testProtocol)
	}
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST to %s: %v", rep.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// rawSession starts a session on rep as user with plain HTTP and returns
// the id the client sees.
func rawSession(t *testing.T, rep *replica, user string) string {
	t.Helper()
	resp, body := rawPost(t, rep, user, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+testProtocol+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	sid := resp.Header.Get(mcpsession.SessionHeader)
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: status %d, session %q, body %s", resp.StatusCode, sid, body)
	}
	if !strings.HasPrefix(sid, "m1.") {
		t.Fatalf("the client got an unsealed session id %q", sid)
	}
	resp, body = rawPost(t, rep, user, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: status %d, body %s", resp.StatusCode, body)
	}
	return sid
}

const toolsList = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`

func TestToolCallsAlternateBetweenReplicas(t *testing.T) {
	ctx := testContext(t)
	a := startReplica(t, "a", replicaOptions{})
	b := startReplica(t, "b", replicaOptions{})
	client := newSpreader("alice", a, b)
	cs := connect(t, ctx, client, nil, false)
	for i := range 50 {
		if err := echo(ctx, cs, fmt.Sprint("call ", i)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if err := cs.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// The initialize went to a (the first request), so a owns the session:
	// every session request that landed on b hopped to a, once.
	var toB = map[string]int{}
	for _, s := range client.sent() {
		if s.hasSession && s.target == 1 {
			toB[s.method]++
		}
	}
	if toB[http.MethodPost] < 20 {
		t.Fatalf("only %d session POSTs landed on b; the spreading does not work", toB[http.MethodPost])
	}
	waitFor(t, "the DELETE to arrive", func() bool {
		_, _, _, hopsIn, _ := a.stats()
		return hopsIn[http.MethodPost] == toB[http.MethodPost] && hopsIn[http.MethodDelete] == toB[http.MethodDelete]
	})
	seenA, leaksA, methodsA, hopsIn, hopAuth := a.stats()
	seenB, leaksB, _, hopsInB, _ := b.stats()
	if hopsIn[http.MethodPost] != toB[http.MethodPost] {
		t.Errorf("a received %d hopped POSTs, the client sent %d session POSTs to b", hopsIn[http.MethodPost], toB[http.MethodPost])
	}
	if got, want := b.obs.count(mcpsession.ResultForwarded), hopsIn[http.MethodPost]+hopsIn[http.MethodDelete]; got < want {
		t.Errorf("b counted %d forwarded hops, a received %d POST and DELETE hops", got, want)
	}
	if n := a.obs.count(mcpsession.ResultForwarded); n != 0 {
		t.Errorf("a, the owner, hopped %d times", n)
	}
	if len(hopsInB) != 0 {
		t.Errorf("b received hops %v; only a owns sessions", hopsInB)
	}
	if seenB != 0 {
		t.Errorf("b's MCP server saw %d requests; every request of a's session belongs on a", seenB)
	}
	if leaksA+leaksB != 0 {
		t.Errorf("the hop header reached the MCP server %d times", leaksA+leaksB)
	}
	if methodsA["initialize"] != 1 {
		t.Errorf("a's MCP server got %d initialize requests, want 1", methodsA["initialize"])
	}
	if seenA < 50 {
		t.Errorf("a's MCP server saw %d requests for 50 calls", seenA)
	}
	for _, auth := range hopAuth {
		if auth != "Bearer alice" {
			t.Fatalf("a hop arrived with Authorization %q, want the caller's own %q", auth, "Bearer alice")
		}
	}
	for _, r := range []string{mcpsession.ResultRefused, mcpsession.ResultOwnerGone, mcpsession.ResultReplayed} {
		if n := a.obs.count(r) + b.obs.count(r); n != 0 {
			t.Errorf("%d hops counted as %s", n, r)
		}
	}
}

func TestSSEStreamsThroughHop(t *testing.T) {
	ctx := testContext(t)
	a := startReplica(t, "a", replicaOptions{})
	b := startReplica(t, "b", replicaOptions{})
	// The gate tool sends a progress notification and finishes only once
	// the client has received it: it finishes only if the notification
	// streams through the hop ahead of the result.
	gate := make(chan struct{})
	var once sync.Once
	mcp.AddTool(a.server, &mcp.Tool{Name: "gate"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, struct{}, error) {
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1, Total: 2}); err != nil {
			return nil, struct{}{}, err
		}
		select {
		case <-gate:
			return nil, struct{}{}, nil
		case <-time.After(10 * time.Second):
			return nil, struct{}{}, errors.New("the client never got the progress notification: the hop buffered the stream")
		case <-ctx.Done():
			return nil, struct{}{}, ctx.Err()
		}
	})
	client := newSpreader("alice", a, b)
	client.setPick(func(n int) int { return min(n, 1) }) // initialize on a, the rest on b
	cs := connect(t, ctx, client, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { once.Do(func() { close(gate) }) },
	}, false)
	params := &mcp.CallToolParams{Name: "gate"}
	params.SetProgressToken("p1")
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("gate: %v", err)
	}
	if res.IsError {
		t.Fatalf("gate: %v", res.Content)
	}
	if n := b.obs.count(mcpsession.ResultForwarded); n == 0 {
		t.Fatal("the call did not hop")
	}
}

func TestRefusesUnknownSessions(t *testing.T) {
	clock := fakeclock.New(time.Now())
	a := startReplica(t, "a", replicaOptions{now: clock.Now, ttl: time.Hour})
	b := startReplica(t, "b", replicaOptions{now: clock.Now, ttl: time.Hour})
	good := rawSession(t, a, "alice")

	claims, err := newSealer(t, testSecret).Open(good, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := newSealer(t, otherSecret).Seal(claims)
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(good)
	tampered[len(tampered)/2] ^= 0x01
	if tampered[len(tampered)/2] == '-' || tampered[len(tampered)/2] == '_' {
		tampered[len(tampered)/2] = 'A'
	}

	// The good id works on both replicas.
	for _, rep := range []*replica{a, b} {
		if resp, body := rawPost(t, rep, "alice", good, toolsList, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("tools/list on %s: %d %s", rep.name, resp.StatusCode, body)
		}
	}

	refuse := func(t *testing.T, rep *replica, user, sid string, extra map[string]string) {
		t.Helper()
		seenA, _, _, hopsA, _ := a.stats()
		seenB, _, _, _, _ := b.stats()
		refused := rep.obs.count(mcpsession.ResultRefused)
		resp, body := rawPost(t, rep, user, sid, toolsList, extra)
		if resp.StatusCode != http.StatusNotFound || body != notFoundBody {
			t.Fatalf("status %d body %s, want 404 %s", resp.StatusCode, body, notFoundBody)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		if v := resp.Header.Get(mcpsession.SessionHeader); v != "" {
			t.Errorf("the refusal carries a session id %q", v)
		}
		if n := rep.obs.count(mcpsession.ResultRefused); n != refused+1 {
			t.Errorf("refused counted %d times, want 1", n-refused)
		}
		seenA2, _, _, hopsA2, _ := a.stats()
		seenB2, _, _, _, _ := b.stats()
		if seenA2 != seenA || seenB2 != seenB {
			t.Errorf("the MCP servers saw the refused request (a %d->%d, b %d->%d)", seenA, seenA2, seenB, seenB2)
		}
		if extra == nil && hopsA2[http.MethodPost] != hopsA[http.MethodPost] {
			t.Error("the refused request hopped to a")
		}
	}
	for _, rep := range []*replica{a, b} {
		t.Run("forged on "+rep.name, func(t *testing.T) { refuse(t, rep, "alice", "m1.Zm9yZ2VkLXNlc3Npb24taWQtMDEyMzQ1Njc4OWFiY2RlZg", nil) })
		t.Run("upstream-style on "+rep.name, func(t *testing.T) { refuse(t, rep, "alice", claims.Upstream, nil) })
		t.Run("tampered on "+rep.name, func(t *testing.T) { refuse(t, rep, "alice", string(tampered), nil) })
		t.Run("another secret on "+rep.name, func(t *testing.T) { refuse(t, rep, "alice", foreign, nil) })
		t.Run("another user on "+rep.name, func(t *testing.T) { refuse(t, rep, "bob", good, nil) })
	}
	t.Run("second hop", func(t *testing.T) {
		_, _, _, before, _ := a.stats()
		refuse(t, b, "alice", good, map[string]string{mcpsession.HopHeader: "1"})
		_, _, _, after, _ := a.stats()
		if after[http.MethodPost] != before[http.MethodPost] {
			t.Errorf("a received %d hops", after[http.MethodPost]-before[http.MethodPost])
		}
	})
	t.Run("hop header at the owner is served there", func(t *testing.T) {
		resp, body := rawPost(t, a, "alice", good, toolsList, map[string]string{mcpsession.HopHeader: "1"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
		if n := a.obs.count(mcpsession.ResultForwarded); n != 0 {
			t.Errorf("a hopped %d times: a hop went to itself", n)
		}
		if _, leaks, _, _, _ := a.stats(); leaks != 0 {
			t.Errorf("the hop header reached the MCP server %d times", leaks)
		}
	})
	t.Run("expired", func(t *testing.T) {
		clock.Advance(time.Hour)
		refuse(t, a, "alice", good, nil)
		refuse(t, b, "alice", good, nil)
	})
}

func TestOwnerGoneAnswers404(t *testing.T) {
	ctx := testContext(t)
	a := startReplica(t, "a", replicaOptions{})
	b := startReplica(t, "b", replicaOptions{})
	client := newSpreader("alice", a, b)
	client.setPick(func(n int) int { return min(n, 1) })
	cs := connect(t, ctx, client, nil, false)
	if err := echo(ctx, cs, "before"); err != nil {
		t.Fatalf("call through the hop: %v", err)
	}
	a.close()

	err := echo(ctx, cs, "after")
	if err == nil {
		t.Fatal("a call of a session whose owner is gone succeeded")
	}
	// What the Go SDK client (v1.8.0) does with the 404: it does not take
	// the body (id null) for a response to the call, so the call fails with
	// mcp.ErrSessionMissing and the session is closed for good (no DELETE
	// is sent); the application connects again, which starts a new session.
	t.Logf("Go SDK client, owner gone: %v", err)
	if !errors.Is(err, mcp.ErrSessionMissing) {
		t.Errorf("the call failed with %v, want mcp.ErrSessionMissing", err)
	}
	if err := echo(ctx, cs, "again"); err == nil {
		t.Error("the next call of the closed session succeeded")
	}
	if n := b.obs.count(mcpsession.ResultOwnerGone); n == 0 {
		t.Error("owner_gone not counted")
	}
	_ = cs.Close()

	// Recovery: a new session, which b owns.
	cs2 := connect(t, ctx, client, nil, false)
	for i := range 5 {
		if err := echo(ctx, cs2, fmt.Sprint("new ", i)); err != nil {
			t.Fatalf("call %d of the new session: %v", i, err)
		}
	}
}

func TestReplayMemory(t *testing.T) {
	store := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = store.Close() })
	ctx := testContext(t)
	a := startReplica(t, "a", replicaOptions{replay: store})
	b := startReplica(t, "b", replicaOptions{replay: store})
	client := newSpreader("alice", a, b)
	cs := connect(t, ctx, client, nil, false)
	for i := range 10 {
		if err := echo(ctx, cs, fmt.Sprint("before ", i)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	a.close()
	client.setPick(func(int) int { return 1 })

	// Ten calls at once, the first requests b gets for the gone owner's
	// session: one replay serves them all.
	errs := make(chan error, 10)
	for i := range 10 {
		go func() { errs <- echo(ctx, cs, fmt.Sprint("concurrent ", i)) }()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent call after the owner went away: %v", err)
		}
	}
	for i := range 10 {
		if err := echo(ctx, cs, fmt.Sprint("after ", i)); err != nil {
			t.Fatalf("call %d after the owner went away: %v", i, err)
		}
	}
	sid := cs.ID()
	for _, prefix := range []string{"mcp-replay:", "mcp-rebind:"} {
		if _, err := store.Get(ctx, storeKey(prefix, sid)); err != nil {
			t.Errorf("%s value of the session: %v", prefix, err)
		}
	}
	if err := cs.Close(); err != nil {
		t.Errorf("close (DELETE): %v", err)
	}
	// The DELETE ended the session: it is never replayed again.
	for _, prefix := range []string{"mcp-replay:", "mcp-rebind:"} {
		if _, err := store.Get(ctx, storeKey(prefix, sid)); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("%s value after DELETE: %v, want ErrNotFound", prefix, err)
		}
	}
	_, leaks, methods, _, _ := b.stats()
	if methods["initialize"] != 1 || methods["notifications/initialized"] != 1 {
		t.Errorf("b's MCP server got %d initialize and %d notifications/initialized, want 1 each", methods["initialize"], methods["notifications/initialized"])
	}
	if n := b.obs.count(mcpsession.ResultReplayed); n != 1 {
		t.Errorf("replayed counted %d times, want 1", n)
	}
	if leaks != 0 {
		t.Errorf("the hop header reached the MCP server %d times", leaks)
	}
}

func TestReplayRedisThreeReplicas(t *testing.T) {
	rs := redisserver.Start(t)
	store, err := session.NewRedis(session.RedisOptions{URL: rs.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ctx := testContext(t)
	a := startReplica(t, "a", replicaOptions{replay: store})
	b := startReplica(t, "b", replicaOptions{replay: store})
	c := startReplica(t, "c", replicaOptions{replay: store})
	client := newSpreader("alice", a, b, c)
	client.setPick(func(n int) int { // initialize on a, then b and c in turn
		if n == 0 {
			return 0
		}
		return 1 + n%2
	})
	// Without the standalone stream every request is the test's, so the
	// count of replays is exact (two replicas replaying the same session
	// at the same moment would each start one).
	cs := connect(t, ctx, client, nil, true)
	for i := range 4 {
		if err := echo(ctx, cs, fmt.Sprint("before ", i)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	a.close()
	for i := range 10 {
		if err := echo(ctx, cs, fmt.Sprint("after ", i)); err != nil {
			t.Fatalf("call %d after the owner went away: %v", i, err)
		}
	}
	_, _, mb, _, _ := b.stats()
	_, _, mc, hopsC, _ := c.stats()
	_, _, _, hopsB, _ := b.stats()
	if got := mb["initialize"] + mc["initialize"]; got != 1 {
		t.Errorf("%d replayed initialize requests on b and c, want 1", got)
	}
	if got := b.obs.count(mcpsession.ResultReplayed) + c.obs.count(mcpsession.ResultReplayed); got != 1 {
		t.Errorf("replayed counted %d times, want 1", got)
	}
	// The replica that did not replay found the rebinding and hopped to
	// the one that did.
	if hopsB[http.MethodPost]+hopsC[http.MethodPost] == 0 {
		t.Error("no request hopped to the replayed session's new owner")
	}
	if err := cs.Close(); err != nil {
		t.Errorf("close (DELETE): %v", err)
	}
}

// storeKey is the store key of a replay value: prefix and the hex SHA-256
// of the client's session id.
func storeKey(prefix, sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return prefix + hex.EncodeToString(sum[:])
}

func TestReplayWithoutStoredInitializeAnswers404(t *testing.T) {
	store := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = store.Close() })
	a := startReplica(t, "a", replicaOptions{replay: store})
	b := startReplica(t, "b", replicaOptions{replay: store})
	sid := rawSession(t, a, "alice")
	if _, err := store.Get(t.Context(), storeKey("mcp-replay:", sid)); err != nil {
		t.Fatalf("the initialize was not kept: %v", err)
	}
	if err := store.Delete(t.Context(), storeKey("mcp-replay:", sid)); err != nil {
		t.Fatal(err)
	}
	a.close()
	resp, body := rawPost(t, b, "alice", sid, toolsList, nil)
	if resp.StatusCode != http.StatusNotFound || body != notFoundBody {
		t.Fatalf("status %d body %s, want 404", resp.StatusCode, body)
	}
	if n := b.obs.count(mcpsession.ResultOwnerGone); n != 1 {
		t.Errorf("owner_gone counted %d times", n)
	}
	if seen, _, _, _, _ := b.stats(); seen != 0 {
		t.Errorf("b's MCP server saw %d requests", seen)
	}
}

func TestNoAdvertiseAddressNeverHops(t *testing.T) {
	a := startReplica(t, "a", replicaOptions{})
	sid := rawSession(t, a, "alice")
	obs := &countObserver{}
	rt, err := mcpsession.New(mcpsession.Options{Sealer: newSealer(t, testSecret), Issuer: testIssuer, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Int32
	lone := httptest.NewServer(rt.KeepCredentials(fakeAuthn(rt.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	})))))
	t.Cleanup(lone.Close)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, lone.URL+"/mcp", strings.NewReader(toolsList))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set(mcpsession.SessionHeader, sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || string(b) != notFoundBody {
		t.Fatalf("status %d body %s, want 404", resp.StatusCode, b)
	}
	if _, _, _, hopsIn, _ := a.stats(); len(hopsIn) != 0 {
		t.Errorf("a replica without an advertise address hopped: %v", hopsIn)
	}
	if reached.Load() != 0 || obs.count(mcpsession.ResultOwnerGone) != 1 {
		t.Errorf("reached %d, owner_gone %d", reached.Load(), obs.count(mcpsession.ResultOwnerGone))
	}
}

// A request the owner may have acted on is never run again elsewhere: when
// the owner's connection breaks after the request went out, the client
// gets 404, even with replay on.
func TestOwnerDyingMidRequestIsNotReplayed(t *testing.T) {
	store := session.NewMemory(session.MemoryOptions{})
	t.Cleanup(func() { _ = store.Close() })
	a := startReplica(t, "a", replicaOptions{replay: store})
	b := startReplica(t, "b", replicaOptions{replay: store})
	var runs atomic.Int32
	mcp.AddTool(a.server, &mcp.Tool{Name: "die"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, struct{}, error) {
		runs.Add(1)
		a.srv.CloseClientConnections()
		<-ctx.Done()
		return nil, struct{}{}, ctx.Err()
	})
	sid := rawSession(t, a, "alice")
	resp, body := rawPost(t, b, "alice", sid, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"die","arguments":{}}}`, nil)
	if resp.StatusCode != http.StatusNotFound || body != notFoundBody {
		t.Fatalf("status %d body %s, want 404", resp.StatusCode, body)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the tool ran %d times, want once", n)
	}
	if seen, _, _, _, _ := b.stats(); seen != 0 {
		t.Errorf("b's MCP server saw %d requests: the request was replayed", seen)
	}
	if n := b.obs.count(mcpsession.ResultOwnerGone); n != 1 {
		t.Errorf("owner_gone counted %d times", n)
	}
}
