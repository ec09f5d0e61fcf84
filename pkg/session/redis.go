package session

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultKeyPrefix namespaces every key the Redis store writes, so the proxy
// can share a Redis with other applications.
const DefaultKeyPrefix = "mcp-oidc-proxy:"

// Redis client defaults. They are short on purpose: when Redis is down a
// cookie request must get a quick 503, not hang for go-redis' 5s defaults.
const (
	DefaultRedisDialTimeout  = 500 * time.Millisecond
	DefaultRedisReadTimeout  = 500 * time.Millisecond
	DefaultRedisWriteTimeout = 500 * time.Millisecond
	DefaultRedisMaxRetries   = 1
)

// RedisOptions configures NewRedis. Either URL or Addrs names the server(s).
type RedisOptions struct {
	// URL is a redis:// or rediss:// URL (user, password and database are
	// taken from it). Mutually exclusive with Addrs.
	URL string
	// Addrs are host:port addresses: one server, Sentinel nodes (with
	// MasterName) or cluster seed nodes (with Cluster).
	Addrs []string
	// MasterName selects Sentinel failover for that master.
	MasterName string
	// Cluster selects Redis Cluster; required with several Addrs and no
	// MasterName, so a typo cannot silently switch modes.
	Cluster bool
	// Username and Password override those from URL when set, so the
	// password can come from a mounted Secret while the URL is plain config.
	Username string
	Password string
	// DB is the database number (standalone and Sentinel only). A non-zero
	// value overrides the URL's.
	DB int
	// TLS enables TLS with this configuration (rediss:// enables it too).
	TLS *tls.Config
	// KeyPrefix namespaces all keys; default DefaultKeyPrefix. It must not
	// contain braces (they would change Redis Cluster hash slots).
	KeyPrefix string
	// Timeouts; zero means the Default* constants above.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is the connection pool size; zero keeps go-redis' default
	// (10 per GOMAXPROCS).
	PoolSize int
	// MaxRetries for network errors; zero means DefaultRedisMaxRetries, a
	// negative value disables retries.
	MaxRetries int
}

// Redis is the Store shared by all replicas.
//
// Key scheme (P = KeyPrefix, u = UserKey, id = Record.ID):
//
//	P sess:{u}:id  hash record: d=Data, u=UserKey, c=CreatedAt ms,
//	               e=ExpiresAt ms, i=IdleTimeout ms; PX = min(idle, absolute)
//	P user:{u}     sorted set of the user's session IDs scored by CreatedAt ms
//	P sid:{id}     string u, PX = absolute expiry: finds a record from its ID
//	P once:<key>   PutOnce value
//	P lock:<name>  lock token
//
// A record and its user index share the hash tag {u}, so the scripts that
// touch both (create with limit, update, delete) stay in one Cluster slot.
// Data is stored as given; callers seal it with a Ticket, so no tokens are
// readable in Redis.
type Redis struct {
	client redis.UniversalClient
	prefix string
	now    func() time.Time
	// twoStepGet resolves sid:{id} with its own command before running the
	// get script. Required in Cluster (the pointer and the record live in
	// different slots); elsewhere one script does both in one round trip.
	twoStepGet bool
}

var _ Store = (*Redis)(nil)

// NewRedis connects a Redis store. It does no network I/O: an unreachable
// Redis shows up as errors from the methods (and Ping), and go-redis
// reconnects by itself when Redis comes back.
func NewRedis(opts RedisOptions) (*Redis, error) {
	uo, err := universalOptions(opts)
	if err != nil {
		return nil, err
	}
	return NewRedisFromClient(redis.NewUniversalClient(uo), opts.KeyPrefix)
}

