package bearer

import "context"

// Expectation is what the request being served expects of its bearer token
// where that depends on the request. Without a configured external URL the
// resource URL (the audience) and the façade's issuer follow the request's
// base URL, which the proxy has already checked against the hosts the
// operator expects. Carrying them per request lets one validator (one key
// cache) serve every expected host, so no request can make the proxy build,
// fill or evict per-host state that other callers depend on.
type Expectation struct {
	// Issuer is the expected "iss" for validators built with
	// IssuerFromRequest.
	Issuer string
	// Audience is the expected "aud" (the resource URL) for validators built
	// with AudienceFromRequest.
	Audience string
}

type expectationKey struct{}

// WithExpectation returns ctx carrying e for the validators.
func WithExpectation(ctx context.Context, e Expectation) context.Context {
	return context.WithValue(ctx, expectationKey{}, e)
}

// ExpectationFrom returns the Expectation ctx carries, if any.
func ExpectationFrom(ctx context.Context) (Expectation, bool) {
	e, ok := ctx.Value(expectationKey{}).(Expectation)
	return e, ok
}

// expected resolves the issuer and audiences one validation checks: the
// configured ones, or those the request carries where the validator takes
// them from the request. A request that should carry them but does not is
// refused: an empty expectation must never mean "anything goes".
func expected(ctx context.Context, issuer string, audiences []string, issuerFromRequest, audienceFromRequest bool) (string, []string, error) {
	if !issuerFromRequest && !audienceFromRequest {
		return issuer, audiences, nil
	}
	e, _ := ExpectationFrom(ctx)
	if issuerFromRequest {
		if e.Issuer == "" {
			return "", nil, invalid("no expected issuer for this request", nil)
		}
		issuer = e.Issuer
	}
	if audienceFromRequest {
		if e.Audience == "" {
			return "", nil, invalid("no expected audience for this request", nil)
		}
		audiences = []string{e.Audience}
	}
	return issuer, audiences, nil
}
