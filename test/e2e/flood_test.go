package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

const floodRedirectURI = "http://127.0.0.1:45123/callback"

// registerFloodClient registers a public client and returns its ID.
func registerFloodClient(tb testing.TB, base string, header http.Header) (string, response) {
	tb.Helper()
	r := post(tb, http.DefaultClient, base+"/oauth2/register", "application/json",
		`{"redirect_uris":["`+floodRedirectURI+`"],"token_endpoint_auth_method":"none","client_name":"flood"}`, header)
	var m struct {
		ClientID string `json:"client_id"`
	}
	_ = json.Unmarshal(r.Body, &m)
	return m.ClientID, r
}

// redisUsage is the store's key count and memory.
func redisUsage(tb testing.TB, rdb *redis.Client) (keys, bytes int64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := rdb.DBSize(ctx).Result()
	if err != nil {
		tb.Fatal(err)
	}
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			if bytes, err = strconv.ParseInt(v, 10, 64); err != nil {
				tb.Fatal(err)
			}
			return keys, bytes
		}
	}
	tb.Fatalf("no used_memory in INFO memory")
	return 0, 0
}

// TestUnauthenticatedFloodIsBounded: requests that make the proxy store
// state for someone who has not logged in (browser navigations start a
// login, /oauth2/authorize stores a pending request) are limited per client
// address, so a flood from one address, spoofing X-Forwarded-For from a
// peer that is not a trusted proxy, stores at most the limit in Redis.
// Before the limit, 600 requests stored 600 entries with the longest values
// the proxy accepted.
func TestUnauthenticatedFloodIsBounded(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	rep := e.start(t, proxyOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })

	clientID, r := registerFloodClient(t, rep.URL, nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("register: %s", r)
	}
	keysBefore, memBefore := redisUsage(t, rdb)

	// Defaults: a burst of 60, then 60 a minute.
	const burst, perMinute = 60, 60.0
	const flood = 600
	longPath := "/app?q=" + strings.Repeat("p", 1900)
	state := strings.Repeat("s", 1024)
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	var accepted, limited int
	for i := range flood {
		if time.Now().After(deadline) {
			t.Fatalf("flood took over 2 minutes (%d requests sent)", i)
		}
		h := http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.%d.%d", i/250, i%250+1)}}
		target := rep.URL + longPath
		if i%2 == 0 {
			h.Set("Sec-Fetch-Mode", "navigate")
			h.Set("Accept", "text/html")
		} else {
			q := url.Values{
				"client_id": {clientID}, "redirect_uri": {floodRedirectURI}, "response_type": {"code"},
				"code_challenge":        {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
				"code_challenge_method": {"S256"}, "state": {state},
			}
			target = rep.URL + "/oauth2/authorize?" + q.Encode()
		}
		r := do(t, http.MethodGet, target, nil, h)
		switch r.Status {
		case http.StatusFound:
			accepted++
		case http.StatusTooManyRequests:
			limited++
			if r.Header.Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %s", r)
			}
		default:
			t.Fatalf("request %d: %s", i, r)
		}
	}
	elapsed := time.Since(start)
	keysAfter, memAfter := redisUsage(t, rdb)
	maxAccepted := burst + int(math.Ceil(elapsed.Minutes()*perMinute)) + 1
	t.Logf("%d requests in %v from one address: %d accepted, %d limited; Redis +%d keys, +%d KiB",
		flood, elapsed.Round(time.Millisecond), accepted, limited, keysAfter-keysBefore, (memAfter-memBefore)>>10)
	if accepted < burst || accepted > maxAccepted {
		t.Fatalf("%d accepted, want between %d and %d (burst plus refill)", accepted, burst, maxAccepted)
	}
	if added := keysAfter - keysBefore; added > int64(accepted) {
		t.Fatalf("Redis gained %d keys for %d accepted requests", added, accepted)
	}
	// Each stored entry is a few KiB at most (every field is capped).
	if grown := memAfter - memBefore; grown > int64(maxAccepted)*8<<10 {
		t.Fatalf("Redis used_memory grew by %d bytes for %d accepted requests", grown, accepted)
	}
}

// TestLimitsUseTrustedClientAddress: behind a trusted proxy every client
// arrives from the proxy's address, so the limits must count the client
// address it reports (the rightmost X-Forwarded-For entry that is not a
// trusted proxy), not the connection: one client reaching its limit must
// not lock out the others, and entries a client prepends do not count.
func TestLimitsUseTrustedClientAddress(t *testing.T) {
	e := newEnv(t, envOptions{})
	rep := e.start(t, proxyOptions{args: []string{"--trusted-proxies", "127.0.0.1/32", "--oauth-registrations-per-minute", "2"}})
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }

	for i := range 2 {
		if _, r := registerFloodClient(t, rep.URL, xff("203.0.113.1")); r.Status != http.StatusCreated {
			t.Fatalf("registration %d from client A: %s", i, r)
		}
	}
	if _, r := registerFloodClient(t, rep.URL, xff("198.51.100.99, 203.0.113.1")); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("client A over its limit (with a spoofed entry prepended): %s, want 429 with Retry-After", r)
	}
	if _, r := registerFloodClient(t, rep.URL, xff("203.0.113.2")); r.Status != http.StatusCreated {
		t.Fatalf("client B behind the same proxy: %s, want 201", r)
	}
}
