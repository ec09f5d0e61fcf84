// Package returnurl decides whether a "return to" value taken from a request
// may be used as a redirect target after login. Only same-origin relative
// paths pass, so the login flow can never be turned into an open redirect.
package returnurl

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// Default is where a user lands when the requested return URL is rejected.
const Default = "/"

// maxLen bounds the accepted value: return URLs travel through server-side
// state and Location headers, and nothing legitimate is this long.
const maxLen = 2048

// maxDecodeRounds bounds repeated percent-decoding. Browsers and
// intermediaries decode at most a couple of times; a few more rounds catch
// double/triple-encoded tricks without letting input drive unbounded work.
const maxDecodeRounds = 4

// Validate returns raw unchanged and true when it is a same-origin relative
// path ("/app?x=1"), and Default and false otherwise. It rejects
// protocol-relative forms ("//host", "/\host"), backslashes, whitespace and
// control characters (browsers strip tabs and newlines, turning "/\t/evil"
// into "//evil"), schemes, hosts, and any of those hidden behind one or more
// layers of percent-encoding.
func Validate(raw string) (string, bool) {
	if raw == "" || len(raw) > maxLen || !utf8.ValidString(raw) {
		return Default, false
	}
	s := raw
	for round := 0; ; round++ {
		// A raw space is never sent by a browser in a URL it built; a decoded
		// one ("%20") is ordinary content once the value starts with "/".
		if !safeForm(s, round > 0) {
			return Default, false
		}
		if !strings.Contains(s, "%") {
			break
		}
		if round == maxDecodeRounds {
			// Still encoded after the bound: refuse rather than guess.
			return Default, false
		}
		dec, err := url.PathUnescape(s)
		if err != nil {
			return Default, false
		}
		if dec == s {
			break
		}
		s = dec
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return Default, false
	}
	if !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return Default, false
	}
	return raw, true
}

// safeForm checks one (possibly decoded) form of the value.
func safeForm(s string, allowSpace bool) bool {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") {
		return false
	}
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == '\\':
			return false
		case r == ' ' && allowSpace:
		case r <= 0x20 || r == 0x7f:
			// Control characters and spaces: browsers strip or reinterpret
			// them, which is how "/\t/evil.com" becomes "//evil.com".
			return false
		case r >= 0x80 && r <= 0x9f:
			// C1 controls.
			return false
		case r == '\u2028' || r == '\u2029' || r == '\ufeff':
			return false
		}
	}
	return true
}
