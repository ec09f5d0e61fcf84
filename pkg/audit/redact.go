package audit

import (
	"encoding/json"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Placeholders written instead of values.
const (
	// redacted replaces the value of a key that matches a redact key.
	redacted = "[REDACTED]"
	// truncated replaces what lies beyond the depth or element limit, and
	// ends a string cut at maxStringBytes.
	truncated       = "[TRUNCATED]"
	truncatedSuffix = "..." + truncated
	// unsupported replaces a value of a type JSON decoding never produces
	// (it could hide anything, so it is not written).
	unsupported = "[UNSUPPORTED]"
)

// Limits on the work Redact does and on what it writes, so a large or
// deeply nested tools/call cannot make the audit line (or the time to
// build it) unbounded.
const (
	// maxDepth is the deepest object or array written; one nested deeper
	// is replaced by "[TRUNCATED]".
	maxDepth = 32
	// maxElements bounds the object members and array elements written in
	// total; past it, an object gets a "[TRUNCATED]" member and an array a
	// "[TRUNCATED]" element, and the rest is left out.
	maxElements = 1000
	// maxStringBytes bounds one string value; a longer one is cut and ends
	// with "...[TRUNCATED]".
	maxStringBytes = 1024
)

// redactor replaces the values of the keys that match its redact keys.
//
// The rule: a key matches when, with its case folded and every character
// that is not a letter or a digit removed, it contains one of the redact
// keys normalised the same way. So "password" matches "Password",
// "db_password" and "x-password-hash"; "api_key" matches "X-Api-Key" and
// "apiKey". Containment errs on the side of hiding: "token" also hides
// "max_tokens". An operator who wants such a value visible lists more
// precise keys (access_token, refresh_token) instead of "token".
type redactor struct {
	keys []string // normalised, non-empty, unique
}

func newRedactor(keys []string) redactor {
	var r redactor
	for _, k := range keys {
		if n := normalizeKey(k); n != "" && !slices.Contains(r.keys, n) {
			r.keys = append(r.keys, n)
		}
	}
	return r
}

// normalizeKey folds case and keeps only letters and digits.
func normalizeKey(k string) string {
	if isNormalASCII(k) {
		return k // the common case ("query", "path"): no copy
	}
	var b strings.Builder
	b.Grow(len(k))
	for _, c := range k {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			b.WriteRune(unicode.ToLower(c))
		}
	}
	return b.String()
}

// isNormalASCII reports whether k is already lower-case ASCII letters and
// digits only.
func isNormalASCII(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// matches reports whether key's value must be redacted.
func (r redactor) matches(key string) bool {
	if len(r.keys) == 0 {
		return false
	}
	n := normalizeKey(key)
	for _, k := range r.keys {
		if strings.Contains(n, k) {
			return true
		}
	}
	return false
}

// redact returns a copy of args with the value of every matching key, at
// any depth (nested objects, objects in arrays), replaced by "[REDACTED]",
// within the depth, element and string limits. args is never modified: the
// policy reads the same map. Object members are visited in key order, so
// what a limit cuts is the same on every run.
func (r redactor) redact(args map[string]any) map[string]any {
	w := walker{r: r, budget: maxElements}
	return w.object(args, 1)
}

type walker struct {
	r      redactor
	budget int // object members and array elements still allowed
}

func (w *walker) object(m map[string]any, depth int) map[string]any {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(map[string]any, min(len(m), w.budget+1))
	for _, k := range keys {
		if w.budget <= 0 {
			out[truncated] = truncated
			break
		}
		w.budget--
		if w.r.matches(k) {
			out[k] = redacted
			continue
		}
		out[k] = w.value(m[k], depth)
	}
	return out
}

func (w *walker) array(a []any, depth int) []any {
	out := make([]any, 0, min(len(a), w.budget+1))
	for _, v := range a {
		if w.budget <= 0 {
			out = append(out, truncated)
			break
		}
		w.budget--
		out = append(out, w.value(v, depth))
	}
	return out
}

// value copies one value found at depth (the depth of its container).
func (w *walker) value(v any, depth int) any {
	switch x := v.(type) {
	case nil, bool, float64, json.Number,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32:
		return x
	case string:
		if len(x) > maxStringBytes {
			return truncateUTF8(x, maxStringBytes) + truncatedSuffix
		}
		return x
	case map[string]any:
		if depth >= maxDepth {
			return truncated
		}
		return w.object(x, depth+1)
	case []any:
		if depth >= maxDepth {
			return truncated
		}
		return w.array(x, depth+1)
	default:
		// Not a type encoding/json decodes into (a json.RawMessage, a
		// struct, a typed map): it could hold a secret under a key this
		// walk cannot see, so it is not written.
		return unsupported
	}
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
