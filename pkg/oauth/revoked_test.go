package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/oauth"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// revokedDelivery is how long the tests wait for a pub/sub delivery, a
// resubscription or a short reload period; room for a loaded CI machine.
const revokedDelivery = 10 * time.Second

// muteLog is a RevocationLog whose announcements never reach the listener
// while muted: the lost-message case.
type muteLog struct {
	*session.ExpiringSet
	muted   atomic.Bool
	dropped atomic.Int64
}

func (m *muteLog) Listen(ctx context.Context, l session.Listener) {
	m.ExpiringSet.Listen(ctx, mutedListener{Listener: l, m: m})
}

type mutedListener struct {
	session.Listener
	m *muteLog
}

func (l mutedListener) Message(p string) {
	if l.m.muted.Load() {
		l.m.dropped.Add(1)
		return
	}
	l.Listener.Message(p)
}

type countReloads struct {
	mu                sync.Mutex
	reloads, messages int
}

func (c *countReloads) CacheInvalidation(cache, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case "reload":
		c.reloads++
	case "message":
		c.messages++
	}
}

func (c *countReloads) get() (reloads, messages int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloads, c.messages
}

// revokedReplica is one replica's revoked set on its own Redis connection.
type revokedReplica struct {
	set *oauth.RevokedSet
	log *muteLog
	obs *countReloads
}

type revokedEnv struct {
	*env
	srv      *redisserver.Server
	replicas []*revokedReplica
}

