// Package sessiontest is the conformance suite every session.Store
// implementation must pass, so the memory and Redis stores cannot drift
// apart in the rules callers rely on (what ErrNotFound means, how expiry
// and per-user limits behave, what is single-use and exclusive). Run takes
// a whole store (a backend, or a decorator of all of it such as the
// metrics one); RunSessions takes anything that implements only
// session.Sessions, such as a decorator of the session methods.
//
// Expiry is tested with short real TTLs and polling with a deadline, never
// with fake clocks, because Redis expires keys on its own clock.
package sessiontest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// Short TTLs used for expiry tests: long enough to be observed alive under
// -race on a loaded 2-core machine, short enough to keep the suite quick.
const (
	shortTTL    = 250 * time.Millisecond
	waitTimeout = 10 * time.Second
	pollEvery   = waitfor.Interval
	concurrency = 20
	clockSlack  = 5 * time.Millisecond
)

// Run runs the whole suite against a session.Store. newStore must return a
// fresh, empty store (or one with a namespace of its own) for each subtest
// and register its Close with t.Cleanup; subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	RunSessions(t, func(t *testing.T) session.Sessions { return newStore(t) })
	tests := []struct {
		name string
		fn   func(t *testing.T, s session.Store)
	}{
		// Values and single-use values share one key space, so their tests
		// need both halves.
		{"PutTakeOnce", testPutTakeOnce},
		{"OnceExpires", testOnceExpires},
		{"OnceConcurrentTake", testOnceConcurrentTake},
		{"PutGetDelete", testPutGetDelete},
		{"AnyExists", testAnyExists},
		{"ValueExpires", testValueExpires},
		{"TryLockExclusive", testTryLockExclusive},
		{"TryLockConcurrent", testTryLockConcurrent},
		{"LockExtend", testLockExtend},
		{"LockExpiry", testLockExpiry},
		{"Ping", testPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// RunSessions runs the session-record part of the suite (create, read,
// update, delete, expiry, per-user limits) against a session.Sessions, so a
// decorator over the session methods alone (a cache, instrumentation) is
// held to the same rules as the stores. newSessions has Run's contract.
func RunSessions(t *testing.T, newSessions func(t *testing.T) session.Sessions) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s session.Sessions)
	}{
		{"CreateGetRoundTrip", testCreateGet},
		{"GetMissing", testGetMissing},
		{"CreateRejectsInvalid", testCreateRejectsInvalid},
		{"CreateSameIDReplaces", testCreateSameIDReplaces},
		{"Update", testUpdate},
		{"UpdateMissing", testUpdateMissing},
		{"Delete", testDelete},
		{"AbsoluteExpiry", testAbsoluteExpiry},
		{"IdleTimeoutExpires", testIdleExpires},
		{"IdleTimeoutSlidesOnGet", testIdleSlides},
		{"IdleCappedByAbsolute", testIdleCappedByAbsolute},
		{"UpdateAfterExpiry", testUpdateAfterExpiry},
		{"LimitEvictOldest", testLimitEvictOldest},
		{"LimitRefuse", testLimitRefuse},
		{"LimitUnlimited", testLimitUnlimited},
		{"LimitIgnoresExpired", testLimitIgnoresExpired},
		{"LimitPerUser", testLimitPerUser},
		{"LimitConcurrentEvict", testLimitConcurrentEvict},
		{"LimitConcurrentRefuse", testLimitConcurrentRefuse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newSessions(t))
		})
	}
}

// randomHex returns n random bytes hex-encoded, shaped like the IDs and user
// keys real callers pass (session.Ticket.ID, session.UserKey).
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

func newRecord(t *testing.T, userKey string, ttl time.Duration) session.Record {
	t.Helper()
	now := time.Now()
	return session.Record{
		ID:        randomHex(t, 32),
		UserKey:   userKey,
		Data:      []byte("sealed:" + randomHex(t, 8) + "\x00\xff"),
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	}
}

func mustCreate(t *testing.T, s session.Sessions, rec session.Record, limit session.Limit) []string {
	t.Helper()
	evicted, err := s.CreateSession(t.Context(), rec, limit)
	if err != nil {
		t.Fatalf("CreateSession(%s): %v", rec.ID, err)
	}
	return evicted
}

