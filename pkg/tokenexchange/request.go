package tokenexchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// golang.org/x/oauth2 has no RFC 8693 client (only an internal one for
// Google's STS), and its client credentials flow would have to be bent to
// send this grant; the request is a small form POST, done here.

// maxResponseBytes bounds the provider's answer.
const maxResponseBytes = 1 << 20

// ProviderError is the provider's error response (RFC 6749 §5.2), wrapped
// in ErrExchangeFailed.
type ProviderError struct {
	// Status is the HTTP status of the answer.
	Status int
	// Code is the "error" member, e.g. invalid_target, invalid_grant,
	// unauthorized_client, unsupported_grant_type; empty when the answer
	// was not an OAuth error document.
	Code string
	// Description is "error_description", for operators' logs.
	Description string
}

func (e *ProviderError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("identity provider answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("identity provider answered HTTP %d %s", e.Status, e.Code)
}

// result is a successful exchange.
type result struct {
	token string
	// expiry is zero when the provider sent no expires_in.
	expiry time.Time
}

// response is the RFC 8693 §2.2.1 answer.
type response struct {
	AccessToken     string          `json:"access_token"`
	IssuedTokenType string          `json:"issued_token_type"`
	TokenType       string          `json:"token_type"`
	ExpiresIn       json.RawMessage `json:"expires_in"`
	Scope           string          `json:"scope"`
}

// errorResponse is the RFC 6749 §5.2 error document.
type errorResponse struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// exchange posts one token exchange request. Every error wraps
// ErrExchangeFailed.
func (e *Exchanger) exchange(ctx context.Context, s Subject) (*result, error) {
	endpoint, err := e.endpoint()
	if err != nil {
		return nil, fmt.Errorf("%w: token endpoint: %w", ErrExchangeFailed, err)
	}
	form := url.Values{
		"grant_type":           {GrantType},
		"subject_token":        {s.Token},
		"subject_token_type":   {s.TokenType},
		"requested_token_type": {TokenTypeAccessToken},
		"audience":             {e.opts.Audience},
	}
	if e.scopes != "" {
		form.Set("scope", e.scopes)
	}
	basic := endpoint.AuthStyle != oauth2.AuthStyleInParams
	if !basic {
		form.Set("client_id", e.opts.ClientID)
		if e.opts.ClientSecret != "" {
			form.Set("client_secret", e.opts.ClientSecret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: build request: %w", ErrExchangeFailed, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// RFC 6749 §2.3.1: form-encode both before Basic, as x/oauth2 does.
		req.SetBasicAuth(url.QueryEscape(e.opts.ClientID), url.QueryEscape(e.opts.ClientSecret))
	}
	resp, err := e.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrExchangeFailed, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%w: read answer: %w", ErrExchangeFailed, err)
	}
	if resp.StatusCode != http.StatusOK {
		pe := &ProviderError{Status: resp.StatusCode}
		var er errorResponse
		if json.Unmarshal(body, &er) == nil {
			pe.Code, pe.Description = er.Error, er.ErrorDescription
		}
		return nil, fmt.Errorf("%w: %w", ErrExchangeFailed, pe)
	}
	return e.parse(resp.Header.Get("Content-Type"), body)
}

// endpoint is the token endpoint to post to.
func (e *Exchanger) endpoint() (oauth2.Endpoint, error) {
	var ep oauth2.Endpoint
	if e.opts.Endpoint != nil {
		var err error
		if ep, err = e.opts.Endpoint(); err != nil && e.opts.TokenURL == "" {
			return oauth2.Endpoint{}, err
		}
	}
	if e.opts.TokenURL != "" {
		ep.TokenURL = e.opts.TokenURL
	}
	if ep.TokenURL == "" {
		return oauth2.Endpoint{}, errors.New("no token endpoint")
	}
	return ep, nil
}

// parse checks a successful answer: an access token usable as a bearer
// token, and its lifetime.
func (e *Exchanger) parse(contentType string, body []byte) (*result, error) {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt != "application/json" {
		return nil, fmt.Errorf("%w: answer is %s, not JSON", ErrExchangeFailed, mt)
	}
	var r response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: answer is not a token response: %w", ErrExchangeFailed, err)
	}
	if r.AccessToken == "" {
		return nil, fmt.Errorf("%w: answer has no access_token", ErrExchangeFailed)
	}
	switch r.IssuedTokenType {
	case "", TokenTypeAccessToken, TokenTypeJWT:
	default:
		return nil, fmt.Errorf("%w: issued_token_type %q is not an access token", ErrExchangeFailed, r.IssuedTokenType)
	}
	if r.TokenType != "" && !strings.EqualFold(r.TokenType, "bearer") {
		// A DPoP- or otherwise bound token is useless in a plain header.
		return nil, fmt.Errorf("%w: token_type %q is not Bearer", ErrExchangeFailed, r.TokenType)
	}
	res := &result{token: r.AccessToken}
	if secs, ok := expiresIn(r.ExpiresIn); ok {
		res.expiry = e.opts.Now().Add(time.Duration(secs) * time.Second)
	}
	return res, nil
}

// expiresIn reads expires_in, a number of seconds; some providers send it
// as a string.
func expiresIn(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false
	}
	s := strings.Trim(string(raw), `"`)
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 && f < 1<<31 {
		return int64(f), true
	}
	return 0, false
}

// errorFields describe an exchange error for the log, never with a token:
// the provider's description is cut short and scrubbed of the subject
// token in case a provider echoes it.
func errorFields(err error, subjectToken string) []zap.Field {
	fields := []zap.Field{zap.String("error", scrub(err.Error(), subjectToken))}
	var pe *ProviderError
	if errors.As(err, &pe) {
		fields = append(fields, zap.Int("provider_status", pe.Status), zap.String("provider_error", pe.Code))
		if pe.Description != "" {
			fields = append(fields, zap.String("provider_error_description", scrub(pe.Description, subjectToken)))
		}
	}
	return fields
}

// maxLoggedDescription bounds provider text copied into logs.
const maxLoggedDescription = 300

func scrub(s, token string) string {
	if token != "" {
		s = strings.ReplaceAll(s, token, "[REDACTED]")
	}
	if len(s) > maxLoggedDescription {
		s = s[:maxLoggedDescription] + "…"
	}
	return s
}
