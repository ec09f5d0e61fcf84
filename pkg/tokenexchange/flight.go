package tokenexchange

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// flights runs at most one exchange per cache key at a time; concurrent
// callers for the key wait for its result.
type flights struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done  chan struct{}
	token string
	err   error
	// waiters counts the callers sharing the call (under flights.mu), so
	// tests can see that concurrent requests joined one exchange.
	waiters int
}

// do runs fn for key unless a run is under way, and waits for the result
// or for ctx to end. fn runs in its own goroutine, so a caller that gives
// up does not cancel the exchange the others wait for.
func (f *flights) do(ctx context.Context, key string, fn func() (string, error)) (string, error) {
	f.mu.Lock()
	c, ok := f.calls[key]
	if !ok {
		c = &call{done: make(chan struct{})}
		f.calls[key] = c
		go func() {
			c.token, c.err = fn()
			f.mu.Lock()
			delete(f.calls, key)
			f.mu.Unlock()
			close(c.done)
		}()
	}
	c.waiters++
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.token, c.err
	case <-ctx.Done():
		return "", fmt.Errorf("tokenexchange: waiting for the exchange: %w", ctx.Err())
	}
}

// maxFailures bounds the failure memory; beyond it an arbitrary entry is
// forgotten (that user may then cause one more exchange).
const maxFailures = 10000

// failures remembers, per cache key, a failed exchange's error until its
// backoff ends. It is per replica: each replica asks the provider at most
// once per user and backoff.
type failures struct {
	mu sync.Mutex
	m  map[string]failure
}

type failure struct {
	err   error
	until time.Time
}

// get returns the remembered error for key while its backoff lasts.
func (f *failures) get(key string, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.m[key]
	if !ok {
		return nil
	}
	if !now.Before(fl.until) {
		delete(f.m, key)
		return nil
	}
	return fl.err
}

// put remembers err for key from now until now+backoff.
func (f *failures) put(key string, err error, now time.Time, backoff time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.m) >= maxFailures {
		for k, fl := range f.m {
			if !now.Before(fl.until) {
				delete(f.m, k)
			}
		}
		for k := range f.m {
			if len(f.m) < maxFailures {
				break
			}
			delete(f.m, k)
		}
	}
	f.m[key] = failure{err: err, until: now.Add(backoff)}
}