// errStalled marks an attempt of an expiry scenario during which a short
// TTL ran out while the test was not running (a loaded CI machine can stop
// a process for longer than 250 ms): the scenario cannot then tell expiry
// from a bug, so it is run again.
var errStalled = errors.New("stalled past a short TTL")

// stallAttempts bounds how often a stalled scenario is run.
const stallAttempts = 3

// stallTolerant runs an expiry scenario until it returns nil, at most
// stallAttempts times, and only again when it returned errStalled. A
// scenario fails anything else itself, at once; it reports a stall only
// when the time that passed could explain what it saw.
func stallTolerant(t *testing.T, scenario func() error) {
	t.Helper()
	for i := 1; ; i++ {
		err := scenario()
		switch {
		case err == nil:
			return
		case !errors.Is(err, errStalled) || i == stallAttempts:
			t.Fatalf("attempt %d of %d: %v", i, stallAttempts, err)
		}
		t.Logf("attempt %d of %d: %v; running the scenario again", i, stallAttempts, err)
	}
}

// overdue returns errStalled when budget or more passed since start.
func overdue(what string, start time.Time, budget time.Duration) error {
	if d := time.Since(start); d >= budget {
		return fmt.Errorf("%w: %s took %s of a %s budget", errStalled, what, d.Round(time.Millisecond), budget)
	}
	return nil
}

// createShort creates a record with a short absolute expiry; a failure
// after its ExpiresAt has come is a stall.
func createShort(t *testing.T, s session.Sessions, rec session.Record, limit session.Limit) error {
	t.Helper()
	if _, err := s.CreateSession(t.Context(), rec, limit); err != nil {
		if stall := overdue("creating the session", rec.CreatedAt, rec.ExpiresAt.Sub(rec.CreatedAt)-clockSlack); stall != nil {
			return stall
		}
		t.Fatalf("CreateSession(%s): %v", rec.ID, err)
	}
	return nil
}

func mustGet(t *testing.T, s session.Sessions, id string) session.Record {
	t.Helper()
	rec, err := s.GetSession(t.Context(), id)
	if err != nil {
		t.Fatalf("GetSession(%s): %v", id, err)
	}
	return rec
}

// exists reports whether id is readable; any error but ErrNotFound fails.
func exists(t *testing.T, s session.Sessions, id string) bool {
	t.Helper()
	_, err := s.GetSession(t.Context(), id)
	switch {
	case err == nil:
		return true
	case errors.Is(err, session.ErrNotFound):
		return false
	default:
		t.Fatalf("GetSession(%s): unexpected error %v", id, err)
		return false
	}
}

func requireNotFound(t *testing.T, err error, op string) {
	t.Helper()
	if !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("%s: error = %v, want ErrNotFound", op, err)
	}
}

// sameRecord compares at millisecond precision, what Redis stores.
func sameRecord(t *testing.T, got, want session.Record) {
	t.Helper()
	if got.ID != want.ID || got.UserKey != want.UserKey || !bytes.Equal(got.Data, want.Data) ||
		got.CreatedAt.UnixMilli() != want.CreatedAt.UnixMilli() ||
		got.ExpiresAt.UnixMilli() != want.ExpiresAt.UnixMilli() ||
		got.IdleTimeout != want.IdleTimeout {
		t.Fatalf("record mismatch:\n got  %s\n want %s", describe(got), describe(want))
	}
}

func describe(r session.Record) string {
	return fmt.Sprintf("{ID:%s UserKey:%s Data:%q CreatedAt:%d ExpiresAt:%d Idle:%s}",
		r.ID, r.UserKey, r.Data, r.CreatedAt.UnixMilli(), r.ExpiresAt.UnixMilli(), r.IdleTimeout)
}

func testCreateGet(t *testing.T, s session.Sessions) {
	rec := newRecord(t, randomHex(t, 32), time.Hour)
	rec.IdleTimeout = 30 * time.Minute
	if ev := mustCreate(t, s, rec, session.Limit{}); len(ev) != 0 {
		t.Fatalf("evicted = %v from an empty store", ev)
	}
	sameRecord(t, mustGet(t, s, rec.ID), rec)
	// A second read sees the same record.
	sameRecord(t, mustGet(t, s, rec.ID), rec)
}

func testGetMissing(t *testing.T, s session.Sessions) {
	_, err := s.GetSession(t.Context(), randomHex(t, 32))
	requireNotFound(t, err, "GetSession(missing)")
}

