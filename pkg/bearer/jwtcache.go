package bearer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Defaults for the JWT validation cache.
const (
	// DefaultJWTCacheSize bounds the validated-token cache: enough for the
	// active tokens of a busy proxy, small enough to ignore (~2 KiB each).
	DefaultJWTCacheSize = 10000
	// jwtCacheMaxAge bounds how long a verification is reused even when the
	// token lives longer, so a cache entry never outlives a surprise for
	// long (the signing key is re-checked on every hit regardless).
	jwtCacheMaxAge = 5 * time.Minute
)

// jwtCache remembers tokens whose signature and claims verified, so a
// client reusing its access token does not pay for a signature check on
// every request. Keys are SHA-256 digests: the cache never holds a token.
// Only successes are stored; a hit is still refused once the token expires
// (with the validator's skew) or once the key that signed it has left the
// key set.
type jwtCache struct {
	size int

	mu      sync.RWMutex
	entries map[[sha256.Size]byte]*jwtCacheEntry
}

// jwtCacheEntry is one verified token. tok is never handed out: callers
// get a clone, so they cannot change what the next hit returns.
type jwtCacheEntry struct {
	tok *Token
	// iss and aud are the token's, re-checked on every hit against what
	// that request expects.
	iss string
	aud []string
	// exp is the token's exp; a hit re-checks it against now and skew.
	exp time.Time
	// until is the insert time plus jwtCacheMaxAge.
	until time.Time
	// kid, alg and key identify the key that verified the signature; the
	// key must still be in the current key set for a hit.
	kid string
	alg string
	key crypto.PublicKey
}

func newJWTCache(size int) *jwtCache {
	return &jwtCache{size: size, entries: make(map[[sha256.Size]byte]*jwtCacheEntry)}
}

// get returns the entry for sum if it is still within its lifetime at now
// (exp plus skew, and the cache's max age); an outlived entry is dropped.
func (c *jwtCache) get(sum [sha256.Size]byte, now time.Time, skew time.Duration) *jwtCacheEntry {
	c.mu.RLock()
	e := c.entries[sum]
	c.mu.RUnlock()
	if e == nil {
		return nil
	}
	if !e.live(now, skew) {
		c.remove(sum, e)
		return nil
	}
	return e
}

// live mirrors checkClaims' expiry rule (expired once now-skew is after
// exp) and applies the cache's max age.
func (e *jwtCacheEntry) live(now time.Time, skew time.Duration) bool {
	return !now.Add(-skew).After(e.exp) && now.Before(e.until)
}

// remove drops sum if it still maps to e (a concurrent insert may have
// replaced it with a fresh entry, which must stay).
func (c *jwtCache) remove(sum [sha256.Size]byte, e *jwtCacheEntry) {
	c.mu.Lock()
	if c.entries[sum] == e {
		delete(c.entries, sum)
	}
	c.mu.Unlock()
}

// put stores e under sum. When the cache is full it first drops outlived
// entries and then, if that freed nothing, an arbitrary quarter (Go's map
// order), which keeps eviction O(n) only once per size/4 inserts.
func (c *jwtCache) put(sum [sha256.Size]byte, e *jwtCacheEntry, now time.Time, skew time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sum]; !ok && len(c.entries) >= c.size {
		for k, old := range c.entries {
			if !old.live(now, skew) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.size {
			drop := max(c.size/4, 1)
			for k := range c.entries {
				if drop == 0 {
					break
				}
				delete(c.entries, k)
				drop--
			}
		}
	}
	c.entries[sum] = e
}

// len is the number of entries (for tests).
func (c *jwtCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// keyStillTrusted reports whether set still publishes key for signatures
// under kid and alg: a key removed from the set (rotation, compromise)
// stops vouching for tokens it signed, cached or not.
func keyStillTrusted(set *jose.JSONWebKeySet, kid, alg string, key crypto.PublicKey) bool {
	for k := range eachCandidateKey(set, jose.Header{KeyID: kid, Algorithm: alg}) {
		if sameKeyObject(k, key) {
			return true
		}
		if eq, ok := k.(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(key) {
			return true
		}
	}
	return false
}

// sameKeyObject reports whether a and b are the same RSA or ECDSA key
// object, as they are while the key set the token was verified with is
// still the cached one: then the comparison by value (which for ECDSA
// encodes both points) is not needed.
func sameKeyObject(a, b crypto.PublicKey) bool {
	switch a := a.(type) {
	case *ecdsa.PublicKey:
		b, ok := b.(*ecdsa.PublicKey)
		return ok && a == b
	case *rsa.PublicKey:
		b, ok := b.(*rsa.PublicKey)
		return ok && a == b
	}
	return false
}
