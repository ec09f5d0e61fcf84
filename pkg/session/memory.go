package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultCleanupInterval is how often the memory store's janitor drops
// expired entries. Expired entries are invisible as soon as they expire; the
// janitor only bounds memory.
const DefaultCleanupInterval = time.Minute

// MemoryOptions configures NewMemory.
type MemoryOptions struct {
	// Now is the clock used for every expiry decision; tests inject a fake
	// one to expire entries deterministically. Default time.Now.
	Now func() time.Time
	// CleanupInterval is the janitor period. Default DefaultCleanupInterval.
	CleanupInterval time.Duration
}

// Memory is the single-instance Store: everything lives in maps behind one
// mutex, which makes every operation trivially atomic. It is the default
// for a lone sidecar without Redis; state is lost on restart.
type Memory struct {
	now func() time.Time

	mu       sync.Mutex
	sessions map[string]*memSession
	users    map[string]map[string]struct{} // UserKey -> session IDs
	onces    map[string]memOnce
	locks    map[string]memLock
	lockSeq  uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ Store = (*Memory)(nil)

type memSession struct {
	rec Record
	// deadline is min(ExpiresAt, last access + IdleTimeout).
	deadline time.Time
}

type memOnce struct {
	value    []byte
	deadline time.Time
}

type memLock struct {
	token    string
	deadline time.Time
}

// NewMemory returns a memory store and starts its janitor; Close stops it.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CleanupInterval <= 0 {
		opts.CleanupInterval = DefaultCleanupInterval
	}
	m := &Memory{
		now:      opts.Now,
		sessions: make(map[string]*memSession),
		users:    make(map[string]map[string]struct{}),
		onces:    make(map[string]memOnce),
		locks:    make(map[string]memLock),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go m.janitor(opts.CleanupInterval)
	return m
}

func (m *Memory) janitor(every time.Duration) {
	defer close(m.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep drops every expired entry.
func (m *Memory) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for id, s := range m.sessions {
		if !now.Before(s.deadline) {
			m.removeLocked(id)
		}
	}
	for k, o := range m.onces {
		if !now.Before(o.deadline) {
			delete(m.onces, k)
		}
	}
	for k, l := range m.locks {
		if !now.Before(l.deadline) {
			delete(m.locks, k)
		}
	}
}

// sessionDeadline is when a record accessed at now expires.
func sessionDeadline(rec Record, now time.Time) time.Time {
	d := rec.ExpiresAt
	if rec.IdleTimeout > 0 {
		if idle := now.Add(rec.IdleTimeout); idle.Before(d) {
			d = idle
		}
	}
	return d
}

// liveLocked returns the session if it exists and has not expired, and
// removes it if it has.
func (m *Memory) liveLocked(id string, now time.Time) (*memSession, bool) {
	s, ok := m.sessions[id]
	if !ok {
		return nil, false
	}
	if !now.Before(s.deadline) {
		m.removeLocked(id)
		return nil, false
	}
	return s, true
}

func (m *Memory) removeLocked(id string) {
	s, ok := m.sessions[id]
	if !ok {
		return
	}
	delete(m.sessions, id)
	if ids := m.users[s.rec.UserKey]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(m.users, s.rec.UserKey)
		}
	}
}

// CreateSession implements Store.
func (m *Memory) CreateSession(_ context.Context, rec Record, limit Limit) ([]string, error) {
	now := m.now()
	if err := validateRecord(rec, now); err != nil {
		return nil, err
	}
	if err := validateLimit(limit); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	// Replacing an existing ID must not count it twice.
	m.removeLocked(rec.ID)
	var live []Record
	for id := range m.users[rec.UserKey] {
		if s, ok := m.liveLocked(id, now); ok {
			live = append(live, s.rec)
		}
	}
	var evicted []string
	if limit.Max > 0 && len(live) >= limit.Max {
		if limit.Policy == LimitRefuse {
			return nil, ErrLimitReached
		}
		slices.SortFunc(live, compareAge)
		for _, old := range live[:len(live)-limit.Max+1] {
			m.removeLocked(old.ID)
			evicted = append(evicted, old.ID)
		}
	}
	rec.Data = slices.Clone(rec.Data)
	m.sessions[rec.ID] = &memSession{rec: rec, deadline: sessionDeadline(rec, now)}
	ids := m.users[rec.UserKey]
	if ids == nil {
		ids = make(map[string]struct{})
		m.users[rec.UserKey] = ids
	}
	ids[rec.ID] = struct{}{}
	return evicted, nil
}

// compareAge orders records oldest first, ties broken by ID as Redis sorted
// sets do, so both stores evict the same sessions.
func compareAge(a, b Record) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// GetSession implements Store.
func (m *Memory) GetSession(_ context.Context, id string) (Record, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.liveLocked(id, now)
	if !ok {
		return Record{}, ErrNotFound
	}
	s.deadline = sessionDeadline(s.rec, now)
	rec := s.rec
	rec.Data = slices.Clone(rec.Data)
	return rec, nil
}

// UpdateSession implements Store.
func (m *Memory) UpdateSession(_ context.Context, rec Record) error {
	now := m.now()
	if err := validateUpdate(rec, now); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.liveLocked(rec.ID, now)
	if !ok {
		return ErrNotFound
	}
	s.rec.Data = slices.Clone(rec.Data)
	s.rec.ExpiresAt = rec.ExpiresAt
	s.rec.IdleTimeout = rec.IdleTimeout
	s.deadline = sessionDeadline(s.rec, now)
	return nil
}