func testCreateRejectsInvalid(t *testing.T, s session.Sessions) {
	user := randomHex(t, 32)
	tests := []struct {
		name   string
		mutate func(*session.Record)
		limit  session.Limit
	}{
		{"expired", func(r *session.Record) { r.ExpiresAt = time.Now().Add(-time.Second) }, session.Limit{}},
		{"no expiry", func(r *session.Record) { r.ExpiresAt = time.Time{} }, session.Limit{}},
		{"empty ID", func(r *session.Record) { r.ID = "" }, session.Limit{}},
		{"empty user", func(r *session.Record) { r.UserKey = "" }, session.Limit{}},
		{"brace in user", func(r *session.Record) { r.UserKey = "a}b" }, session.Limit{}},
		{"negative idle", func(r *session.Record) { r.IdleTimeout = -time.Second }, session.Limit{}},
		{"unknown policy", func(*session.Record) {}, session.Limit{Max: 1, Policy: "random"}},
	}
	for _, tt := range tests {
		rec := newRecord(t, user, time.Hour)
		tt.mutate(&rec)
		_, err := s.CreateSession(t.Context(), rec, tt.limit)
		if err == nil || errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrLimitReached) {
			t.Errorf("%s: CreateSession error = %v, want an invalid-argument error", tt.name, err)
		}
		if rec.ID != "" {
			if _, err := s.GetSession(t.Context(), rec.ID); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s: rejected record is readable (err %v)", tt.name, err)
			}
		}
	}
}

func testCreateSameIDReplaces(t *testing.T, s session.Sessions) {
	rec := newRecord(t, randomHex(t, 32), time.Hour)
	mustCreate(t, s, rec, session.Limit{Max: 1, Policy: session.LimitRefuse})
	rec.Data = []byte("second")
	if ev := mustCreate(t, s, rec, session.Limit{Max: 1, Policy: session.LimitRefuse}); len(ev) != 0 {
		t.Fatalf("re-creating the same ID evicted %v", ev)
	}
	sameRecord(t, mustGet(t, s, rec.ID), rec)
}

func testUpdate(t *testing.T, s session.Sessions) {
	rec := newRecord(t, randomHex(t, 32), time.Hour)
	mustCreate(t, s, rec, session.Limit{})
	upd := session.Record{
		ID:          rec.ID,
		Data:        []byte("refreshed tokens"),
		ExpiresAt:   rec.ExpiresAt.Add(time.Hour),
		IdleTimeout: 10 * time.Minute,
	}
	if err := s.UpdateSession(t.Context(), upd); err != nil {
		t.Fatalf("UpdateSession: %v", err)
	}
	want := rec
	want.Data, want.ExpiresAt, want.IdleTimeout = upd.Data, upd.ExpiresAt, upd.IdleTimeout
	sameRecord(t, mustGet(t, s, rec.ID), want)
}

func testUpdateMissing(t *testing.T, s session.Sessions) {
	rec := newRecord(t, randomHex(t, 32), time.Hour)
	requireNotFound(t, s.UpdateSession(t.Context(), rec), "UpdateSession(missing)")
	// Update must not create.
	requireNotFound(t, func() error { _, err := s.GetSession(t.Context(), rec.ID); return err }(), "GetSession after failed update")
}

func testDelete(t *testing.T, s session.Sessions) {
	user := randomHex(t, 32)
	limit := session.Limit{Max: 2, Policy: session.LimitRefuse}
	a, b := newRecord(t, user, time.Hour), newRecord(t, user, time.Hour)
	mustCreate(t, s, a, limit)
	mustCreate(t, s, b, limit)
	if err := s.DeleteSession(t.Context(), a.ID); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	if exists(t, s, a.ID) {
		t.Fatal("deleted session still readable")
	}
	if !exists(t, s, b.ID) {
		t.Fatal("deleting one session removed another")
	}
	// The user index no longer counts the deleted session.
	mustCreate(t, s, newRecord(t, user, time.Hour), limit)
	for _, id := range []string{a.ID, randomHex(t, 32)} {
		if err := s.DeleteSession(t.Context(), id); err != nil {
			t.Fatalf("DeleteSession(missing) = %v, want nil", err)
		}
	}
}

