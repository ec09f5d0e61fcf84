// Package session keeps server-side state that must survive a request and be
// visible to every replica: login sessions, single-use OAuth values (state,
// nonce, PKCE verifier) and short locks. It has a memory implementation for a
// single instance and a Redis one for production; both pass one conformance
// suite (package sessiontest).
package session

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound means the key does not exist or has expired. It is the ONLY
// error that may lead a caller to treat a user as logged out: any other error
// (for example Redis being unreachable) must be surfaced as "temporarily
// unavailable" and must never delete a session.
var ErrNotFound = errors.New("session: not found")

// ErrLocked means another holder owns the lock.
var ErrLocked = errors.New("session: lock held by another holder")

// ErrLimitReached is returned by CreateSession when the per-user limit is
// reached and the policy is LimitRefuse.
var ErrLimitReached = errors.New("session: per-user session limit reached")

// LimitPolicy says what CreateSession does when a user already has the
// maximum number of sessions.
type LimitPolicy string

const (
	// LimitEvictOldest removes the user's oldest sessions (the default).
	LimitEvictOldest LimitPolicy = "evict-oldest"
	// LimitRefuse refuses the new session with ErrLimitReached.
	LimitRefuse LimitPolicy = "refuse"
)

// Record is one stored session. Data is opaque to the store: callers encrypt
// it (see Codec) so that the store never holds tokens in the clear.
type Record struct {
	// ID is the storage key of the session (already derived from the cookie;
	// the store applies its own prefix).
	ID string
	// UserKey groups the sessions of one user for the per-user limit. It
	// should be a hash of the subject, not the subject itself.
	UserKey string
	// Data is the encrypted session payload.
	Data []byte
	// CreatedAt orders sessions for eviction.
	CreatedAt time.Time
	// ExpiresAt is the absolute expiry; the record is gone after it.
	ExpiresAt time.Time
	// IdleTimeout, when > 0, expires the record this long after its last
	// Get or Update, capped by ExpiresAt.
	IdleTimeout time.Duration
}

// Limit is the per-user concurrent session limit applied by CreateSession.
// Max <= 0 means unlimited.
type Limit struct {
	Max    int
	Policy LimitPolicy
}

// Lock is a held distributed lock.
type Lock interface {
	// Extend pushes the lock's expiry to ttl from now. It fails with
	// ErrLocked if the lock was lost (expired and taken by someone else).
	Extend(ctx context.Context, ttl time.Duration) error
	// Unlock releases the lock if it is still held by this holder.
	Unlock(ctx context.Context) error
}

// Sessions keeps login sessions: records with an absolute and an idle
// expiry, grouped per user for the per-user limit. It is the part of the
// store the cookie path reads on every request, so it is the one a cache or
// an instrumenting decorator wraps on its own.
type Sessions interface {
	// CreateSession stores rec and applies limit to rec.UserKey atomically.
	// It returns the IDs of sessions evicted to make room.
	CreateSession(ctx context.Context, rec Record, limit Limit) (evicted []string, err error)
	// GetSession returns the record and slides its idle timeout.
	GetSession(ctx context.Context, id string) (Record, error)
	// UpdateSession replaces Data (and ExpiresAt/IdleTimeout) of an existing
	// record. It returns ErrNotFound if the record is gone.
	UpdateSession(ctx context.Context, rec Record) error
	// DeleteSession removes the record and its entry in the user's index.
	// Deleting a missing record is not an error.
	DeleteSession(ctx context.Context, id string) error
}

// Values keeps plain short-lived values (registered clients, consent
// records, MCP session bindings, revocation markers). It shares its key
// space with SingleUse: Get and AnyExists see values stored by PutOnce, and
// TakeOnce consumes values stored by Put.
type Values interface {
	// Put stores a value that expires after ttl.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Get reads a value stored by Put or PutOnce without consuming it.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes a value stored by Put or PutOnce. Deleting a missing
	// value is not an error.
	Delete(ctx context.Context, key string) error
	// AnyExists reports whether at least one of keys (values stored by Put
	// or PutOnce) exists, in one round trip: the bearer path checks an
	// access token against several revocation markers on every request.
	AnyExists(ctx context.Context, keys ...string) (bool, error)
}

// SingleUse keeps values that may be consumed once across all replicas
// (OAuth state, authorization codes, refresh-token markers).
type SingleUse interface {
	// PutOnce stores a single-use value that expires after ttl.
	PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// TakeOnce atomically reads and deletes a value stored by PutOnce (or
	// Put), so a value can be consumed once across all replicas.
	TakeOnce(ctx context.Context, key string) ([]byte, error)
}

// Locker hands out short distributed locks (the cross-replica token
// refresh).
type Locker interface {
	// TryLock takes the named lock for ttl, or returns ErrLocked.
	TryLock(ctx context.Context, name string, ttl time.Duration) (Lock, error)
}

// Store is the contract both implementations satisfy: every narrow
// interface above, plus the lifecycle the process owner needs. Consumers
// take only the narrow interfaces they use; only the code that builds and
// closes the backend holds a Store. Every method is safe for concurrent
// use, and every multi-step operation is atomic across replicas (Lua
// scripts in Redis, a mutex in memory).
type Store interface {
	Sessions
	Values
	SingleUse
	Locker

	// Ping reports whether the backend is reachable.
	Ping(ctx context.Context) error
	// Close releases connections.
	Close() error
}
