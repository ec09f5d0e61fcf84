package bearer

// Expectation is what the request being served expects of its bearer token
// where that depends on the request. Without a configured external URL the
// resource URL (the audience) and the façade's issuer follow the request's
// base URL, which the proxy has already checked against the hosts the
// operator expects. Passing them with each validation lets one validator
// (one key cache) serve every expected host, so no request can make the
// proxy build, fill or evict per-host state that other callers depend on.
// It is an argument of Validator.Validate rather than a context value so
// that every caller has to say what it expects.
type Expectation struct {
	// Issuer is the expected "iss" for validators built with
	// IssuerFromRequest.
	Issuer string
	// Audience is the expected "aud" (the resource URL) for validators built
	// with AudienceFromRequest.
	Audience string
}

// expected resolves the issuer and audiences one validation checks: the
// configured ones, or those the request expects (e) where the validator
// takes them from the request. An empty expectation where one is needed is
// refused: it must never mean "anything goes".
func expected(e Expectation, issuer string, audiences []string, issuerFromRequest, audienceFromRequest bool) (string, []string, error) {
	if !issuerFromRequest && !audienceFromRequest {
		return issuer, audiences, nil
	}
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