func testAbsoluteExpiry(t *testing.T, s session.Sessions) {
	stallTolerant(t, func() error {
		rec := newRecord(t, randomHex(t, 32), shortTTL)
		if err := createShort(t, s, rec, session.Limit{}); err != nil {
			return err
		}
		if !exists(t, s, rec.ID) {
			if stall := overdue("creating and reading the session", rec.CreatedAt, shortTTL-clockSlack); stall != nil {
				return stall
			}
			t.Fatal("session missing right after create")
		}
		waitfor.True(t, waitTimeout, "absolute expiry", func() bool { return !exists(t, s, rec.ID) })
		if now := time.Now(); now.Before(rec.ExpiresAt.Add(-5 * time.Millisecond)) {
			t.Fatalf("session expired %s before ExpiresAt", rec.ExpiresAt.Sub(now))
		}
		return nil
	})
}

// waitPast waits until a probe session, created now with an absolute
// (non-sliding) expiry of ttl, has expired: reading the session under test
// would slide its idle timeout, reading the probe does not.
func waitPast(t *testing.T, s session.Sessions, ttl time.Duration) {
	t.Helper()
	// Redis TTLs have millisecond granularity and a key lives through the
	// millisecond it expires in; the slack covers that, nothing more.
	probe := newRecord(t, randomHex(t, 32), ttl+clockSlack)
	mustCreate(t, s, probe, session.Limit{})
	waitfor.True(t, waitTimeout, "probe expiry", func() bool { return !exists(t, s, probe.ID) })
}

func testIdleExpires(t *testing.T, s session.Sessions) {
	rec := newRecord(t, randomHex(t, 32), time.Hour)
	rec.IdleTimeout = shortTTL
	mustCreate(t, s, rec, session.Limit{})
	waitPast(t, s, shortTTL)
	if exists(t, s, rec.ID) {
		t.Fatal("session outlived its idle timeout")
	}
}

func testIdleSlides(t *testing.T, s session.Sessions) {
	const idle = 600 * time.Millisecond
	stallTolerant(t, func() error {
		rec := newRecord(t, randomHex(t, 32), time.Hour)
		rec.IdleTimeout = idle
		// prev is when the last write or read was sent: the earliest
		// moment the store can have slid the idle timeout to.
		prev := time.Now()
		mustCreate(t, s, rec, session.Limit{})
		// Keep reading for 2.5 idle periods: only sliding keeps it alive.
		tick := time.NewTicker(idle / 10)
		defer tick.Stop()
		start := time.Now()
		for time.Since(start) < idle*5/2 {
			<-tick.C
			sent := time.Now()
			got, err := s.GetSession(t.Context(), rec.ID)
			if errors.Is(err, session.ErrNotFound) {
				if stall := overdue("the time between two reads", prev, idle-clockSlack); stall != nil {
					return stall
				}
			}
			if err != nil {
				t.Fatalf("GetSession %s after the previous read (idle timeout %s): %v", time.Since(prev).Round(time.Millisecond), idle, err)
			}
			if got.IdleTimeout != idle {
				t.Fatalf("IdleTimeout = %s, want %s", got.IdleTimeout, idle)
			}
			prev = sent
		}
		// Then stop reading: it expires one idle period after the last read.
		waitPast(t, s, idle)
		if exists(t, s, rec.ID) {
			t.Fatal("session outlived its idle timeout after the last read")
		}
		return nil
	})
}

func testIdleCappedByAbsolute(t *testing.T, s session.Sessions) {
	stallTolerant(t, func() error {
		rec := newRecord(t, randomHex(t, 32), shortTTL)
		rec.IdleTimeout = time.Hour
		if err := createShort(t, s, rec, session.Limit{}); err != nil {
			return err
		}
		// Reading keeps sliding the idle timeout, but never past ExpiresAt.
		waitfor.True(t, waitTimeout, "absolute expiry despite reads", func() bool { return !exists(t, s, rec.ID) })
		return nil
	})
}

func testUpdateAfterExpiry(t *testing.T, s session.Sessions) {
	rec := newRecord(t, randomHex(t, 32), shortTTL)
	stallTolerant(t, func() error {
		rec = newRecord(t, randomHex(t, 32), shortTTL)
		return createShort(t, s, rec, session.Limit{})
	})
	waitfor.True(t, waitTimeout, "expiry", func() bool { return !exists(t, s, rec.ID) })
	rec.ExpiresAt = time.Now().Add(time.Hour)
	requireNotFound(t, s.UpdateSession(t.Context(), rec), "UpdateSession(expired)")
	if exists(t, s, rec.ID) {
		t.Fatal("UpdateSession resurrected an expired session")
	}
}

