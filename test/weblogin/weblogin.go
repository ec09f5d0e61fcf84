// Package weblogin plays a browser through the proxy's cookie login: it
// starts the login on one replica, logs in at the test OpenID provider and
// delivers the callback to the same or another replica, returning the
// session cookie. Suites that need a logged-in browser session as a fixture
// share it instead of each scripting the redirects. It does not depend on
// package testing.
package weblogin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
)

// Options describe one login.
type Options struct {
	// Provider is where the user logs in. Required.
	Provider *oidcprovider.Provider
	// StartOn is the base URL of the replica the login starts on. Required.
	StartOn string
	// FinishOn is the base URL of the replica the callback is delivered to;
	// default StartOn.
	FinishOn string
	// ReturnTo is the rd parameter (default "/").
	ReturnTo string
	// CookieName is the session cookie's name. Required.
	CookieName string
	// Transport carries the browser's requests to StartOn (for example one
	// that dials a chosen replica whatever the URL's host); default
	// http.DefaultTransport.
	Transport http.RoundTripper
	// FinishTransport carries the callback to FinishOn; default Transport.
	FinishTransport http.RoundTripper
}

// Login runs the browser flow and returns the session cookie the callback
// set. Every unexpected answer is an error naming the step.
func Login(ctx context.Context, o Options) (*http.Cookie, error) {
	if o.FinishOn == "" {
		o.FinishOn = o.StartOn
	}
	if o.ReturnTo == "" {
		o.ReturnTo = "/"
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("weblogin: cookie jar: %w", err)
	}
	if o.FinishTransport == nil {
		o.FinishTransport = o.Transport
	}
	client := &http.Client{
		Jar:           jar,
		Transport:     o.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := get(ctx, client, o.StartOn+"/oauth2/start?rd="+url.QueryEscape(o.ReturnTo))
	if err != nil {
		return nil, fmt.Errorf("weblogin: start: %w", err)
	}
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(authURL, o.Provider.Issuer()+"/") {
		return nil, fmt.Errorf("weblogin: start answered %d Location %q, want 302 to the provider %s", resp.StatusCode, authURL, o.Provider.Issuer())
	}
	cb, err := o.Provider.Login(ctx, nil, authURL)
	if err != nil {
		return nil, fmt.Errorf("weblogin: provider login: %w", err)
	}
	target, err := url.Parse(o.FinishOn)
	if err != nil {
		return nil, fmt.Errorf("weblogin: FinishOn: %w", err)
	}
	deliver := *cb
	deliver.Host = target.Host
	client.Transport = o.FinishTransport
	resp, err = get(ctx, client, deliver.String())
	if err != nil {
		return nil, fmt.Errorf("weblogin: callback: %w", err)
	}
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != o.ReturnTo {
		return nil, fmt.Errorf("weblogin: callback answered %d Location %q, want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), o.ReturnTo)
	}
	for _, c := range resp.Cookies() {
		if c.Name == o.CookieName && c.Value != "" {
			return &http.Cookie{Name: c.Name, Value: c.Value}, nil
		}
	}
	return nil, fmt.Errorf("weblogin: the callback set no %s cookie", o.CookieName)
}

// get sends a GET and discards the body; the caller reads status and
// headers.
func get(ctx context.Context, client *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp, nil
}
