package oauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
)

// DefaultRevokedReload is how often a RevokedSet reloads the whole set from
// the store, whatever pub/sub does; it bounds the staleness left by a lost
// message.
const DefaultRevokedReload = 10 * time.Second

// RevocationLog is the shared record the RevokedSet mirrors: members with an
// expiry, and a feed of additions (session.ExpiringSet in Redis).
type RevocationLog interface {
	// Add records member until until and announces it to every listener.
	Add(ctx context.Context, member string, until time.Time) error
	// Members returns every unexpired member.
	Members(ctx context.Context) (map[string]time.Time, error)
	// Listen feeds the announcements of Add to l until ctx ends.
	Listen(ctx context.Context, l session.Listener)
}

// RevokedObserver counts what the set receives (package metrics).
type RevokedObserver interface {
	CacheInvalidation(cache, kind string)
}

// RevokedSetOptions configures NewRevokedSet.
type RevokedSetOptions struct {
	// Reload is the period of the full reload; default DefaultRevokedReload.
	Reload   time.Duration
	Now      func() time.Time
	Logger   *zap.Logger
	Observer RevokedObserver
}

// RevokedSet is each replica's local copy of the revoked access tokens
// (jti) and refresh families (fid), so that the bearer path checks
// revocation without a store round trip.
//
// Staleness rule: a revocation made on any replica is honoured by every
// replica within Reload (10s by default), even when its pub/sub message is
// lost; normally within the pub/sub delivery time (milliseconds).
//   - Revoking writes the shared log first (a Redis sorted set scored by
//     expiry), which announces the member on a channel; replicas add it
//     when the message arrives.
//   - Every Reload, and whenever the subscription is (re)established, a
//     replica reloads the whole set, so a lost message or subscription
//     costs at most one period.
//   - A replica whose first load has not succeeded yet (fresh start, Redis
//     unreachable) answers "unknown", and the caller asks the store
//     directly, as before the set existed: a fresh replica refuses a
//     revoked token at once.
//   - If Redis becomes unreachable after a load, the set keeps answering
//     from what it has: revocations made before the outage stay honoured,
//     those made during it (which need Redis anyway) are not.
//
// Members are kept only as long as the tokens they deny can live: a jti
// until its token expires, a family for AccessTokenTTL after its
// revocation (refresh tokens of a dead family are refused at the token
// endpoint, which reads the store). Both with a minute of clock skew.
type RevokedSet struct {
	log    RevocationLog
	opts   RevokedSetOptions
	loaded atomic.Bool

	mu sync.RWMutex
	// members[kindJTI] and members[kindFamily] map ids (without their
	// member prefix, so a lookup builds no string) to their expiry.
	members [2]map[string]time.Time
}

// NewRevokedSet returns an empty, not yet loaded set; Run loads and follows
// it.
func NewRevokedSet(log RevocationLog, opts RevokedSetOptions) *RevokedSet {
	if opts.Reload <= 0 {
		opts.Reload = DefaultRevokedReload
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Observer == nil {
		opts.Observer = nopRevokedObserver{}
	}
	return &RevokedSet{log: log, opts: opts, members: [2]map[string]time.Time{{}, {}}}
}

// Member names in the shared log: a revoked access token and a revoked
// refresh family.
func jtiMember(jti string) string       { return "j:" + jti }
func familyMember(family string) string { return "f:" + family }

const (
	kindJTI = iota
	kindFamily
)

// splitMember returns the kind and id of a member name.
func splitMember(member string) (kind int, id string, ok bool) {
	switch {
	case len(member) > 2 && member[:2] == "j:":
		return kindJTI, member[2:], true
	case len(member) > 2 && member[:2] == "f:":
		return kindFamily, member[2:], true
	}
	return 0, "", false
}

// Revoked reports whether the token with this jti and family is revoked.
// known is false until the set has been loaded once.
func (s *RevokedSet) Revoked(jti, family string) (revoked, known bool) {
	if !s.loaded.Load() {
		return false, false
	}
	now := s.opts.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for kind, id := range [2]string{kindJTI: jti, kindFamily: family} {
		if id == "" {
			continue
		}
		if until, ok := s.members[kind][id]; ok && now.Before(until) {
			return true, true
		}
	}
	return false, true
}

// Add records a revocation in the shared log (which tells every replica)
// and in this replica's copy.
func (s *RevokedSet) Add(ctx context.Context, member string, until time.Time) error {
	err := s.log.Add(ctx, member, until)
	switch {
	case errors.Is(err, session.ErrNotAnnounced):
		// Stored: the other replicas load it within one Reload period.
		s.opts.Logger.Warn("revoked set: revocation stored but not announced; other replicas learn of it on their next reload",
			zap.Duration("reload", s.opts.Reload), zap.Error(err))
	case err != nil:
		return fmt.Errorf("oauth: record revocation: %w", err)
	}
	s.put(member, until)
	return nil
}

func (s *RevokedSet) put(member string, until time.Time) {
	kind, id, ok := splitMember(member)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if until.After(s.members[kind][id]) {
		s.members[kind][id] = until
	}
}

// Run loads the set, then follows the log's announcements and reloads every
// Reload period until ctx ends. Start it once, in its own goroutine.
func (s *RevokedSet) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.log.Listen(ctx, revokedListener{s: s, ctx: ctx})
	}()
	defer wg.Wait()
	s.reload(ctx)
	t := time.NewTicker(s.opts.Reload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reload(ctx)
		}
	}
}

// reload merges the log into the local copy and drops expired members.
// Members are only ever added until they expire, so a union is exact and
// cannot lose an announcement that raced the load.
func (s *RevokedSet) reload(ctx context.Context) {
	members, err := s.log.Members(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.opts.Logger.Warn("revoked set: reload failed; keeping the local copy", zap.Error(err))
		}
		return
	}
	now := s.opts.Now()
	for m, until := range members {
		s.put(m, until)
	}
	s.mu.Lock()
	for _, byID := range s.members {
		for id, until := range byID {
			if !now.Before(until) {
				delete(byID, id)
			}
		}
	}
	s.mu.Unlock()
	s.loaded.Store(true)
	s.opts.Observer.CacheInvalidation("revoked", "reload")
}

// Len is the number of members held (tests).
func (s *RevokedSet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.members[kindJTI]) + len(s.members[kindFamily])
}

type revokedListener struct {
	s   *RevokedSet
	ctx context.Context
}

// Subscribed reloads: announcements may have been missed meanwhile.
func (l revokedListener) Subscribed() { l.s.reload(l.ctx) }

// Lost only logs: the periodic reload bounds the staleness until the
// subscription is back.
func (l revokedListener) Lost(err error) {
	l.s.opts.Logger.Warn("revoked set: subscription lost; relying on the periodic reload", zap.Error(err))
}

func (l revokedListener) Message(payload string) {
	member, until, err := session.ParseSetMessage(payload)
	if err != nil {
		l.s.opts.Logger.Warn("revoked set: ignoring a malformed message", zap.Error(err))
		return
	}
	l.s.put(member, until)
	l.s.opts.Observer.CacheInvalidation("revoked", "message")
}

type nopRevokedObserver struct{}

func (nopRevokedObserver) CacheInvalidation(string, string) {}