// agedRecords returns n records of one user created one second apart,
// oldest first.
func agedRecords(t *testing.T, user string, n int) []session.Record {
	base := time.Now().Add(-time.Hour)
	recs := make([]session.Record, n)
	for i := range recs {
		recs[i] = newRecord(t, user, time.Hour)
		recs[i].CreatedAt = base.Add(time.Duration(i) * time.Second)
	}
	return recs
}

func testLimitEvictOldest(t *testing.T, s session.Sessions) {
	user := randomHex(t, 32)
	recs := agedRecords(t, user, 5)
	limit := session.Limit{Max: 3, Policy: session.LimitEvictOldest}
	// Create out of age order: eviction follows CreatedAt, not insertion.
	for _, i := range []int{1, 0, 2} {
		if ev := mustCreate(t, s, recs[i], limit); len(ev) != 0 {
			t.Fatalf("evicted %v below the limit", ev)
		}
	}
	if ev := mustCreate(t, s, recs[3], limit); !slices.Equal(ev, []string{recs[0].ID}) {
		t.Fatalf("evicted = %v, want the oldest [%s]", ev, recs[0].ID)
	}
	// Lowering the limit evicts several, oldest first; the default policy
	// (empty) is evict-oldest.
	if ev := mustCreate(t, s, recs[4], session.Limit{Max: 2}); !slices.Equal(ev, []string{recs[1].ID, recs[2].ID}) {
		t.Fatalf("evicted = %v, want [%s %s]", ev, recs[1].ID, recs[2].ID)
	}
	for i, want := range []bool{false, false, false, true, true} {
		if got := exists(t, s, recs[i].ID); got != want {
			t.Errorf("session %d exists = %v, want %v", i, got, want)
		}
	}
}

func testLimitRefuse(t *testing.T, s session.Sessions) {
	user := randomHex(t, 32)
	recs := agedRecords(t, user, 3)
	limit := session.Limit{Max: 2, Policy: session.LimitRefuse}
	mustCreate(t, s, recs[0], limit)
	mustCreate(t, s, recs[1], limit)
	ev, err := s.CreateSession(t.Context(), recs[2], limit)
	if !errors.Is(err, session.ErrLimitReached) {
		t.Fatalf("CreateSession over the limit: evicted %v, error %v, want ErrLimitReached", ev, err)
	}
	if exists(t, s, recs[2].ID) {
		t.Fatal("refused session was stored")
	}
	if !exists(t, s, recs[0].ID) || !exists(t, s, recs[1].ID) {
		t.Fatal("refusing a session removed an existing one")
	}
	if err := s.DeleteSession(t.Context(), recs[0].ID); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, recs[2], limit)
}

func testLimitUnlimited(t *testing.T, s session.Sessions) {
	user := randomHex(t, 32)
	recs := agedRecords(t, user, 10)
	for _, r := range recs {
		if ev := mustCreate(t, s, r, session.Limit{Max: 0, Policy: session.LimitRefuse}); len(ev) != 0 {
			t.Fatalf("unlimited store evicted %v", ev)
		}
	}
	for i, r := range recs {
		if !exists(t, s, r.ID) {
			t.Fatalf("session %d missing without a limit", i)
		}
	}
}

func testLimitIgnoresExpired(t *testing.T, s session.Sessions) {
	user := randomHex(t, 32)
	limit := session.Limit{Max: 2, Policy: session.LimitRefuse}
	short := newRecord(t, user, shortTTL)
	stallTolerant(t, func() error {
		short = newRecord(t, user, shortTTL)
		return createShort(t, s, short, limit)
	})
	mustCreate(t, s, newRecord(t, user, time.Hour), limit)
	waitfor.True(t, waitTimeout, "expiry of the short session", func() bool { return !exists(t, s, short.ID) })
	mustCreate(t, s, newRecord(t, user, time.Hour), limit)
}

