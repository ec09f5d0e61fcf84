// Package mcppath decides whether a request is addressed to the MCP
// endpoint, the way lenient servers route it. The policy must see every
// request the MCP server will treat as its endpoint: many frameworks route
// /MCP, /mcp/, //mcp or /mcp/./ to the same handler as /mcp, and a check on
// the exact spelling would let those through undecided.
package mcppath

import (
	"net/url"
	"path"
	"strings"
)

// Matcher recognises the MCP endpoint's path in its lenient spellings.
type Matcher struct {
	want string
}

// New returns a Matcher for the configured MCP path (e.g. "/mcp").
func New(mcpPath string) Matcher {
	return Matcher{want: normalize(mcpPath)}
}

// Match reports whether u addresses the MCP endpoint: the same path after
// percent-decoding, case folding, collapsing repeated slashes, resolving dot
// segments, dropping a trailing slash, anything from a ";", "?", "#" or NUL
// on (servers that decode before splitting off parameters, queries or
// fragments, or stop at a NUL) and trailing dots, spaces and control
// characters (servers that trim them, as Windows does file names).
func (m Matcher) Match(u *url.URL) bool {
	p := u.Path
	if raw := u.RawPath; raw != "" {
		// Decode once more: %252F-style double encoding is decoded by
		// some servers' routers.
		if d, err := url.PathUnescape(raw); err == nil {
			p = d
		}
	}
	return normalize(p) == m.want
}

func normalize(p string) string {
	for range 3 {
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			break
		}
		p = d
	}
	if i := strings.IndexAny(p, ";?#\x00"); i >= 0 {
		p = p[:i]
	}
	p = strings.ToLower(strings.ReplaceAll(p, "\\", "/"))
	// Trimming can expose another dot segment or slash ("/mcp/ ."): clean
	// until nothing changes. Every round but the first shortens p.
	for range len(p) + 2 {
		c := path.Clean("/" + strings.TrimRight(path.Clean("/"+p), trimmed))
		if c == p {
			break
		}
		p = c
	}
	return p
}

// trimmed are the characters lenient servers drop from the end of a path.
const trimmed = ". \t\r\n\v\f"
