// Package drain moves client connections off a pod that is being deleted,
// before its app stops. The injector points the preStop hook of the app
// container (and of a classic sidecar) at the sidecar's admin endpoint
// config.DrainPath; the kubelet calls it when the pod's deletion begins
// and sends the app SIGTERM only when it returns.
//
// Meanwhile the pod has left its Service's endpoints, but kube-proxy and
// load balancers take a moment to notice, and a client's keep-alive
// connection stays pinned to the pod however long it lives: once the app
// has stopped, every request on it would fail. So while the hook runs,
// and for a while after, the protected listener closes its idle
// connections and every connection after its current response (HTTP/2
// ones with GOAWAY once a stream ends; one idle through the whole drain is
// not closed, Go's server has no way to): clients reconnect, and the new
// connection reaches a pod that stays.
//
// The endpoint changes nothing but connection reuse, for a bounded time,
// because anyone who can reach the admin port can call it.
package drain

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

// KeepAlives switches connection reuse on the protected listener;
// *http.Server's SetKeepAlivesEnabled, which also closes idle connections
// when switching it off.
type KeepAlives interface {
	SetKeepAlivesEnabled(bool)
}

// Limits of a drain request.
const (
	// MaxSeconds is the longest drain a request may ask for.
	MaxSeconds = config.DrainMaxSeconds
	// maxWaiting bounds the requests sleeping at once (the pod's hooks
	// are one or two).
	maxWaiting = 8
)

// Options configure a Drainer.
type Options struct {
	// Linger is how long keep-alives stay off after a drain's sleep: the
	// app stops and the sidecar drains after it, and a connection that
	// was busy with a stream must not be reused once that stream ends.
	// The sidecar's shutdown grace.
	Linger time.Duration
	Logger *zap.Logger
}

// Drainer is the drain endpoint. Its zero value is not usable; call New.
type Drainer struct {
	ka   KeepAlives
	opts Options

	mu      sync.Mutex
	off     bool      // keep-alives are switched off
	until   time.Time // when they go back on
	timer   *time.Timer
	waiting int
}

// New returns a Drainer switching ka.
func New(ka KeepAlives, opts Options) *Drainer {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Drainer{ka: ka, opts: opts}
}

// ServeHTTP serves GET config.DrainPath?seconds=N (1..MaxSeconds): it
// switches keep-alives off for N seconds plus Linger and answers after N
// seconds, or when the caller gives up.
func (d *Drainer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
	if err != nil || secs < 1 || secs > MaxSeconds {
		http.Error(w, fmt.Sprintf("seconds must be a whole number from 1 to %d", MaxSeconds), http.StatusBadRequest)
		return
	}
	if !d.enter() {
		http.Error(w, "too many drain requests at once", http.StatusTooManyRequests)
		return
	}
	defer d.leave()
	wait := time.Duration(secs) * time.Second
	d.keepAlivesOff(wait + d.opts.Linger)
	d.opts.Logger.Info("draining: closing client connections after their current response, so clients move to pods that stay",
		zap.Int("seconds", secs), zap.Duration("keep_alives_off_for", wait+d.opts.Linger))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintf(w, "drained for %ds\n", secs)
	case <-r.Context().Done():
	}
}

// Draining reports whether keep-alives are off.
func (d *Drainer) Draining() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.off
}

func (d *Drainer) enter() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.waiting >= maxWaiting {
		return false
	}
	d.waiting++
	return true
}

func (d *Drainer) leave() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.waiting--
}

// keepAlivesOff switches keep-alives off until at least now+dur; the
// latest end of all drains wins.
func (d *Drainer) keepAlivesOff(dur time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	end := time.Now().Add(dur)
	if d.off && !end.After(d.until) {
		return
	}
	d.until = end
	if !d.off {
		d.off = true
		d.ka.SetKeepAlivesEnabled(false)
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	d.timer = time.AfterFunc(dur, d.expire)
}

// expire switches keep-alives back on once the latest drain has ended:
// a drain nobody followed with SIGTERM must not cost the pod its
// connection reuse for good. (A server already shutting down keeps them
// off.)
func (d *Drainer) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.off || time.Now().Before(d.until) {
		return
	}
	d.off = false
	d.ka.SetKeepAlivesEnabled(true)
	d.opts.Logger.Info("drain period over; client connections may be reused again")
}