// NewRedisFromClient wraps an existing client (tests, or callers that share
// one client). The store takes ownership: Close closes the client.
func NewRedisFromClient(client redis.UniversalClient, keyPrefix string) (*Redis, error) {
	if keyPrefix == "" {
		keyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(keyPrefix, "{}") {
		return nil, fmt.Errorf("session: redis key prefix %q must not contain braces", keyPrefix)
	}
	_, cluster := client.(*redis.ClusterClient)
	return &Redis{client: client, prefix: keyPrefix, now: time.Now, twoStepGet: cluster}, nil
}

func universalOptions(opts RedisOptions) (*redis.UniversalOptions, error) {
	uo := &redis.UniversalOptions{
		Addrs:                 opts.Addrs,
		MasterName:            opts.MasterName,
		IsClusterMode:         opts.Cluster,
		ContextTimeoutEnabled: true,
		DialTimeout:           orDefault(opts.DialTimeout, DefaultRedisDialTimeout),
		ReadTimeout:           orDefault(opts.ReadTimeout, DefaultRedisReadTimeout),
		WriteTimeout:          orDefault(opts.WriteTimeout, DefaultRedisWriteTimeout),
		PoolSize:              opts.PoolSize,
		MaxRetries:            opts.MaxRetries,
		// One dial attempt per command attempt: the pool's default of 5
		// dial retries would multiply the outage latency.
		DialerRetries:      1,
		DialerRetryTimeout: 50 * time.Millisecond,
		MaxRetryBackoff:    100 * time.Millisecond,
	}
	if uo.MaxRetries == 0 {
		uo.MaxRetries = DefaultRedisMaxRetries
	}
	switch {
	case opts.URL != "" && len(opts.Addrs) > 0:
		return nil, errors.New("session: redis: set either URL or Addrs, not both")
	case opts.URL != "":
		po, err := redis.ParseURL(opts.URL)
		if err != nil {
			// The URL may carry a password: do not echo it.
			return nil, fmt.Errorf("session: redis: invalid URL: %w", redactURLError(err))
		}
		uo.Addrs = []string{po.Addr}
		uo.Username, uo.Password, uo.DB, uo.TLSConfig = po.Username, po.Password, po.DB, po.TLSConfig
	case len(opts.Addrs) == 0:
		return nil, errors.New("session: redis: URL or Addrs is required")
	}
	if len(uo.Addrs) > 1 && opts.MasterName == "" && !opts.Cluster {
		return nil, errors.New("session: redis: several Addrs need Cluster or MasterName")
	}
	if opts.Cluster && opts.MasterName != "" {
		return nil, errors.New("session: redis: Cluster and MasterName are mutually exclusive")
	}
	if opts.Username != "" {
		uo.Username = opts.Username
	}
	if opts.Password != "" {
		uo.Password = opts.Password
	}
	if opts.DB != 0 {
		uo.DB = opts.DB
	}
	if opts.Cluster && uo.DB != 0 {
		return nil, errors.New("session: redis: Cluster supports only database 0")
	}
	if opts.TLS != nil {
		uo.TLSConfig = opts.TLS
	}
	return uo, nil
}

// redactURLError drops the URL (which may hold a password) that net/url
// puts into its errors, keeping only the reason.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func (r *Redis) recordPrefix(userKey string) string  { return r.prefix + "sess:{" + userKey + "}:" }
func (r *Redis) recordKey(userKey, id string) string { return r.recordPrefix(userKey) + id }
func (r *Redis) indexKey(userKey string) string      { return r.prefix + "user:{" + userKey + "}" }
func (r *Redis) pointerKey(id string) string         { return r.prefix + "sid:{" + id + "}" }
func (r *Redis) onceKey(key string) string           { return r.prefix + "once:" + key }
func (r *Redis) lockKey(name string) string          { return r.prefix + "lock:" + name }

// luaGet reads a record and slides its idle TTL, capped by the absolute
// expiry. Expiry is judged with the caller's clock (ARGV now) so memory and
// Redis stores agree; Redis' own TTL removes the key.
const luaGet = `
local function get(rk, now)
  local v = redis.call('HMGET', rk, 'd', 'u', 'c', 'e', 'i')
  if not v[1] then return false end
  local ttl = tonumber(v[4]) - now
  if ttl <= 0 then return false end
  local idle = tonumber(v[5])
  if idle > 0 then
    if idle < ttl then ttl = idle end
    redis.call('PEXPIRE', rk, ttl)
  end
  return v
end
`

var (
	// KEYS: record. ARGV: now ms.
	getRecordScript = redis.NewScript(luaGet + `return get(KEYS[1], tonumber(ARGV[1]))`)

	// KEYS: pointer. ARGV: now ms, record key prefix up to "{", id.
	// Reads a key it cannot declare, so it is used only outside Cluster.
	getByPointerScript = redis.NewScript(luaGet + `
local u = redis.call('GET', KEYS[1])
if not u then return false end
return get(ARGV[2] .. u .. '}:' .. ARGV[3], tonumber(ARGV[1]))`)

	// KEYS: record, index. ARGV: id, data, userKey, created ms, expires ms,
	// idle ms, now ms, max, refuse (1/0), record key prefix of this user.
	// Returns {1, evicted ids...} or {0} when refused. Every key touched
	// carries the user's hash tag.
	createScript = redis.NewScript(`
local now = tonumber(ARGV[7])
local abs = tonumber(ARGV[5]) - now
if abs <= 0 then return redis.error_reply('ERR session already expired') end
local ttl = abs
local idle = tonumber(ARGV[6])
if idle > 0 and idle < ttl then ttl = idle end
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if m == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], m)
  else
    -- Drop members whose record is gone or expired by the caller's clock
    -- (Redis may keep the key a few ms longer), so they do not count.
    local e = redis.call('HGET', ARGV[10] .. m, 'e')
    if not e or tonumber(e) <= now then
      redis.call('DEL', ARGV[10] .. m)
      redis.call('ZREM', KEYS[2], m)
    end
  end
end
local out = {1}
local max = tonumber(ARGV[8])
if max > 0 then
  local n = redis.call('ZCARD', KEYS[2])
  if n >= max then
    if ARGV[9] == '1' then return {0} end
    for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, n - max)) do
      redis.call('DEL', ARGV[10] .. m)
      redis.call('ZREM', KEYS[2], m)
      table.insert(out, m)
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'd', ARGV[2], 'u', ARGV[3], 'c', ARGV[4], 'e', ARGV[5], 'i', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
if redis.call('PTTL', KEYS[2]) < abs then redis.call('PEXPIRE', KEYS[2], abs) end
return out`)

	// KEYS: record, index. ARGV: data, expires ms, idle ms, now ms.
	updateScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[1], 'e')
if not e then return false end
local now = tonumber(ARGV[4])
if tonumber(e) <= now then return false end
local abs = tonumber(ARGV[2]) - now
local ttl = abs
local idle = tonumber(ARGV[3])
if idle > 0 and idle < ttl then ttl = idle end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'e', ARGV[2], 'i', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('PTTL', KEYS[2]) < abs then redis.call('PEXPIRE', KEYS[2], abs) end
return 1`)

	// KEYS: record, index. ARGV: id.
	deleteScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`)

	// KEYS: lock. ARGV: token, ttl ms.
	extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

	// KEYS: lock. ARGV: token.
	unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

