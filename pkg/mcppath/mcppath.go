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
// segments and dropping a trailing slash or a ";parameter" suffix. Routers
// disagree on some of these steps, so every reading a router may apply is
// tried and any that reaches the endpoint matches: a backslash is a
// separator to some (IIS, many Windows-aware frameworks) and an ordinary
// character to others (/x\y/../mcp is /mcp to them), and servlet
// containers drop the ";parameters" of every segment before resolving dot
// segments (/x;y/../mcp is /mcp to them) where others cut the path at the
// first ';'. Every reading also drops anything from a "?", "#" or NUL on
// (servers that decode before splitting off queries or fragments, or stop
// at a NUL) and trailing dots, spaces and control characters (servers that
// trim them, as Windows does file names).
func (m Matcher) Match(u *url.URL) bool {
	p := u.Path
	if raw := u.RawPath; raw != "" {
		// Decode once more: %252F-style double encoding is decoded by
		// some servers' routers.
		if d, err := url.PathUnescape(raw); err == nil {
			p = d
		}
	}
	p = unescape(p)
	for _, backslashSeparates := range []bool{true, false} {
		for _, perSegment := range []bool{false, true} {
			if resolve(p, backslashSeparates, perSegment) == m.want {
				return true
			}
		}
	}
	return false
}

// unescape percent-decodes p up to three times (%252F-style double
// encoding is decoded by some servers' routers).
func unescape(p string) string {
	for range 3 {
		d, err := url.PathUnescape(p)
		if err != nil || d == p {
			break
		}
		p = d
	}
	return p
}

// normalize is the reading of the configured path.
func normalize(p string) string {
	return resolve(unescape(p), true, false)
}

// resolve is one router's reading of a decoded path: backslashSeparates
// reads '\' as '/'; perSegment drops every segment's ";parameters",
// otherwise everything from the first ';' is dropped.
func resolve(p string, backslashSeparates, perSegment bool) string {
	if i := strings.IndexAny(p, "?#\x00"); i >= 0 {
		p = p[:i]
	}
	if backslashSeparates {
		p = strings.ReplaceAll(p, "\\", "/")
	}
	if perSegment {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if j := strings.IndexByte(s, ';'); j >= 0 {
				segs[i] = s[:j]
			}
		}
		p = strings.Join(segs, "/")
	} else if i := strings.IndexByte(p, ';'); i >= 0 {
		p = p[:i]
	}
	p = path.Clean("/" + strings.ToLower(p))
	// Trimming can expose another dot segment or slash ("/mcp/ ."): clean
	// until nothing changes. Every round but the first shortens p.
	for range len(p) + 2 {
		c := path.Clean("/" + strings.TrimRight(p, trimmed))
		if c == p {
			break
		}
		p = c
	}
	return p
}

// trimmed are the characters lenient servers drop from the end of a path.
const trimmed = ". \t\r\n\v\f"
