package oidc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// ErrUnreachable means the provider could not be reached or answered with
// a server error: the failure is the provider's availability, not the
// request, so callers answer 503 and the user retries later.
var ErrUnreachable = errors.New("oidc: identity provider unreachable")

// Reachability checks are cached: a login flood probes the provider at most
// once per reachableTTL, and one probe waits at most probeTimeout.
const (
	reachableTTL = 3 * time.Second
	probeTimeout = 2 * time.Second
)

// reachability is the last known answer to "does the provider answer?".
// It uses real time, not Options.Now: it measures the network, not tokens.
type reachability struct {
	mu      sync.Mutex
	checked time.Time
	err     error
	probing bool
}

// Reachable reports whether the provider answers right now (nil) or wraps
// ErrUnreachable. A login must not be started when it is down: the browser
// would be sent to a provider that cannot show a login page, and the code
// could not be redeemed. The answer is the last probe of the discovery
// document, or the last token request, if younger than reachableTTL;
// otherwise this call probes. While one probe runs, other callers get the
// previous answer instead of queueing behind it.
func (rp *RelyingParty) Reachable(ctx context.Context) error {
	r := &rp.reach
	r.mu.Lock()
	if r.probing || (!r.checked.IsZero() && time.Since(r.checked) < reachableTTL) {
		err := r.err
		r.mu.Unlock()
		return err
	}
	r.probing = true
	r.mu.Unlock()

	err := rp.probe(ctx)
	r.mu.Lock()
	r.checked, r.err, r.probing = time.Now(), err, false
	r.mu.Unlock()
	return err
}

// probe fetches the discovery document. Any answer below 500 counts as
// reachable: the provider is up, whatever it thinks of the request.
func (rp *RelyingParty) probe(ctx context.Context) error {
	// Not cut short by the request that happened to trigger the probe: its
	// answer is shared with every caller until reachableTTL passes.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rp.issuer+wellKnownSuffix, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	resp, err := rp.httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode >= http.StatusInternalServerError {
		return fmt.Errorf("%w: discovery answered %s", ErrUnreachable, resp.Status)
	}
	return nil
}

// observe records the outcome of a token request as the provider's
// reachability, so a failed code exchange refuses the next login at once
// and a successful one ends an outage without waiting for a probe. It
// returns err, wrapped with ErrUnreachable when it is a network failure or
// a server error.
func (rp *RelyingParty) observe(err error) error {
	var re *oauth2.RetrieveError
	switch {
	case err == nil, errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < http.StatusInternalServerError:
		// The provider answered.
		rp.record(nil)
		return err
	case errors.Is(err, context.Canceled):
		// The client went away; that says nothing about the provider.
		return err
	default:
		err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		rp.record(err)
		return err
	}
}

func (rp *RelyingParty) record(err error) {
	rp.reach.mu.Lock()
	defer rp.reach.mu.Unlock()
	rp.reach.checked, rp.reach.err = time.Now(), err
}
