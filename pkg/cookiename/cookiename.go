// Package cookiename owns the rules for the session cookie's name: its
// default and which names a deployment may choose. The configuration
// validator (which reports a bad name with its field path before anything
// starts) and the authenticator (which sets the cookie) both ask this
// package, so the two can never disagree about what is allowed.
package cookiename

import (
	"errors"
	"fmt"
	"strings"
)

// Default names. The __Host- prefix makes browsers refuse the cookie unless
// it is Secure, host-only and Path=/, which stops a sibling subdomain from
// planting or shadowing it; it cannot be used over plain HTTP, hence the
// plain name with insecure cookies.
const (
	SecureDefault   = "__Host-mcp-oidc-session"
	InsecureDefault = "mcp-oidc-session"
)

// securePrefixes are the cookie name prefixes browsers accept only on
// Secure cookies (RFC 6265bis §4.1.3); a cookie set without Secure under
// such a name is silently dropped, so the login would never stick.
var securePrefixes = []string{"__Host-", "__Secure-"}

// ErrInvalid means the name is not an RFC 6265 token.
var ErrInvalid = errors.New("not a valid cookie name")

// ErrNeedsSecure means the name's prefix requires Secure cookies but
// insecure cookies are configured.
var ErrNeedsSecure = errors.New("the cookie name's prefix requires Secure cookies")

// Default is the session cookie's name when none is configured.
func Default(insecure bool) string {
	if insecure {
		return InsecureDefault
	}
	return SecureDefault
}

// Check reports why name cannot be the session cookie's name with the given
// cookie security, or nil. The error wraps ErrInvalid or ErrNeedsSecure and
// says how to fix it.
func Check(name string, insecure bool) error {
	if !validToken(name) {
		return fmt.Errorf("%q is %w: use letters, digits and !#$%%&'*+-.^_`|~ only", name, ErrInvalid)
	}
	if !insecure {
		return nil
	}
	for _, p := range securePrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("%q: %w (%s); drop the prefix or turn insecure cookies off", name, ErrNeedsSecure, p)
		}
	}
	return nil
}

// validToken accepts RFC 6265 token characters.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
