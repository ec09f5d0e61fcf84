// Package publicpath decides which request paths skip authentication
// (public_paths). It is its own package because getting it wrong opens the
// MCP server: only clean paths can match, so no path an upstream reads
// differently can slip past authentication.
package publicpath

import (
	"path"
	"strings"
)

// Set matches unauthenticated paths. Only clean paths can match, so
// "/public/../mcp" or "/public/%2e%2e/mcp" never skip authentication. Paths
// that upstream stacks may read differently from us never match either:
// a ";" (Java servlet containers drop ";params", so "/public/..;/mcp" reaches
// them as "/mcp"), a "%" left after decoding (an upstream that decodes again
// turns "%2e%2e" into ".."), a backslash or a control character.
type Set struct {
	exact    map[string]bool
	prefixes []string
}

// New returns the Set of list: exact paths, and prefixes written "/prefix/*".
func New(list []string) *Set {
	p := &Set{exact: map[string]bool{}}
	for _, e := range list {
		if prefix, ok := strings.CutSuffix(e, "/*"); ok {
			p.prefixes = append(p.prefixes, prefix+"/")
			continue
		}
		p.exact[e] = true
	}
	return p
}

// Match reports whether urlPath (r.URL.Path, already decoded) is public.
func (p *Set) Match(urlPath string) bool {
	if urlPath == "" || path.Clean(urlPath) != urlPath && path.Clean(urlPath)+"/" != urlPath {
		return false
	}
	if strings.Contains(urlPath, "//") || strings.ContainsFunc(urlPath, func(r rune) bool {
		return r == '\\' || r == ';' || r == '%' || r < 0x20 || r == 0x7f
	}) {
		return false
	}
	if p.exact[urlPath] {
		return true
	}
	for _, pre := range p.prefixes {
		if strings.HasPrefix(urlPath, pre) {
			return true
		}
	}
	return false
}
