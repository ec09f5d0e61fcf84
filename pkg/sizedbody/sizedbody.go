// Package sizedbody stops a proxied request body at its declared length.
//
// A reverse proxy streams the client's request body into the upstream
// request while the upstream's answer streams back. Go's transport writes a
// body of known length and then reads once more to check that nothing
// follows. Go's server, meanwhile, when the handler starts writing the
// answer, reads what is left of the client's body and closes it. When the
// upstream answers fast enough (an SSE stream that starts at once), the
// transport's extra read comes after that close, fails with "http: invalid
// Read on closed Body", and the transport drops the upstream connection in
// the middle of the answer: the client gets a truncated response. Ending
// the body at its Content-Length means the extra read never reaches the
// client's body.
package sizedbody

import (
	"io"
	"net/http"
)

// New returns body ending after n bytes, with io.EOF and without reading
// body again. A body of unknown or zero length, or none, is returned as it
// is (a wrapped empty body would make the transport send it chunked).
func New(body io.ReadCloser, n int64) io.ReadCloser {
	if body == nil || body == http.NoBody || n <= 0 {
		return body
	}
	return &sized{ReadCloser: body, left: n}
}

type sized struct {
	io.ReadCloser
	left int64
}

func (s *sized) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.ReadCloser.Read(p)
	s.left -= int64(n)
	if err == nil && s.left <= 0 {
		err = io.EOF
	}
	return n, err
}
