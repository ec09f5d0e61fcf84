package session_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// events records what a Channel delivers.
type events chan string

func (e events) Subscribed()      { e <- "subscribed" }
func (e events) Lost(error)       { e <- "lost" }
func (e events) Message(p string) { e <- "message " + p }

func (e events) next(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-e:
		if got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no event within 10s, want %q", want)
	}
}

// oneNodeCluster starts a Redis Cluster of one node owning every slot.
func oneNodeCluster(t *testing.T) *redisserver.Server {
	srv := redisserver.Start(t, redisserver.WithArgs("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer func() { _ = admin.Close() }()
	if err := admin.Do(t.Context(), "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	waitfor.NoError(t, 10*time.Second, "the one-node cluster", func() error {
		info, err := admin.ClusterInfo(t.Context()).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("cluster not ok: %v %s", err, info)
		}
		return nil
	})
	return srv
}

// TestPubSub: what one store publishes (Channel, ExpiringSet.Add) reaches a
// listener on another store with the same key prefix, standalone and in
// Cluster, and ExpiringSet.Members trims expired members.
func TestPubSub(t *testing.T) {
	tests := []struct {
		name string
		opts func(t *testing.T) session.RedisOptions
	}{
		{"standalone", func(t *testing.T) session.RedisOptions {
			return session.RedisOptions{URL: redisserver.Start(t).URL()}
		}},
		{"cluster", func(t *testing.T) session.RedisOptions {
			return session.RedisOptions{Addrs: []string{oneNodeCluster(t).Addr()}, Cluster: true}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts(t)
			o.KeyPrefix = uniquePrefix(t)
			a, b := newRedisStore(t, o), newRedisStore(t, o)

			ev := make(events, 16)
			setEv := make(events, 16)
			go b.Channel("x").Listen(t.Context(), ev)
			go b.ExpiringSet("revoked").Listen(t.Context(), setEv)
			ev.next(t, "subscribed")
			setEv.next(t, "subscribed")

			if err := a.Channel("x").Publish(t.Context(), "hello"); err != nil {
				t.Fatal(err)
			}
			ev.next(t, "message hello")

			set := a.ExpiringSet("revoked")
			until := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
			if err := set.Add(t.Context(), "f:fam1", until); err != nil {
				t.Fatal(err)
			}
			if err := set.Add(t.Context(), "j:past", time.Now().Add(-time.Second)); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-setEv:
				m, u, err := session.ParseSetMessage(strings.TrimPrefix(got, "message "))
				if err != nil || m != "f:fam1" || !u.Equal(until) {
					t.Fatalf("set message %q = %q %v %v; want f:fam1 until %v", got, m, u, err, until)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no set message within 10s")
			}
			members, err := b.ExpiringSet("revoked").Members(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(members) != 1 || !members["f:fam1"].Equal(until) {
				t.Fatalf("members = %v; want only f:fam1 (the expired one trimmed)", members)
			}
			if err := set.Add(t.Context(), "has space", until); err == nil {
				t.Error("Add accepted a member with a space, which the message format cannot carry")
			}
		})
	}
}

// TestAddWithoutChannelPermission: a Redis ACL user without channel
// permissions (Redis 7's default for new users) still stores members; only
// the announcement fails, with ErrNotAnnounced, and Listen reports the
// failure once and keeps retrying.
func TestAddWithoutChannelPermission(t *testing.T) {
	srv := redisserver.Start(t, redisserver.WithArgs("--user", "nochan", "on", ">pw", "~*", "+@all", "resetchannels"))
	st := newRedisStore(t, session.RedisOptions{Addrs: []string{srv.Addr()}, Username: "nochan", Password: "pw", KeyPrefix: uniquePrefix(t)})
	set := st.ExpiringSet("revoked")
	until := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	err := set.Add(t.Context(), "f:fam1", until)
	if !errors.Is(err, session.ErrNotAnnounced) {
		t.Fatalf("Add without channel permission = %v, want ErrNotAnnounced", err)
	}
	members, err := set.Members(t.Context())
	if err != nil || !members["f:fam1"].Equal(until) {
		t.Fatalf("members = %v, %v; want f:fam1 stored", members, err)
	}
	ev := make(events, 16)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	set.Listen(ctx, ev) // returns when ctx ends
	if n := len(ev); n != 1 || <-ev != "lost" {
		t.Fatalf("Listen without channel permission: %d events; want one \"lost\" and no subscription", n)
	}
}