func testLimitPerUser(t *testing.T, s session.Sessions) {
	alice, bob := randomHex(t, 32), randomHex(t, 32)
	limit := session.Limit{Max: 2, Policy: session.LimitEvictOldest}
	a := agedRecords(t, alice, 2)
	for _, r := range a {
		mustCreate(t, s, r, limit)
	}
	for _, r := range agedRecords(t, bob, 2) {
		if ev := mustCreate(t, s, r, limit); len(ev) != 0 {
			t.Fatalf("bob's session evicted %v", ev)
		}
	}
	for _, r := range a {
		if !exists(t, s, r.ID) {
			t.Fatal("another user's sessions counted against alice's limit")
		}
	}
}

func testLimitConcurrentEvict(t *testing.T, s session.Sessions) {
	user := randomHex(t, 32)
	limit := session.Limit{Max: 3, Policy: session.LimitEvictOldest}
	recs := make([]session.Record, concurrency)
	for i := range recs {
		recs[i] = newRecord(t, user, time.Hour)
	}
	evicted := make([][]string, concurrency)
	errs := make([]error, concurrency)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range recs {
		wg.Go(func() {
			<-start
			evicted[i], errs[i] = s.CreateSession(context.Background(), recs[i], limit)
		})
	}
	close(start)
	wg.Wait()
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CreateSession %d: %v", i, err)
		}
		for _, id := range evicted[i] {
			if seen[id] {
				t.Fatalf("session %s evicted twice", id)
			}
			seen[id] = true
		}
	}
	live := 0
	for _, r := range recs {
		if exists(t, s, r.ID) {
			live++
			if seen[r.ID] {
				t.Fatalf("session %s reported evicted but still readable", r.ID)
			}
		}
	}
	if live != limit.Max || len(seen) != concurrency-limit.Max {
		t.Fatalf("%d live and %d evicted sessions, want %d and %d", live, len(seen), limit.Max, concurrency-limit.Max)
	}
}

func testLimitConcurrentRefuse(t *testing.T, s session.Sessions) {
	user := randomHex(t, 32)
	limit := session.Limit{Max: 3, Policy: session.LimitRefuse}
	errs := make([]error, concurrency)
	recs := make([]session.Record, concurrency)
	for i := range recs {
		recs[i] = newRecord(t, user, time.Hour)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range recs {
		wg.Go(func() {
			<-start
			_, errs[i] = s.CreateSession(context.Background(), recs[i], limit)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			if !exists(t, s, recs[i].ID) {
				t.Fatalf("accepted session %d not readable", i)
			}
		case errors.Is(err, session.ErrLimitReached):
			if exists(t, s, recs[i].ID) {
				t.Fatalf("refused session %d readable", i)
			}
		default:
			t.Fatalf("CreateSession %d: %v", i, err)
		}
	}
	if ok != limit.Max {
		t.Fatalf("%d sessions accepted, want %d", ok, limit.Max)
	}
}

func testPutTakeOnce(t *testing.T, s session.Store) {
	key := "state:" + randomHex(t, 16)
	value := []byte("verifier\x00\xff")
	if err := s.PutOnce(t.Context(), key, value, time.Minute); err != nil {
		t.Fatalf("PutOnce: %v", err)
	}
	got, err := s.TakeOnce(t.Context(), key)
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("TakeOnce = %q, %v; want %q", got, err, value)
	}
	_, err = s.TakeOnce(t.Context(), key)
	requireNotFound(t, err, "second TakeOnce")
	_, err = s.TakeOnce(t.Context(), "state:"+randomHex(t, 16))
	requireNotFound(t, err, "TakeOnce(missing)")
	if err := s.PutOnce(t.Context(), key, value, 0); err == nil {
		t.Fatal("PutOnce with zero ttl succeeded")
	}
}

func testPutGetDelete(t *testing.T, s session.Store) {
	key := "client:" + randomHex(t, 16)
	_, err := s.Get(t.Context(), key)
	requireNotFound(t, err, "Get(missing)")
	if err := s.Put(t.Context(), key, []byte("v1"), time.Minute); err != nil {
		t.Fatalf("Put: %v", err)
	}
	for i := range 2 { // Get does not consume
		got, err := s.Get(t.Context(), key)
		if err != nil || string(got) != "v1" {
			t.Fatalf("Get #%d = %q, %v; want v1", i, got, err)
		}
	}
	if err := s.Put(t.Context(), key, []byte("v2"), time.Minute); err != nil {
		t.Fatalf("Put (overwrite): %v", err)
	}
	if got, err := s.Get(t.Context(), key); err != nil || string(got) != "v2" {
		t.Fatalf("Get after overwrite = %q, %v; want v2", got, err)
	}
	// Put and PutOnce share a key space: TakeOnce consumes a Put value.
	if got, err := s.TakeOnce(t.Context(), key); err != nil || string(got) != "v2" {
		t.Fatalf("TakeOnce of a Put value = %q, %v; want v2", got, err)
	}
	_, err = s.Get(t.Context(), key)
	requireNotFound(t, err, "Get after TakeOnce")
	if err := s.Put(t.Context(), key, []byte("v3"), time.Minute); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := s.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = s.Get(t.Context(), key)
	requireNotFound(t, err, "Get after Delete")
	if err := s.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete(missing) = %v, want nil", err)
	}
	if err := s.Put(t.Context(), key, []byte("v"), 0); err == nil {
		t.Fatal("Put with zero ttl succeeded")
	}
}

