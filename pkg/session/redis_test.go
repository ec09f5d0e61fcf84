package session_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/session/sessiontest"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// uniquePrefix gives each store its own namespace on a shared server, so
// the conformance subtests can run in parallel.
func uniquePrefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "test-" + hex.EncodeToString(b) + ":"
}

func newRedisStore(t testing.TB, opts session.RedisOptions) *session.Redis {
	t.Helper()
	s, err := session.NewRedis(opts)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRedisConformance(t *testing.T) {
	srv := redisserver.Start(t)
	t.Run("OneScriptGet", func(t *testing.T) {
		sessiontest.Run(t, func(t *testing.T) session.Store {
			return newRedisStore(t, session.RedisOptions{URL: srv.URL(), KeyPrefix: uniquePrefix(t)})
		})
	})
	t.Run("TwoStepGet", func(t *testing.T) {
		sessiontest.Run(t, func(t *testing.T) session.Store {
			s := newRedisStore(t, session.RedisOptions{Addrs: []string{srv.Addr()}, KeyPrefix: uniquePrefix(t)})
			session.UseTwoStepGet(s)
			return s
		})
	})
}

// TestRedisClusterConformance runs the suite against a one-node Redis
// Cluster: Redis 7 rejects scripts that touch keys of several slots, so this
// proves the key scheme keeps every script in one slot.
func TestRedisClusterConformance(t *testing.T) {
	srv := redisserver.Start(t, redisserver.WithArgs(
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer func() { _ = admin.Close() }()
	if err := admin.Do(t.Context(), "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	waitfor.NoError(t, 10*time.Second, "the one-node cluster", func() error {
		info, err := admin.ClusterInfo(t.Context()).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER INFO: %w", err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("cluster not ok: %s", info)
		}
		return nil
	})
	sessiontest.Run(t, func(t *testing.T) session.Store {
		s := newRedisStore(t, session.RedisOptions{Addrs: []string{srv.Addr()}, Cluster: true, KeyPrefix: uniquePrefix(t)})
		if !session.TwoStepGet(s) {
			t.Fatal("cluster store reads the session pointer inside a script")
		}
		return s
	})

	// Redis 7.0 lets a script touch undeclared keys of other slots on a
	// single node, so also check directly that a user's record and index
	// share one slot.
	s := newRedisStore(t, session.RedisOptions{Addrs: []string{srv.Addr()}, Cluster: true, KeyPrefix: "slots:"})
	user := session.UserKey("carol")
	for i := range 3 {
		rec := session.Record{ID: strings.Repeat(string(rune('0'+i)), 64), UserKey: user, Data: []byte("x"),
			CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if _, err := s.CreateSession(t.Context(), rec, session.Limit{Max: 5}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := admin.Keys(t.Context(), "slots:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slots := map[int64][]string{}
	for _, k := range keys {
		if strings.HasPrefix(k, "slots:sid:") {
			continue // pointers are read with single-key commands
		}
		slot, err := admin.ClusterKeySlot(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		slots[slot] = append(slots[slot], k)
	}
	if len(keys) != 7 || len(slots) != 1 {
		t.Fatalf("user keys %v spread over slots %v, want 3 records + 1 index in one slot (+3 pointers)", keys, slots)
	}
}

func TestRedisOutage(t *testing.T) {
	srv := redisserver.Start(t)
	s := newRedisStore(t, session.RedisOptions{URL: srv.URL(), KeyPrefix: uniquePrefix(t)})
	ctx := t.Context()
	user := session.UserKey("alice")
	rec := session.Record{ID: strings.Repeat("a", 64), UserKey: user, Data: []byte("x"),
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := s.CreateSession(ctx, rec, session.Limit{Max: 2}); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	lock, err := s.TryLock(ctx, "refresh", time.Minute)
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}

	srv.Stop()
	other := rec
	other.ID = strings.Repeat("b", 64)
	ops := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"CreateSession", func(ctx context.Context) error {
			_, err := s.CreateSession(ctx, other, session.Limit{Max: 2})
			return err
		}},
		{"GetSession", func(ctx context.Context) error { _, err := s.GetSession(ctx, rec.ID); return err }},
		{"UpdateSession", func(ctx context.Context) error { return s.UpdateSession(ctx, rec) }},
		{"DeleteSession", func(ctx context.Context) error { return s.DeleteSession(ctx, rec.ID) }},
		{"PutOnce", func(ctx context.Context) error { return s.PutOnce(ctx, "k", []byte("v"), time.Minute) }},
		{"TakeOnce", func(ctx context.Context) error { _, err := s.TakeOnce(ctx, "k"); return err }},
		{"TryLock", func(ctx context.Context) error { _, err := s.TryLock(ctx, "other", time.Minute); return err }},
		{"Extend", func(ctx context.Context) error { return lock.Extend(ctx, time.Minute) }},
		{"Unlock", func(ctx context.Context) error { return lock.Unlock(ctx) }},
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.call(ctx)
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s with Redis down: no error", op.name)
		}
		for _, sentinel := range []error{session.ErrNotFound, session.ErrLocked, session.ErrLimitReached} {
			if errors.Is(err, sentinel) {
				t.Errorf("%s with Redis down: %v must not be %v", op.name, err, sentinel)
			}
		}
		// Bounded by the short default timeouts, not go-redis' 5s ones.
		if took > 3*time.Second {
			t.Errorf("%s with Redis down took %s", op.name, took)
		}
	}

	srv.Restart()
	waitfor.NoError(t, 10*time.Second, "the store to reconnect after restart", func() error { return s.Ping(ctx) })
	// No persistence: the old data is gone, but the same store works again.
	if _, err := s.CreateSession(ctx, other, session.Limit{Max: 2}); err != nil {
		t.Fatalf("CreateSession after restart: %v", err)
	}
	if got, err := s.GetSession(ctx, other.ID); err != nil || !bytes.Equal(got.Data, other.Data) {
		t.Fatalf("GetSession after restart = %v, %v", got, err)
	}
	if _, err := s.TryLock(ctx, "refresh", time.Minute); err != nil {
		t.Fatalf("TryLock after restart: %v", err)
	}
}

func TestRedisAuthentication(t *testing.T) {
	tests := []struct {
		name string
		srv  func(t *testing.T) *redisserver.Server
	}{
		{"acl user", func(t *testing.T) *redisserver.Server {
			return redisserver.Start(t, redisserver.WithUser("proxy", "s3cret-pw"))
		}},
		{"password", func(t *testing.T) *redisserver.Server {
			return redisserver.Start(t, redisserver.WithPassword("s3cret-pw"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tt.srv(t)
			s := newRedisStore(t, session.RedisOptions{URL: srv.URL()})
			if err := s.Ping(t.Context()); err != nil {
				t.Fatalf("Ping with credentials from the URL: %v", err)
			}
			// Credentials from explicit fields override the URL's.
			bad := newRedisStore(t, session.RedisOptions{URL: srv.URL(), Password: "wrong"})
			err := bad.Ping(t.Context())
			if err == nil || errors.Is(err, session.ErrNotFound) {
				t.Fatalf("Ping with a wrong password = %v, want an auth error", err)
			}
			if _, err := bad.GetSession(t.Context(), strings.Repeat("c", 64)); err == nil || errors.Is(err, session.ErrNotFound) {
				t.Fatalf("GetSession with a wrong password = %v, want an error that is not ErrNotFound", err)
			}
		})
	}
}

func TestRedisKeyPrefixIsolation(t *testing.T) {
	srv := redisserver.Start(t)
	a := newRedisStore(t, session.RedisOptions{URL: srv.URL(), KeyPrefix: "tenant-a:"})
	b := newRedisStore(t, session.RedisOptions{URL: srv.URL(), KeyPrefix: "tenant-b:"})
	ctx := t.Context()
	rec := session.Record{ID: strings.Repeat("d", 64), UserKey: session.UserKey("bob"), Data: []byte("a"),
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := a.CreateSession(ctx, rec, session.Limit{Max: 1, Policy: session.LimitRefuse}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetSession(ctx, rec.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("store b sees store a's session: %v", err)
	}
	// Limits are per prefix too.
	if _, err := b.CreateSession(ctx, rec, session.Limit{Max: 1, Policy: session.LimitRefuse}); err != nil {
		t.Fatalf("store b refused a session because of store a: %v", err)
	}
	if err := a.PutOnce(ctx, "state", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.TakeOnce(ctx, "state"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("store b took store a's value: %v", err)
	}
	if _, err := a.TryLock(ctx, "l", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLock(ctx, "l", time.Minute); err != nil {
		t.Fatalf("store b blocked by store a's lock: %v", err)
	}
	keys, err := redis.NewClient(&redis.Options{Addr: srv.Addr()}).Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "tenant-a:") && !strings.HasPrefix(k, "tenant-b:") {
			t.Errorf("key %q outside both prefixes", k)
		}
	}
}

// TestRedisDumpRevealsNoSecrets reads every key and value in Redis after a
// login-shaped write and checks that nothing there would let the reader
// decrypt the session or forge the cookie.
func TestRedisDumpRevealsNoSecrets(t *testing.T) {
	srv := redisserver.Start(t)
	s := newRedisStore(t, session.RedisOptions{URL: srv.URL()})
	codec, err := session.NewCodec(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	ticket, err := codec.NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	plaintext := []byte(`{"access_token":"at-SECRET-0123456789","refresh_token":"rt-SECRET-9876543210"}`)
	sealed, err := ticket.Seal(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	rec := session.Record{ID: ticket.ID(), UserKey: session.UserKey("alice@example.com"), Data: sealed,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour), IdleTimeout: time.Minute}
	if _, err := s.CreateSession(ctx, rec, session.Limit{Max: 3}); err != nil {
		t.Fatal(err)
	}
	cookie := codec.Encode(ticket)
	parts := strings.Split(cookie, ".")
	rawID, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	key, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("cookie parts: %v %v", err1, err2)
	}
	secrets := map[string][]byte{
		"plaintext":      plaintext,
		"access token":   []byte("at-SECRET-0123456789"),
		"raw cookie ID":  rawID,
		"cookie ID b64":  []byte(parts[1]),
		"cookie ID hex":  []byte(hex.EncodeToString(rawID)),
		"data key":       key,
		"data key b64":   []byte(parts[2]),
		"data key hex":   []byte(hex.EncodeToString(key)),
		"cookie":         []byte(cookie),
		"subject":        []byte("alice@example.com"),
		"cookie MAC b64": []byte(parts[3]),
	}

	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer func() { _ = raw.Close() }()
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys in Redis")
	}
	var dump bytes.Buffer
	for _, k := range keys {
		dump.WriteString(k + "\n")
		d, err := raw.Dump(ctx, k).Result()
		if err != nil {
			t.Fatalf("DUMP %s: %v", k, err)
		}
		dump.WriteString(d + "\n")
		switch typ := raw.Type(ctx, k).Val(); typ {
		case "string":
			dump.WriteString(raw.Get(ctx, k).Val() + "\n")
		case "hash":
			for f, v := range raw.HGetAll(ctx, k).Val() {
				dump.WriteString(f + "=" + v + "\n")
			}
		case "zset":
			dump.WriteString(strings.Join(raw.ZRange(ctx, k, 0, -1).Val(), "\n"))
		default:
			t.Fatalf("unexpected key type %s for %s", typ, k)
		}
	}
	for name, secret := range secrets {
		if bytes.Contains(dump.Bytes(), secret) {
			t.Errorf("Redis contents include the %s", name)
		}
	}
	// The dump is not useless: it holds the storage ID and the sealed data,
	// which open only with the key from the cookie.
	if !bytes.Contains(dump.Bytes(), []byte(ticket.ID())) || !bytes.Contains(dump.Bytes(), sealed) {
		t.Fatal("dump does not contain the stored session; the check above proves nothing")
	}
	got, err := s.GetSession(ctx, ticket.ID())
	if err != nil {
		t.Fatal(err)
	}
	opened, err := ticket.Open(got.Data)
	if err != nil || !bytes.Equal(opened, plaintext) {
		t.Fatalf("Open(stored) = %q, %v", opened, err)
	}
}

func TestNewRedisOptions(t *testing.T) {
	tests := []struct {
		name string
		opts session.RedisOptions
	}{
		{"nothing", session.RedisOptions{}},
		{"URL and Addrs", session.RedisOptions{URL: "redis://127.0.0.1:1/0", Addrs: []string{"127.0.0.1:1"}}},
		{"bad scheme", session.RedisOptions{URL: "http://127.0.0.1:1/0"}},
		{"bad db", session.RedisOptions{URL: "redis://127.0.0.1:1/notanumber"}},
		{"several addrs without mode", session.RedisOptions{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}},
		{"cluster and sentinel", session.RedisOptions{Addrs: []string{"127.0.0.1:1"}, Cluster: true, MasterName: "m"}},
		{"cluster with db", session.RedisOptions{Addrs: []string{"127.0.0.1:1"}, Cluster: true, DB: 2}},
		{"brace in prefix", session.RedisOptions{Addrs: []string{"127.0.0.1:1"}, KeyPrefix: "a{b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := session.NewRedis(tt.opts); err == nil {
				_ = s.Close()
				t.Fatal("NewRedis accepted invalid options")
			}
		})
	}
	t.Run("password not echoed", func(t *testing.T) {
		_, err := session.NewRedis(session.RedisOptions{URL: "redis://user:hunter2@127.0.0.1:1/%zz"})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("error = %v, want an error without the password", err)
		}
	})
	valid := []session.RedisOptions{
		{URL: "rediss://u:p@127.0.0.1:1/3"},
		{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, MasterName: "mymaster"},
		{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, Cluster: true},
	}
	for _, o := range valid {
		s, err := session.NewRedis(o)
		if err != nil {
			t.Errorf("NewRedis(%+v): %v", o, err)
			continue
		}
		_ = s.Close()
	}
}

func BenchmarkRedisGetSession(b *testing.B) {
	srv := redisserver.Start(b)
	s := newRedisStore(b, session.RedisOptions{URL: srv.URL(), KeyPrefix: uniquePrefix(b)})
	rec := session.Record{ID: strings.Repeat("e", 64), UserKey: session.UserKey("bench"), Data: bytes.Repeat([]byte("x"), 512),
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour), IdleTimeout: 30 * time.Minute}
	if _, err := s.CreateSession(context.Background(), rec, session.Limit{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := s.GetSession(ctx, rec.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