// newRevokedEnv starts n façade replicas sharing a Redis, each with a
// revoked set reloading every reload, and waits until every set loaded.
func newRevokedEnv(t *testing.T, n int, reload time.Duration) *revokedEnv {
	srv := redisserver.Start(t)
	store, err := session.NewRedis(session.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	re := &revokedEnv{srv: srv}
	re.env = newEnv(t, store, n, func(o *oauth.Options) {
		r := re.newReplica(t, reload, nil)
		o.Revoked = r.set
		re.replicas = append(re.replicas, r)
	})
	for i, r := range re.replicas {
		re.start(t, r)
		if !waitfor.Poll(revokedDelivery, waitfor.Interval, func() bool { _, known := r.set.Revoked("", ""); return known }) {
			t.Fatalf("replica %d: revoked set never loaded", i)
		}
	}
	return re
}

func (re *revokedEnv) newReplica(t *testing.T, reload time.Duration, now func() time.Time) *revokedReplica {
	st, err := session.NewRedis(session.RedisOptions{URL: re.srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if now == nil {
		// newEnv is still building re.env when it asks for replicas.
		now = func() time.Time { return re.env.clock.Now() }
	}
	r := &revokedReplica{log: &muteLog{ExpiringSet: st.ExpiringSet("oauth:revoked")}, obs: &countReloads{}}
	r.set = oauth.NewRevokedSet(r.log, oauth.RevokedSetOptions{Reload: reload, Now: now, Observer: r.obs})
	return r
}

func (re *revokedEnv) start(t *testing.T, r *revokedReplica) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.set.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// family gets tokens for user and returns its access token's claims and
// its refresh token.
func (re *revokedEnv) family(t *testing.T, client, user string) (oauth.AccessClaims, string) {
	v := oauth2.GenerateVerifier()
	resp, m := re.token(codeForm(client, re.code(client, v, user), v))
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: %d %v", resp.StatusCode, m)
	}
	return verifyAccess(t, re.srvs[0], m["access_token"].(string)), m["refresh_token"].(string)
}

// revokeOnA revokes tok through replica A's /oauth2/revoke.
func (re *revokedEnv) revokeOnA(t *testing.T, client, tok string) {
	re.next = 0
	if resp, m := re.postForm(oauth.PathRevoke, url.Values{"token": {tok}, "client_id": {client}}); resp.StatusCode != 200 {
		t.Fatalf("revoke on A: %d %v", resp.StatusCode, m)
	}
}

func revoked(t *testing.T, s *oauth.Server, c oauth.AccessClaims) bool {
	t.Helper()
	r, err := s.IsRevoked(t.Context(), c.ID, c.FamilyID)
	if err != nil {
		t.Fatalf("IsRevoked: %v", err)
	}
	return r
}

// TestRevokedSetAcrossReplicas: a family revoked on A is refused on B
// through pub/sub (no reload can happen: the period is an hour), and by a
// replica C started afterwards at once, before and after its first load.
// Entries lapse once the family's access tokens cannot be valid any more.
func TestRevokedSetAcrossReplicas(t *testing.T) {
	re := newRevokedEnv(t, 2, time.Hour)
	client := re.registerPublic()
	at, rt := re.family(t, client, "alice")
	other, _ := re.family(t, client, "bob")
	b := re.srvs[1]
	if revoked(t, b, at) {
		t.Fatal("fresh family reads as revoked on B")
	}

	re.revokeOnA(t, client, rt)
	if !waitfor.Poll(revokedDelivery, waitfor.Interval, func() bool { return revoked(t, b, at) }) {
		t.Fatal("B still accepts a family revoked on A")
	}
	if _, msgs := re.replicas[1].obs.get(); msgs == 0 {
		t.Error("B learnt the revocation without a pub/sub message")
	}
	if revoked(t, b, other) {
		t.Error("another family reads as revoked on B")
	}

	// A single access token (jti) revoked on A.
	jtiAT, _ := re.family(t, client, "carol")
	v := oauth2.GenerateVerifier()
	resp, tok := re.token(codeForm(client, re.code(client, v, "erin"), v))
	if resp.StatusCode != 200 {
		t.Fatalf("exchange: %d %v", resp.StatusCode, tok)
	}
	re.revokeOnA(t, client, tok["access_token"].(string))
	erin := verifyAccess(t, re.srvs[0], tok["access_token"].(string))
	if !waitfor.Poll(revokedDelivery, waitfor.Interval, func() bool { return revoked(t, b, erin) }) {
		t.Fatal("B still accepts an access token revoked on A")
	}
	if revoked(t, b, jtiAT) {
		t.Error("an unrelated access token reads as revoked on B")
	}

	// Replica C starts after the revocations.
	c := re.newReplica(t, time.Hour, nil)
	cs, err := oauth.New(oauth.Options{Store: re.store, BaseURL: func(*http.Request) string { return issuer },
		Revoked: c.set, Now: re.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if !revoked(t, cs, at) || !revoked(t, cs, erin) {
		t.Fatal("fresh replica C accepts a revoked token before its set loaded; want the store lookup to refuse it")
	}
	re.start(t, c)
	if !waitfor.Poll(revokedDelivery, waitfor.Interval, func() bool { _, known := c.set.Revoked("", ""); return known }) {
		t.Fatal("C's revoked set never loaded")
	}
	if !revoked(t, cs, at) || !revoked(t, cs, erin) || revoked(t, cs, other) {
		t.Fatal("C after loading: want the revoked family and token refused, the other family accepted")
	}

	// The entries lapse when the tokens they deny have expired anyway.
	re.clock.Advance(oauth.DefaultAccessTokenTTL + 2*time.Minute)
	if r, known := re.replicas[1].set.Revoked(at.ID, at.FamilyID); r || !known {
		t.Errorf("B's entry for the family after its access tokens expired: revoked %v known %v; want dropped", r, known)
	}
}

// TestRevokedSetLostMessages: B hears nothing of A's revocation; the
// periodic reload refuses the token within one period.
func TestRevokedSetLostMessages(t *testing.T) {
	const period = 300 * time.Millisecond
	re := newRevokedEnv(t, 2, period)
	client := re.registerPublic()
	at, rt := re.family(t, client, "alice")
	b := re.replicas[1]
	b.log.muted.Store(true)
	r0, _ := b.obs.get()
	re.revokeOnA(t, client, rt)
	if !waitfor.Poll(revokedDelivery, waitfor.Interval, func() bool { return revoked(t, re.srvs[1], at) }) {
		t.Fatalf("B accepts a revoked family %s after A revoked it with B's messages lost; want refused within the reload period %s", revokedDelivery, period)
	}
	if r1, _ := b.obs.get(); r1 <= r0 || b.log.dropped.Load() == 0 {
		t.Fatalf("want the refusal to come from a reload after a dropped message: reloads %d→%d, dropped %d", r0, r1, b.log.dropped.Load())
	}
}

// TestRevokedSetResubscribeReloads: B's subscription is killed; when it is
// back B reloads, so what it missed meanwhile is refused without waiting
// for the (hour-long) reload period.
func TestRevokedSetResubscribeReloads(t *testing.T) {
	re := newRevokedEnv(t, 2, time.Hour)
	client := re.registerPublic()
	at, rt := re.family(t, client, "alice")
	b := re.replicas[1]
	b.log.muted.Store(true)
	re.revokeOnA(t, client, rt)
	if !waitfor.Poll(revokedDelivery, waitfor.Interval, func() bool { return b.log.dropped.Load() > 0 }) {
		t.Fatal("B's listener never saw the (muted) announcement")
	}
	if revoked(t, re.srvs[1], at) {
		t.Fatal("B refuses already: the message was not lost")
	}
	b.log.muted.Store(false)
	admin := redis.NewClient(&redis.Options{Addr: re.srv.Addr()})
	defer admin.Close()
	if err := admin.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if !waitfor.Poll(revokedDelivery, waitfor.Interval, func() bool { return revoked(t, re.srvs[1], at) }) {
		t.Fatal("B still accepts the revoked family after resubscribing")
	}
}