// CreateSession implements Store.
func (r *Redis) CreateSession(ctx context.Context, rec Record, limit Limit) ([]string, error) {
	now := r.now()
	if err := validateRecord(rec, now); err != nil {
		return nil, err
	}
	if err := validateLimit(limit); err != nil {
		return nil, err
	}
	nowMs, expMs := now.UnixMilli(), rec.ExpiresAt.UnixMilli()
	ptr := r.pointerKey(rec.ID)
	// The pointer goes first: a record is never reachable-by-index but
	// unreachable-by-ID. A pointer without a record just reads as missing.
	if err := r.client.Set(ctx, ptr, rec.UserKey, time.Duration(expMs-nowMs)*time.Millisecond).Err(); err != nil {
		return nil, fmt.Errorf("session: redis create session: %w", err)
	}
	refuse := "0"
	if limit.Policy == LimitRefuse {
		refuse = "1"
	}
	res, err := createScript.Run(ctx, r.client,
		[]string{r.recordKey(rec.UserKey, rec.ID), r.indexKey(rec.UserKey)},
		rec.ID, rec.Data, rec.UserKey, rec.CreatedAt.UnixMilli(), expMs,
		rec.IdleTimeout.Milliseconds(), nowMs, limit.Max, refuse, r.recordPrefix(rec.UserKey),
	).Slice()
	if err != nil {
		return nil, fmt.Errorf("session: redis create session: %w", err)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("session: redis create session: empty script reply")
	}
	if status, _ := res[0].(int64); status == 0 {
		// Best effort: a leftover pointer to a missing record is harmless
		// and expires by itself.
		_ = r.client.Del(ctx, ptr).Err()
		return nil, ErrLimitReached
	}
	evicted := make([]string, 0, len(res)-1)
	ptrs := make([]string, 0, len(res)-1)
	for _, v := range res[1:] {
		id, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("session: redis create session: unexpected evicted ID type %T", v)
		}
		evicted = append(evicted, id)
		ptrs = append(ptrs, r.pointerKey(id))
	}
	if len(evicted) == 0 {
		return nil, nil
	}
	// Evicted records are already gone; their pointers only save memory
	// until they expire, so a failure here is not the caller's problem.
	for _, p := range ptrs {
		_ = r.client.Del(ctx, p).Err()
	}
	return evicted, nil
}