func testAnyExists(t *testing.T, s session.Store) {
	a, b, once := "marker:"+randomHex(t, 16), "marker:"+randomHex(t, 16), "marker:"+randomHex(t, 16)
	check := func(want bool, keys ...string) {
		t.Helper()
		got, err := s.AnyExists(t.Context(), keys...)
		if err != nil || got != want {
			t.Fatalf("AnyExists(%d keys) = %v, %v; want %v", len(keys), got, err, want)
		}
	}
	check(false)
	check(false, a, b)
	if err := s.Put(t.Context(), b, []byte{1}, time.Minute); err != nil {
		t.Fatalf("Put: %v", err)
	}
	check(true, a, b)
	check(true, b, a)
	check(false, a)
	if err := s.PutOnce(t.Context(), once, []byte{1}, time.Minute); err != nil {
		t.Fatalf("PutOnce: %v", err)
	}
	check(true, once)
	if _, err := s.TakeOnce(t.Context(), once); err != nil {
		t.Fatalf("TakeOnce: %v", err)
	}
	check(false, once, a)
	if err := s.Delete(t.Context(), b); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	check(false, a, b)
	if err := s.Put(t.Context(), a, []byte{1}, shortTTL); err != nil {
		t.Fatalf("Put: %v", err)
	}
	waitfor.True(t, waitTimeout, "marker expiry", func() bool {
		ok, err := s.AnyExists(t.Context(), a, b)
		if err != nil {
			t.Fatalf("AnyExists: %v", err)
		}
		return !ok
	})
}

func testValueExpires(t *testing.T, s session.Store) {
	key := "consent:" + randomHex(t, 16)
	if err := s.Put(t.Context(), key, []byte("v"), shortTTL); err != nil {
		t.Fatalf("Put: %v", err)
	}
	waitfor.True(t, waitTimeout, "value expiry", func() bool {
		_, err := s.Get(t.Context(), key)
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Get: %v", err)
		}
		return err != nil
	})
}

func testOnceExpires(t *testing.T, s session.Store) {
	key := "state:" + randomHex(t, 16)
	if err := s.PutOnce(t.Context(), key, []byte("v"), shortTTL); err != nil {
		t.Fatalf("PutOnce: %v", err)
	}
	// TakeOnce consumes, so observe expiry through probes stored after the
	// key with the same ttl: once a probe has expired, so has the key.
	const probes = int(waitTimeout / pollEvery)
	for i := range probes {
		if err := s.PutOnce(t.Context(), fmt.Sprintf("%s:probe:%d", key, i), []byte("p"), shortTTL); err != nil {
			t.Fatalf("PutOnce probe: %v", err)
		}
	}
	next := 0
	waitfor.True(t, waitTimeout, "once expiry", func() bool {
		if next == probes {
			t.Fatal("ran out of probes")
		}
		_, err := s.TakeOnce(t.Context(), fmt.Sprintf("%s:probe:%d", key, next))
		next++
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("TakeOnce probe: %v", err)
		}
		return err != nil
	})
	_, err := s.TakeOnce(t.Context(), key)
	requireNotFound(t, err, "TakeOnce(expired)")
}

