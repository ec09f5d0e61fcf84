package proxy

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// ErrCircuitOpen is returned by the transport, without dialing, while the
// circuit breaker is open. The proxy answers it with 503 circuit_open.
var ErrCircuitOpen = errors.New("proxy: circuit breaker open: upstream recently unreachable")

// Breaker states as reported to Observer.BreakerStateChanged.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half-open"
)

// BreakerOptions configure the circuit breaker that stops the proxy from
// dialing an upstream that is down (restarting, crash-looping) on every
// request, which would pile up goroutines and slow clients down for nothing.
type BreakerOptions struct {
	// Failures is the number of consecutive requests that could not connect
	// (every attempt's dial failed: refused, unreachable, dial timeout) after
	// which the breaker opens. Any upstream response, whatever its status,
	// resets the count. Zero means 5; a negative value disables the breaker.
	Failures int
	// OpenDuration is how long the breaker stays open before it lets a single
	// trial request through (half-open). Zero means 5s.
	OpenDuration time.Duration
	// Now is the clock; nil means time.Now. Tests inject a fake clock so the
	// open -> half-open transition is deterministic.
	Now func() time.Time
}

type breakerState int32

const (
	stateClosed breakerState = iota
	stateOpen
	stateHalfOpen
)

func (s breakerState) String() string {
	switch s {
	case stateOpen:
		return BreakerOpen
	case stateHalfOpen:
		return BreakerHalfOpen
	default:
		return BreakerClosed
	}
}

// breaker is a consecutive-failure circuit breaker. Only connection failures
// count: an upstream that answers, with any status, is up.
type breaker struct {
	threshold int
	openFor   time.Duration
	now       func() time.Time
	onChange  func(state string)

	// healthy is true while closed with no recorded failure; it lets the hot
	// path skip the mutex entirely.
	healthy atomic.Bool

	mu            sync.Mutex
	state         breakerState
	failures      int
	openedAt      time.Time
	trialInFlight bool
}

func newBreaker(o BreakerOptions, onChange func(string)) *breaker {
	b := &breaker{threshold: o.Failures, openFor: o.OpenDuration, now: o.Now, onChange: onChange}
	if b.threshold == 0 {
		b.threshold = 5
	}
	if b.openFor <= 0 {
		b.openFor = 5 * time.Second
	}
	if b.now == nil {
		b.now = time.Now
	}
	b.healthy.Store(true)
	return b
}

// allow decides whether a request may dial. trial is true for the single
// request let through in half-open state.
func (b *breaker) allow() (trial bool, err error) {
	if b.healthy.Load() {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateOpen:
		if b.now().Sub(b.openedAt) < b.openFor {
			return false, ErrCircuitOpen
		}
		b.setState(stateHalfOpen)
		b.trialInFlight = true
		return true, nil
	case stateHalfOpen:
		if b.trialInFlight {
			return false, ErrCircuitOpen
		}
		b.trialInFlight = true
		return true, nil
	default:
		return false, nil
	}
}

// success records a response from the upstream: it is up, so close.
func (b *breaker) success(trial bool) {
	if !trial && b.healthy.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	if trial {
		b.trialInFlight = false
	}
	if b.state != stateClosed {
		b.setState(stateClosed)
		b.trialInFlight = false
	}
	b.healthy.Store(true)
}

// failure records a connection failure.
func (b *breaker) failure(trial bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.healthy.Store(false)
	b.failures++
	switch {
	case b.state == stateHalfOpen && trial:
		b.trialInFlight = false
		b.openedAt = b.now()
		b.setState(stateOpen)
	case b.state == stateClosed && b.failures >= b.threshold:
		b.openedAt = b.now()
		b.setState(stateOpen)
	}
}

// neutral records an outcome that says nothing about the upstream (the
// client went away, a read timed out); it only frees the trial slot.
func (b *breaker) neutral(trial bool) {
	if !trial {
		return
	}
	b.mu.Lock()
	b.trialInFlight = false
	b.mu.Unlock()
}

// setState must be called with mu held.
func (b *breaker) setState(s breakerState) {
	if b.state == s {
		return
	}
	b.state = s
	if b.onChange != nil {
		b.onChange(s.String())
	}
}

// isConnFailure reports whether err means the upstream could not be reached
// at all, as opposed to a failure after it accepted the connection.
func isConnFailure(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// breakerTransport fails fast while the breaker is open and feeds every
// upstream outcome into it.
type breakerTransport struct {
	next   http.RoundTripper
	b      *breaker
	logger *zap.Logger
}

var _ http.RoundTripper = (*breakerTransport)(nil)

func (t *breakerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	trial, err := t.b.allow()
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	switch {
	case err == nil:
		t.b.success(trial)
	case isConnFailure(err):
		t.b.failure(trial)
	default:
		t.b.neutral(trial)
	}
	return resp, err
}