// GetSession implements Store.
func (r *Redis) GetSession(ctx context.Context, id string) (Record, error) {
	if err := validateKeyPart("ID", id); err != nil {
		return Record{}, err
	}
	nowMs := r.now().UnixMilli()
	var res []interface{}
	var err error
	if r.twoStepGet {
		var userKey string
		userKey, err = r.client.Get(ctx, r.pointerKey(id)).Result()
		if err == nil {
			res, err = getRecordScript.Run(ctx, r.client, []string{r.recordKey(userKey, id)}, nowMs).Slice()
		}
	} else {
		res, err = getByPointerScript.Run(ctx, r.client, []string{r.pointerKey(id)},
			nowMs, r.prefix+"sess:{", id).Slice()
	}
	if errors.Is(err, redis.Nil) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("session: redis get session: %w", err)
	}
	rec, err := parseRecord(id, res)
	if err != nil {
		return Record{}, fmt.Errorf("session: redis get session: %w", err)
	}
	return rec, nil
}

func parseRecord(id string, res []interface{}) (Record, error) {
	if len(res) != 5 {
		return Record{}, fmt.Errorf("record has %d fields, want 5", len(res))
	}
	var f [5]string
	for i, v := range res {
		s, ok := v.(string)
		if !ok {
			return Record{}, fmt.Errorf("record field %d has type %T", i, v)
		}
		f[i] = s
	}
	var ms [3]int64
	for i, s := range f[2:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Record{}, fmt.Errorf("record field %d: %w", i+2, err)
		}
		ms[i] = n
	}
	return Record{
		ID:          id,
		UserKey:     f[1],
		Data:        []byte(f[0]),
		CreatedAt:   time.UnixMilli(ms[0]),
		ExpiresAt:   time.UnixMilli(ms[1]),
		IdleTimeout: time.Duration(ms[2]) * time.Millisecond,
	}, nil
}

// userOf resolves a session ID to its UserKey through the pointer key.
func (r *Redis) userOf(ctx context.Context, id string) (string, error) {
	u, err := r.client.Get(ctx, r.pointerKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", err
	}
	return u, nil
}

// UpdateSession implements Store.
func (r *Redis) UpdateSession(ctx context.Context, rec Record) error {
	now := r.now()
	if err := validateUpdate(rec, now); err != nil {
		return err
	}
	userKey, err := r.userOf(ctx, rec.ID)
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("session: redis update session: %w", err)
	}
	nowMs, expMs := now.UnixMilli(), rec.ExpiresAt.UnixMilli()
	err = updateScript.Run(ctx, r.client,
		[]string{r.recordKey(userKey, rec.ID), r.indexKey(userKey)},
		rec.Data, expMs, rec.IdleTimeout.Milliseconds(), nowMs,
	).Err()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("session: redis update session: %w", err)
	}
	// Keep the pointer alive as long as the (possibly extended) record.
	if err := r.client.PExpire(ctx, r.pointerKey(rec.ID), time.Duration(expMs-nowMs)*time.Millisecond).Err(); err != nil {
		return fmt.Errorf("session: redis update session pointer: %w", err)
	}
	return nil
}

