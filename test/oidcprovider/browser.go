package oidcprovider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
)

// ErrLoginFailed means the provider rejected the username or password.
var ErrLoginFailed = errors.New("oidcprovider: login rejected")

// maxHops bounds the redirects Login follows inside the provider.
const maxHops = 10

// Login logs the demo user in like a browser would: it follows authURL (the
// relying party's authorization redirect) to the login page, submits the
// credentials and follows the provider's redirects until one leaves the
// provider. It returns that location, the relying party's callback URL with
// code and state (or error), without requesting it, so a test can deliver
// the callback to any replica. client may be nil; its cookie jar and
// redirect policy are not used (a copy with its own jar is).
func (p *Provider) Login(ctx context.Context, client *http.Client, authURL string) (*url.URL, error) {
	username, password := p.DemoUser()
	return p.LoginAs(ctx, client, authURL, username, password)
}

// LoginAs is Login with explicit credentials; wrong ones give ErrLoginFailed.
func (p *Provider) LoginAs(ctx context.Context, client *http.Client, authURL, username, password string) (*url.URL, error) {
	issuer, err := url.Parse(p.issuer)
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: parse issuer: %w", err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: cookie jar: %w", err)
	}
	c := &http.Client{}
	if client != nil {
		*c = *client
	}
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	next, err := url.Parse(authURL)
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: parse authorization URL: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, next.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: build request: %w", err)
	}
	for range maxHops {
		if next.Scheme != issuer.Scheme || next.Host != issuer.Host {
			return next, nil
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("oidcprovider: %s %s: %w", req.Method, req.URL.Path, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Location()
			if err != nil {
				return nil, fmt.Errorf("oidcprovider: redirect from %s: %w", req.URL.Path, err)
			}
			next = loc
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, next.String(), nil)
			if err != nil {
				return nil, fmt.Errorf("oidcprovider: build request: %w", err)
			}
		case resp.StatusCode == http.StatusOK && req.Method == http.MethodGet && req.URL.Path == loginPath:
			form := url.Values{
				"id":       {req.URL.Query().Get("authRequestID")},
				"username": {username},
				"password": {password},
			}
			req, err = http.NewRequestWithContext(ctx, http.MethodPost, req.URL.ResolveReference(&url.URL{Path: loginPath}).String(), strings.NewReader(form.Encode()))
			if err != nil {
				return nil, fmt.Errorf("oidcprovider: build login request: %w", err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		case resp.StatusCode == http.StatusUnauthorized && req.URL.Path == loginPath:
			return nil, ErrLoginFailed
		default:
			return nil, fmt.Errorf("oidcprovider: %s %s: unexpected status %d: %s", req.Method, req.URL.Path, resp.StatusCode, strings.TrimSpace(string(body)))
		}
	}
	return nil, fmt.Errorf("oidcprovider: more than %d redirects inside the provider", maxHops)
}
