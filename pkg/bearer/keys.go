package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

type keyCacheOptions struct {
	issuer          string
	jwksURL         string
	client          *http.Client
	now             func() time.Time
	refreshInterval time.Duration
	maxAge          time.Duration
}

// keyCache holds an issuer's JWKS. Fetches are single-flight (concurrent
// callers share one request) and forced refreshes are rate-limited, so a
// flood of tokens with made-up kids costs the IdP at most one request per
// refresh interval.
type keyCache struct {
	opts keyCacheOptions

	mu        sync.Mutex
	jwksURL   string
	set       *jose.JSONWebKeySet
	fetchedAt time.Time // last successful fetch
	tried     time.Time // last attempt, successful or not
	lastErr   error
	inflight  *fetchCall

	// fresh is the last successful fetch (set and fetchedAt, written under
	// mu), read without the lock by get: every validation asks for the
	// keys, and a mutex there serialised all requests on one lock.
	fresh atomic.Pointer[fetchedKeys]
}

// fetchedKeys is one successful fetch, as get reads it.
type fetchedKeys struct {
	set *jose.JSONWebKeySet
	at  time.Time
}

type fetchCall struct {
	done chan struct{}
	set  *jose.JSONWebKeySet
	err  error
}

func newKeyCache(opts keyCacheOptions) *keyCache {
	return &keyCache{opts: opts, jwksURL: opts.jwksURL}
}

// get returns the cached keys, fetching them when there are none yet or
// they are older than maxAge (stale keys are kept if that fetch fails).
func (c *keyCache) get(ctx context.Context) (*jose.JSONWebKeySet, error) {
	return c.getAt(ctx, c.opts.now())
}

// getAt is get with the current time already read by the caller.
func (c *keyCache) getAt(ctx context.Context, now time.Time) (*jose.JSONWebKeySet, error) {
	if f := c.fresh.Load(); f != nil && now.Sub(f.at) < c.opts.maxAge {
		return f.set, nil
	}
	return c.refresh(ctx)
}

// refresh fetches the keys unless an attempt happened within the refresh
// interval, in which case the cached keys (or the last error) are
// returned.
func (c *keyCache) refresh(ctx context.Context) (*jose.JSONWebKeySet, error) {
	c.mu.Lock()
	if call := c.inflight; call != nil {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.set, call.err
		case <-ctx.Done():
			return nil, unavailable("wait for key fetch", ctx.Err())
		}
	}
	now := c.opts.now()
	if !c.tried.IsZero() && now.Sub(c.tried) < c.opts.refreshInterval && (c.set == nil || now.Sub(c.fetchedAt) < c.opts.maxAge) {
		set, err := c.set, c.lastErr
		c.mu.Unlock()
		if set != nil {
			return set, nil
		}
		return nil, err
	}
	call := &fetchCall{done: make(chan struct{})}
	c.inflight = call
	jwksURL := c.jwksURL
	c.mu.Unlock()

	// The fetch outlives a cancelled caller: other callers wait for it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	set, discovered, err := c.fetch(fctx, jwksURL)

	c.mu.Lock()
	c.inflight = nil
	c.tried = c.opts.now()
	if discovered != "" {
		c.jwksURL = discovered
	}
	if err == nil {
		c.set, c.fetchedAt, c.lastErr = set, c.tried, nil
		c.fresh.Store(&fetchedKeys{set: set, at: c.tried})
	} else {
		c.lastErr = err
		if c.set != nil {
			// Keep serving with the keys we have; the IdP may be briefly down.
			set, err = c.set, nil
		}
	}
	c.mu.Unlock()
	call.set, call.err = set, err
	close(call.done)
	return set, err
}

// fetch gets the JWKS, discovering its URL first when needed.
func (c *keyCache) fetch(ctx context.Context, jwksURL string) (set *jose.JSONWebKeySet, discovered string, err error) {
	if jwksURL == "" {
		jwksURL, err = c.discover(ctx)
		if err != nil {
			return nil, "", err
		}
		discovered = jwksURL
	}
	var s jose.JSONWebKeySet
	if err := getJSON(ctx, c.opts.client, jwksURL, &s); err != nil {
		return nil, discovered, unavailable("fetch JWKS", err)
	}
	return &s, discovered, nil
}

// discover reads jwks_uri from the issuer's OpenID configuration, or else
// its RFC 8414 authorization server metadata, and insists the document
// names the configured issuer (OpenID Discovery 4.3, RFC 8414 3.3).
func (c *keyCache) discover(ctx context.Context) (string, error) {
	var errs []error
	for _, u := range metadataURLs(c.opts.issuer) {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := getJSON(ctx, c.opts.client, u, &doc); err != nil {
			errs = append(errs, err)
			continue
		}
		if strings.TrimSuffix(doc.Issuer, "/") != strings.TrimSuffix(c.opts.issuer, "/") {
			errs = append(errs, fmt.Errorf("%s names issuer %q", u, doc.Issuer))
			continue
		}
		if doc.JWKSURI == "" {
			errs = append(errs, fmt.Errorf("%s has no jwks_uri", u))
			continue
		}
		return doc.JWKSURI, nil
	}
	return "", unavailable("discover JWKS URL", errors.Join(errs...))
}

// metadataURLs are the discovery locations for issuer: OpenID's appended
// form, and RFC 8414's path-inserted form.
func metadataURLs(issuer string) []string {
	iss := strings.TrimSuffix(issuer, "/")
	urls := []string{iss + "/.well-known/openid-configuration"}
	if u, err := url.Parse(iss); err == nil && u.Host != "" {
		p := u.Path
		u.Path = "/.well-known/oauth-authorization-server" + p
		urls = append(urls, u.String())
	}
	return urls
}

// getJSON GETs u and decodes a bounded JSON body into out.
func getJSON(ctx context.Context, client *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocumentSize))
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocumentSize)).Decode(out); err != nil {
		return fmt.Errorf("decode %s: %w", u, err)
	}
	return nil
}
