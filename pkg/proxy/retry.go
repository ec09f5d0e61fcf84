package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
)

// RetryOptions configure how requests ride out an upstream restart. Only a
// refused connection is retried (nothing reached the upstream), and only for
// requests that cannot double-execute anything: GET, HEAD, OPTIONS, PUT and
// DELETE without a body or with a replayable one (GetBody). MCP JSON-RPC
// POSTs are never retried, because a retried tools/call could run a tool
// twice.
type RetryOptions struct {
	// Attempts is the total number of tries, including the first. Zero means
	// 3; 1 disables retries.
	Attempts int
	// InitialBackoff is the wait before the first retry; it doubles for each
	// further retry. Zero means 50ms.
	InitialBackoff time.Duration
	// MaxBackoff caps a single wait. Zero means 1s.
	MaxBackoff time.Duration
}

func (o RetryOptions) withDefaults() RetryOptions {
	if o.Attempts == 0 {
		o.Attempts = 3
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 50 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Second
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	return o
}

// backoff returns the wait before retry number n (0-based): exponential,
// capped, with "equal jitter" (half fixed, half random) so replicas that all
// lost the same upstream do not reconnect in lockstep.
func (o RetryOptions) backoff(n int) time.Duration {
	d := o.InitialBackoff
	for i := 0; i < n && d < o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, o.MaxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// retryTransport retries idempotent requests whose dial was refused.
type retryTransport struct {
	next   http.RoundTripper
	opts   RetryOptions
	logger *zap.Logger
}

var _ http.RoundTripper = (*retryTransport)(nil)

// replayable reports whether req may be sent again after a refused dial.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil || t.opts.Attempts <= 1 || !replayable(req) {
		return resp, err
	}
	for attempt := 1; attempt < t.opts.Attempts && errors.Is(err, syscall.ECONNREFUSED); attempt++ {
		if werr := wait(req.Context(), t.opts.backoff(attempt-1)); werr != nil {
			return nil, fmt.Errorf("waiting to retry upstream after %w: %w", err, werr)
		}
		next := req
		if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
			body, berr := req.GetBody()
			if berr != nil {
				return nil, fmt.Errorf("replaying request body: %w", berr)
			}
			next = req.Clone(req.Context())
			next.Body = body
		}
		t.logger.Debug("retrying refused upstream connection",
			zap.String("request_id", requestid.FromContext(req.Context())), zap.Int("attempt", attempt+1), zap.String("method", req.Method), zap.String("path", req.URL.Path))
		resp, err = t.next.RoundTrip(next)
	}
	return resp, err
}

// wait sleeps for d or until ctx is done, whichever is first.
func wait(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