// DeleteSession implements Store.
func (m *Memory) DeleteSession(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeLocked(id)
	return nil
}

// PutOnce implements Store.
func (m *Memory) PutOnce(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if err := validateTTL(ttl); err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onces[key] = memOnce{value: slices.Clone(value), deadline: now.Add(ttl)}
	return nil
}

// TakeOnce implements Store.
func (m *Memory) TakeOnce(_ context.Context, key string) ([]byte, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.onces[key]
	if !ok {
		return nil, ErrNotFound
	}
	delete(m.onces, key)
	if !now.Before(o.deadline) {
		return nil, ErrNotFound
	}
	return o.value, nil
}

// Put implements Store.
func (m *Memory) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return m.PutOnce(ctx, key, value, ttl)
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) ([]byte, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.onces[key]
	if !ok || !now.Before(o.deadline) {
		return nil, ErrNotFound
	}
	return slices.Clone(o.value), nil
}

// AnyExists implements Store.
func (m *Memory) AnyExists(_ context.Context, keys ...string) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		if o, ok := m.onces[k]; ok && now.Before(o.deadline) {
			return true, nil
		}
	}
	return false, nil
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.onces, key)
	return nil
}

// TryLock implements Store.
func (m *Memory) TryLock(_ context.Context, name string, ttl time.Duration) (Lock, error) {
	if err := validateTTL(ttl); err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.locks[name]; ok && now.Before(l.deadline) {
		return nil, ErrLocked
	}
	m.lockSeq++
	token := strconv.FormatUint(m.lockSeq, 10)
	m.locks[name] = memLock{token: token, deadline: now.Add(ttl)}
	return &memoryLock{m: m, name: name, token: token}, nil
}

// Ping implements Store; memory is always reachable.
func (m *Memory) Ping(context.Context) error { return nil }

// Close stops the janitor and waits for it, so no goroutine outlives the
// store. The maps stay usable; Close is idempotent.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() { close(m.stop) })
	<-m.done
	return nil
}

// memoryLock is a lock held in a Memory store, identified by its token so a
// holder whose lock expired cannot release or extend a successor's lock.
type memoryLock struct {
	m     *Memory
	name  string
	token string
}

var _ Lock = (*memoryLock)(nil)

// Extend implements Lock. An expired lock counts as lost, even if nobody
// took it since: work done after expiry may have overlapped another holder.
func (l *memoryLock) Extend(_ context.Context, ttl time.Duration) error {
	if err := validateTTL(ttl); err != nil {
		return err
	}
	now := l.m.now()
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	cur, ok := l.m.locks[l.name]
	if !ok || cur.token != l.token || !now.Before(cur.deadline) {
		return ErrLocked
	}
	cur.deadline = now.Add(ttl)
	l.m.locks[l.name] = cur
	return nil
}

// Unlock implements Lock.
func (l *memoryLock) Unlock(context.Context) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if cur, ok := l.m.locks[l.name]; ok && cur.token == l.token {
		delete(l.m.locks, l.name)
	}
	return nil
}

// errInvalid marks caller mistakes (never a backend failure and never
// ErrNotFound), so they surface as bugs rather than as logouts.
var errInvalid = errors.New("session: invalid argument")

func validateRecord(rec Record, now time.Time) error {
	if err := validateKeyPart("ID", rec.ID); err != nil {
		return err
	}
	if err := validateKeyPart("UserKey", rec.UserKey); err != nil {
		return err
	}
	if rec.CreatedAt.IsZero() {
		return fmt.Errorf("%w: CreatedAt is zero", errInvalid)
	}
	return validateExpiry(rec, now)
}

func validateUpdate(rec Record, now time.Time) error {
	if err := validateKeyPart("ID", rec.ID); err != nil {
		return err
	}
	return validateExpiry(rec, now)
}

func validateExpiry(rec Record, now time.Time) error {
	// Millisecond granularity: that is what Redis TTLs can express.
	if rec.ExpiresAt.UnixMilli() <= now.UnixMilli() {
		return fmt.Errorf("%w: ExpiresAt %s is not in the future", errInvalid, rec.ExpiresAt.Format(time.RFC3339Nano))
	}
	if rec.IdleTimeout < 0 || (rec.IdleTimeout > 0 && rec.IdleTimeout < time.Millisecond) {
		return fmt.Errorf("%w: IdleTimeout %s is negative or below 1ms", errInvalid, rec.IdleTimeout)
	}
	return nil
}

// validateKeyPart rejects empty values and braces: IDs and user keys end up
// inside Redis cluster hash tags, where a brace would move the key to
// another slot.
func validateKeyPart(field, v string) error {
	if v == "" {
		return fmt.Errorf("%w: empty %s", errInvalid, field)
	}
	if strings.ContainsAny(v, "{}") {
		return fmt.Errorf("%w: %s contains a brace", errInvalid, field)
	}
	return nil
}

func validateLimit(l Limit) error {
	switch l.Policy {
	case "", LimitEvictOldest, LimitRefuse:
		return nil
	default:
		return fmt.Errorf("%w: unknown limit policy %q", errInvalid, l.Policy)
	}
}

func validateTTL(ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("%w: ttl %s is below 1ms", errInvalid, ttl)
	}
	return nil
}