func testOnceConcurrentTake(t *testing.T, s session.Store) {
	key := "code:" + randomHex(t, 16)
	if err := s.PutOnce(t.Context(), key, []byte("code"), time.Minute); err != nil {
		t.Fatalf("PutOnce: %v", err)
	}
	errs := make([]error, concurrency)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			<-start
			_, errs[i] = s.TakeOnce(context.Background(), key)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, session.ErrNotFound):
			t.Fatalf("TakeOnce %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent takers won, want exactly 1", wins)
	}
}

func testTryLockExclusive(t *testing.T, s session.Store) {
	name := "refresh:" + randomHex(t, 16)
	l, err := s.TryLock(t.Context(), name, time.Minute)
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}
	if _, err := s.TryLock(t.Context(), name, time.Minute); !errors.Is(err, session.ErrLocked) {
		t.Fatalf("second TryLock error = %v, want ErrLocked", err)
	}
	other, err := s.TryLock(t.Context(), name+":other", time.Minute)
	if err != nil {
		t.Fatalf("TryLock of another name: %v", err)
	}
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	l2, err := s.TryLock(t.Context(), name, time.Minute)
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	if err := l2.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := other.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func testTryLockConcurrent(t *testing.T, s session.Store) {
	name := "refresh:" + randomHex(t, 16)
	errs := make([]error, concurrency)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			<-start
			_, errs[i] = s.TryLock(context.Background(), name, time.Minute)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, session.ErrLocked):
			t.Fatalf("TryLock %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent lockers won, want exactly 1", wins)
	}
}

func testLockExtend(t *testing.T, s session.Store) {
	var name string
	var l session.Lock
	stallTolerant(t, func() error {
		name = "refresh:" + randomHex(t, 16)
		start := time.Now()
		var err error
		l, err = s.TryLock(t.Context(), name, shortTTL)
		if err != nil {
			t.Fatalf("TryLock: %v", err)
		}
		// A probe lock taken after it with the same ttl shows when the
		// original ttl has passed.
		if _, err := s.TryLock(t.Context(), name+":probe", shortTTL); err != nil {
			t.Fatalf("TryLock probe: %v", err)
		}
		if err := l.Extend(t.Context(), time.Minute); err != nil {
			if errors.Is(err, session.ErrLocked) {
				if stall := overdue("locking and extending", start, shortTTL-clockSlack); stall != nil {
					return stall
				}
			}
			t.Fatalf("Extend: %v", err)
		}
		return nil
	})
	waitfor.True(t, waitTimeout, "probe lock expiry", func() bool {
		p, err := s.TryLock(t.Context(), name+":probe", time.Minute)
		if err != nil && !errors.Is(err, session.ErrLocked) {
			t.Fatalf("TryLock probe: %v", err)
		}
		return p != nil
	})
	if _, err := s.TryLock(t.Context(), name, time.Minute); !errors.Is(err, session.ErrLocked) {
		t.Fatalf("TryLock of an extended lock: %v, want ErrLocked", err)
	}
	if err := l.Extend(t.Context(), 0); err == nil {
		t.Fatal("Extend with zero ttl succeeded")
	}
}

func testLockExpiry(t *testing.T, s session.Store) {
	name := "refresh:" + randomHex(t, 16)
	first, err := s.TryLock(t.Context(), name, shortTTL)
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}
	var second session.Lock
	waitfor.True(t, waitTimeout, "lock expiry", func() bool {
		second, err = s.TryLock(t.Context(), name, time.Minute)
		if err != nil && !errors.Is(err, session.ErrLocked) {
			t.Fatalf("TryLock: %v", err)
		}
		return err == nil
	})
	// The first holder lost the lock: it can neither extend nor release it.
	if err := first.Extend(t.Context(), time.Minute); !errors.Is(err, session.ErrLocked) {
		t.Fatalf("Extend of a lost lock = %v, want ErrLocked", err)
	}
	if err := first.Unlock(t.Context()); err != nil {
		t.Fatalf("Unlock of a lost lock = %v, want nil", err)
	}
	if _, err := s.TryLock(t.Context(), name, time.Minute); !errors.Is(err, session.ErrLocked) {
		t.Fatalf("the old holder's Unlock released the new holder's lock (TryLock = %v)", err)
	}
	if err := second.Extend(t.Context(), time.Minute); err != nil {
		t.Fatalf("new holder Extend: %v", err)
	}
}

func testPing(t *testing.T, s session.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
