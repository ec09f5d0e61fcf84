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
// segments and dropping a trailing slash or a ";parameter" suffix. Servlet
// containers drop the ";parameters" of every segment before resolving dot
// segments (/x;y/../mcp is /mcp to them), so that reading matches too.
func (m Matcher) Match(u *url.URL) bool {
	p := u.Path
	if raw := u.RawPath; raw != "" {
		// Decode once more: %252F-style double encoding is decoded by
		// some servers' routers.
		if d, err := url.PathUnescape(raw); err == nil {
			p = d
		}
	}
	return normalize(p) == m.want || normalize(dropSegmentParams(p)) == m.want
}

// dropSegmentParams removes the ";parameters" of every segment, after the
// same decoding normalize does.
func dropSegmentParams(p string) string {
	p = unescape(p)
	segs := strings.Split(strings.ReplaceAll(p, "\\", "/"), "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	return strings.Join(segs, "/")
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

func normalize(p string) string {
	p = unescape(p)
	if i := strings.IndexByte(p, ';'); i >= 0 {
		p = p[:i]
	}
	p = strings.ToLower(strings.ReplaceAll(p, "\\", "/"))
	p = path.Clean("/" + p)
	return p
}
