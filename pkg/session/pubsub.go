package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultHealthInterval is how often a quiet subscription is pinged. Two
// intervals without any reply count as a lost subscription, so a frozen or
// partitioned Redis is noticed within 2 × this even when the TCP connection
// stays open.
const DefaultHealthInterval = time.Second

// Listener receives what a Channel delivers. The methods are called from
// the one goroutine running Channel.Listen, in order.
type Listener interface {
	// Subscribed is called each time the subscription is (re)established.
	// Messages published while it was down are lost, so a listener that
	// mirrors shared state must resynchronise here.
	Subscribed()
	// Lost is called when the subscription broke or went silent; until the
	// next Subscribed no message can arrive.
	Lost(err error)
	// Message is one published payload.
	Message(payload string)
}

// Channel is a Redis pub/sub channel under the store's key prefix: replicas
// sharing a prefix (and so sharing their sessions) hear each other, and
// nothing else does. Delivery is at most once: a message published while a
// subscriber is disconnected is lost, which Listener.Subscribed reports.
type Channel struct {
	client redis.UniversalClient
	name   string
	health time.Duration
}

// Channel returns the pub/sub channel name (prefixed with the key prefix).
func (r *Redis) Channel(name string) *Channel {
	return &Channel{client: r.client, name: r.prefix + "chan:" + name, health: DefaultHealthInterval}
}

// WithHealthInterval returns a copy of c that pings a quiet subscription
// every d (tests; DefaultHealthInterval otherwise).
func (c *Channel) WithHealthInterval(d time.Duration) *Channel {
	cp := *c
	cp.health = d
	return &cp
}

// Name is the full Redis channel name.
func (c *Channel) Name() string { return c.name }

// Publish sends payload to every replica listening on c.
func (c *Channel) Publish(ctx context.Context, payload string) error {
	if err := c.client.Publish(ctx, c.name, payload).Err(); err != nil {
		return fmt.Errorf("session: redis publish: %w", err)
	}
	return nil
}

// Listen subscribes to c and feeds l until ctx ends. It reconnects by
// itself (go-redis resubscribes on the next read); every break is reported
// with Lost and every resubscription with Subscribed. A subscription that
// answers nothing, not even a ping, for two health intervals is reported
// lost as well, since its messages are not arriving.
func (c *Channel) Listen(ctx context.Context, l Listener) {
	ps := c.client.Subscribe(ctx)
	defer func() { _ = ps.Close() }()
	// up: subscribed; reported: Lost was called since the last Subscribed
	// (so a failing start is reported once, too).
	up, reported := false, false
	lost := func(err error) {
		up = false
		if !reported {
			reported = true
			l.Lost(err)
		}
	}
	pinged := false
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		if !up {
			// (Re)subscribe explicitly: go-redis only resubscribes on its
			// own once it has a connection, and a failed first Subscribe
			// leaves nothing to resubscribe.
			if err := ps.Subscribe(ctx, c.name); err != nil {
				lost(fmt.Errorf("session: redis subscribe %s: %w", c.name, err))
				if !sleep(ctx, backoff) {
					return
				}
				backoff = min(2*backoff, c.health)
				continue
			}
		}
		msg, err := ps.ReceiveTimeout(ctx, c.health)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && !pinged && up {
				// Quiet: ask for a sign of life before giving up on it.
				pinged = true
				if perr := ps.Ping(ctx); perr == nil {
					continue
				}
			}
			pinged = false
			lost(fmt.Errorf("session: redis subscription %s: %w", c.name, err))
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, c.health)
			continue
		}
		pinged = false
		backoff = 10 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == c.name {
				up, reported = true, false
				l.Subscribed()
			}
		case *redis.Message:
			if up {
				l.Message(m.Payload)
			}
		case *redis.Pong:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ExpiringSet is a set of members, each kept until its own expiry, stored in
// one Redis sorted set (scored by expiry in Unix ms) and announced on a
// Channel of the same name: replicas keep a local copy, load it with
// Members and follow Add through Listen. Expired members are trimmed on
// every load.
type ExpiringSet struct {
	client redis.UniversalClient
	key    string
	ch     *Channel
	now    func() time.Time
}

// ExpiringSet returns the set called name under the store's key prefix.
func (r *Redis) ExpiringSet(name string) *ExpiringSet {
	return &ExpiringSet{client: r.client, key: r.prefix + "set:" + name, ch: r.Channel("set:" + name), now: r.now}
}

// Channel is the channel Add announces members on; its payloads are read
// with ParseSetMessage.
func (s *ExpiringSet) Channel() *Channel { return s.ch }

// addScript adds a member (keeping the later expiry) and keeps the set's
// own TTL at least as long as its longest member, in one atomic step.
// KEYS: set. ARGV: member, expiry ms, now ms.
var addScript = redis.NewScript(`
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
local ttl = tonumber(ARGV[2]) - tonumber(ARGV[3])
if ttl > 0 and redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1`)

// ErrNotAnnounced means a write was stored but its pub/sub announcement
// failed (for example a Redis ACL user without channel permissions):
// listeners learn of it only on their next full load.
var ErrNotAnnounced = errors.New("session: stored, but not announced on pub/sub")

// Add puts member into the set until until, then tells every listener. If
// only the announcement fails, the error wraps ErrNotAnnounced.
func (s *ExpiringSet) Add(ctx context.Context, member string, until time.Time) error {
	if member == "" || strings.ContainsAny(member, " \n") {
		return fmt.Errorf("session: expiring set member %q: empty or contains a space", member)
	}
	ms := until.UnixMilli()
	if err := addScript.Run(ctx, s.client, []string{s.key}, member, ms, s.now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("session: redis expiring set add: %w", err)
	}
	if err := s.ch.Publish(ctx, strconv.FormatInt(ms, 10)+" "+member); err != nil {
		return fmt.Errorf("%w: %w", ErrNotAnnounced, err)
	}
	return nil
}

// Members trims expired members and returns the others with their expiry.
func (s *ExpiringSet) Members(ctx context.Context) (map[string]time.Time, error) {
	var zs *redis.ZSliceCmd
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, s.key, "-inf", strconv.FormatInt(s.now().UnixMilli(), 10))
		zs = p.ZRangeWithScores(ctx, s.key, 0, -1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("session: redis expiring set load: %w", err)
	}
	out := make(map[string]time.Time, len(zs.Val()))
	for _, z := range zs.Val() {
		m, _ := z.Member.(string)
		out[m] = time.UnixMilli(int64(z.Score))
	}
	return out, nil
}

// ParseSetMessage decodes a payload ExpiringSet.Add published.
func ParseSetMessage(payload string) (member string, until time.Time, err error) {
	ms, member, ok := strings.Cut(payload, " ")
	n, perr := strconv.ParseInt(ms, 10, 64)
	if !ok || perr != nil || member == "" {
		return "", time.Time{}, fmt.Errorf("session: malformed set message")
	}
	return member, time.UnixMilli(n), nil
}

// Listen feeds the members Add announces to l (payloads for
// ParseSetMessage) until ctx ends; see Channel.Listen.
func (s *ExpiringSet) Listen(ctx context.Context, l Listener) { s.ch.Listen(ctx, l) }
