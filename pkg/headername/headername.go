// Package headername says when two header names are the same header to
// some server. Go and most stacks fold case; CGI-style stacks (and servers
// built on them) also read "_" as "-" (X_Forwarded_User is
// HTTP_X_FORWARDED_USER, like X-Forwarded-User). A header the proxy removes
// or owns must be removed in every such spelling, or a client could pass
// one that an upstream reads as the proxy's.
package headername

import "net/http"

// Normalize folds ASCII case and reads "_" as "-": names with equal
// Normalize forms are the same header to some server.
func Normalize(name string) string {
	return string(AppendNormalized(nil, name))
}

// AppendNormalized appends Normalize(name) to dst, for callers on the hot
// path that look names up in a map through a stack buffer.
func AppendNormalized(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		dst = append(dst, fold(name[i]))
	}
	return dst
}

// Same reports whether a and b are the same header to some server, without
// allocating.
func Same(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if fold(a[i]) != fold(b[i]) {
			return false
		}
	}
	return true
}

// Delete removes every spelling of name from h.
func Delete(h http.Header, name string) {
	for k := range h {
		if Same(k, name) {
			delete(h, k)
		}
	}
}

func fold(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_':
		return '-'
	}
	return c
}