// DeleteSession implements Store.
func (r *Redis) DeleteSession(ctx context.Context, id string) error {
	if err := validateKeyPart("ID", id); err != nil {
		return err
	}
	userKey, err := r.userOf(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("session: redis delete session: %w", err)
	}
	if err := deleteScript.Run(ctx, r.client,
		[]string{r.recordKey(userKey, id), r.indexKey(userKey)}, id).Err(); err != nil {
		return fmt.Errorf("session: redis delete session: %w", err)
	}
	if err := r.client.Del(ctx, r.pointerKey(id)).Err(); err != nil {
		return fmt.Errorf("session: redis delete session pointer: %w", err)
	}
	return nil
}

// PutOnce implements Store.
func (r *Redis) PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := validateTTL(ttl); err != nil {
		return err
	}
	if err := r.client.Set(ctx, r.onceKey(key), value, ttl).Err(); err != nil {
		return fmt.Errorf("session: redis put once: %w", err)
	}
	return nil
}

// TakeOnce implements Store with GETDEL, atomic across replicas.
func (r *Redis) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	v, err := r.client.GetDel(ctx, r.onceKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("session: redis take once: %w", err)
	}
	return v, nil
}

// Put implements Store.
func (r *Redis) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := validateTTL(ttl); err != nil {
		return err
	}
	if err := r.client.Set(ctx, r.onceKey(key), value, ttl).Err(); err != nil {
		return fmt.Errorf("session: redis put: %w", err)
	}
	return nil
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := r.client.Get(ctx, r.onceKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("session: redis get: %w", err)
	}
	return v, nil
}

// AnyExists implements Store. One EXISTS per key, pipelined: a single
// round trip, and no CROSSSLOT error in Cluster mode where the keys live in
// different slots.
func (r *Redis) AnyExists(ctx context.Context, keys ...string) (bool, error) {
	if len(keys) == 0 {
		return false, nil
	}
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Exists(ctx, r.onceKey(k))
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("session: redis exists: %w", err)
	}
	for _, c := range cmds {
		if c.Val() > 0 {
			return true, nil
		}
	}
	return false, nil
}

// Delete implements Store.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if err := r.client.Del(ctx, r.onceKey(key)).Err(); err != nil {
		return fmt.Errorf("session: redis delete: %w", err)
	}
	return nil
}

// TryLock implements Store with SET NX PX and a random token that only this
// holder knows.
func (r *Redis) TryLock(ctx context.Context, name string, ttl time.Duration) (Lock, error) {
	if err := validateTTL(ttl); err != nil {
		return nil, err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("session: lock token: %w", err)
	}
	token := hex.EncodeToString(b[:])
	ok, err := r.client.SetNX(ctx, r.lockKey(name), token, ttl).Result()
	if err != nil {
		return nil, fmt.Errorf("session: redis try lock: %w", err)
	}
	if !ok {
		return nil, ErrLocked
	}
	return &redisLock{r: r, key: r.lockKey(name), token: token}, nil
}

// Ping implements Store with PING.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("session: redis ping: %w", err)
	}
	return nil
}

// Close implements Store; it closes the client.
func (r *Redis) Close() error {
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("session: redis close: %w", err)
	}
	return nil
}

// redisLock is a lock held in Redis; its token makes Extend and Unlock
// compare-and-set, so a holder whose lock expired cannot touch a
// successor's lock.
type redisLock struct {
	r     *Redis
	key   string
	token string
}

var _ Lock = (*redisLock)(nil)

// Extend implements Lock. An expired lock counts as lost, as in Memory.
func (l *redisLock) Extend(ctx context.Context, ttl time.Duration) error {
	if err := validateTTL(ttl); err != nil {
		return err
	}
	n, err := extendScript.Run(ctx, l.r.client, []string{l.key}, l.token, ttl.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("session: redis extend lock: %w", err)
	}
	if n == 0 {
		return ErrLocked
	}
	return nil
}

// Unlock implements Lock.
func (l *redisLock) Unlock(ctx context.Context) error {
	if err := unlockScript.Run(ctx, l.r.client, []string{l.key}, l.token).Err(); err != nil {
		return fmt.Errorf("session: redis unlock: %w", err)
	}
	return nil
}
