package sizedbody

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// closedAfter is a client body the server has closed once n bytes were
// read: a read past them fails, as Go's server body does.
type closedAfter struct {
	r    io.Reader
	left int
}

func (c *closedAfter) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("http: invalid Read on closed Body")
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

func (c *closedAfter) Close() error { return nil }

// TestEndsAtTheDeclaredLength: the transport's read after the declared
// bytes gets io.EOF, never the closed body's error.
func TestEndsAtTheDeclaredLength(t *testing.T) {
	for _, body := range []string{"x", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`} {
		src := &closedAfter{r: strings.NewReader(body), left: len(body)}
		b := New(src, int64(len(body)))
		got, err := io.ReadAll(b)
		if err != nil || string(got) != body {
			t.Fatalf("ReadAll = %q, %v; want %q", got, err, body)
		}
		if n, err := b.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read past the end = %d, %v; want 0, EOF without touching the client's body", n, err)
		}
	}
}

// TestUnknownOrZeroLengthUntouched: such bodies go out as they came (a
// wrapped empty body would be sent chunked).
func TestUnknownOrZeroLengthUntouched(t *testing.T) {
	body := io.NopCloser(strings.NewReader("abc"))
	if New(body, -1) != body || New(body, 0) != body || New(nil, 3) != nil || New(http.NoBody, 3) != http.NoBody {
		t.Fatal("a body of unknown or zero length, or none, was wrapped")
	}
}
