package fault

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
)

// refreshRaceAnswer bounds every request of the race: a request that waits
// for another replica's refresh is answered within it (the proxy's own
// refresh wait is 10s).
const refreshRaceAnswer = 15 * time.Second

// Three replicas sharing Redis, one session whose access token is about to
// expire, 50 concurrent cookie requests spread over the replicas.
//
// Promises (DESIGN.md, "Failure behaviour"): exactly one refresh reaches
// the provider (it rotates refresh tokens, so a second one would fail or
// fork the session), every request succeeds (200), each within
// refreshRaceAnswer, and the session keeps working afterwards.
func TestRefreshRaceThreeReplicas(t *testing.T) {
	e := newEnv(t, redisserver.WithAppendOnly())
	// One clock for every replica: the provider's tokens live 5m and are
	// refreshed within 1m of expiry (the defaults), so moving the clock
	// 4m30s puts the session at the edge of expiry on all replicas at once.
	// The new token's expiry is computed from this clock too.
	clock := fakeclock.New(time.Now())
	o := replicaOptions{now: clock.Now, args: []string{"--oidc-scopes", offlineScopes}}
	replicas := []*replica{e.start(t, "A", o), e.start(t, "B", o), e.start(t, "C", o)}
	cookie := e.login(t, replicas[0], replicas[2])

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, r := range replicas {
		if res := r.get(ctx, "/data", credential{cookie: cookie}, jsonAPI); res.Status != http.StatusOK {
			t.Fatalf("before the race on %s: %s", r.name, res)
		}
	}
	before := e.idp.RefreshRequests()
	clock.Advance(4*time.Minute + 30*time.Second)

	const requests = 50
	start := make(chan struct{})
	results := make([]result, requests)
	var wg sync.WaitGroup
	for i := range requests {
		r := replicas[i%len(replicas)]
		wg.Go(func() {
			<-start
			results[i] = r.get(ctx, "/data", credential{cookie: cookie}, jsonAPI)
		})
	}
	close(start)
	wg.Wait()

	var slowest time.Duration
	for i, res := range results {
		slowest = max(slowest, res.Took)
		if res.Status != http.StatusOK {
			t.Errorf("request %d on %s = %s; promised 200 for every request of the race", i, replicas[i%len(replicas)].name, res)
		}
		if res.Took > refreshRaceAnswer {
			t.Errorf("request %d took %s; promised within %s", i, res.Took, refreshRaceAnswer)
		}
	}
	got := e.idp.RefreshRequests() - before
	t.Logf("measured: %d refresh request(s) at the provider for %d concurrent requests on 3 replicas; slowest request %s (bound %s)",
		got, requests, slowest.Round(time.Millisecond), refreshRaceAnswer)
	if got != 1 {
		t.Fatalf("refresh requests at the provider = %d; promised exactly 1", got)
	}
	// The rotated refresh token is the session's now: the next expiry
	// refreshes once more, and the session keeps working everywhere.
	clock.Advance(4*time.Minute + 30*time.Second)
	for _, r := range replicas {
		if res := r.get(ctx, "/data", credential{cookie: cookie}, jsonAPI); res.Status != http.StatusOK {
			t.Fatalf("after the race on %s: %s", r.name, res)
		}
	}
	if got := e.idp.RefreshRequests() - before; got != 2 {
		t.Fatalf("refresh requests after the second expiry = %d, want 2 (one per expiry)", got)
	}
}
