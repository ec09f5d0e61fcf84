package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func TestOpensEventStream(t *testing.T) {
	tests := []struct {
		name   string
		method string
		accept []string
		want   bool
	}{
		{name: "streamable HTTP GET", method: http.MethodGet, accept: []string{"text/event-stream"}, want: true},
		{name: "with parameters and case", method: http.MethodGet, accept: []string{"application/json, Text/Event-Stream;q=0.9"}, want: true},
		{name: "second Accept line", method: http.MethodGet, accept: []string{"application/json", " text/event-stream "}, want: true},
		{name: "POST accepting both", method: http.MethodPost, accept: []string{"application/json, text/event-stream"}},
		{name: "GET for JSON", method: http.MethodGet, accept: []string{"application/json"}},
		{name: "GET for anything", method: http.MethodGet, accept: []string{"*/*"}},
		{name: "GET without Accept", method: http.MethodGet},
		{name: "a longer type", method: http.MethodGet, accept: []string{"text/event-streams"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/mcp", nil)
			if tt.accept != nil {
				r.Header["Accept"] = tt.accept
			}
			if got := opensEventStream(r); got != tt.want {
				t.Fatalf("opensEventStream(%s, Accept %q) = %v, want %v", tt.method, tt.accept, got, tt.want)
			}
		})
	}
}

// countingPool records which pool a response was copied through.
type countingPool struct {
	next interface {
		Get() []byte
		Put([]byte)
	}
	gets atomic.Int64
	size atomic.Int64
}

func (c *countingPool) Get() []byte {
	c.gets.Add(1)
	b := c.next.Get()
	c.size.Store(int64(len(b)))
	return b
}

func (c *countingPool) Put(b []byte) { c.next.Put(b) }

// TestEventStreamGETsCopyThroughSmallBuffers: a GET asking for an event
// stream is copied through the small stream buffers, everything else
// through the regular ones.
func TestEventStreamGETsCopyThroughSmallBuffers(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {}\n\n")
	}))
	t.Cleanup(up.Close)
	u, err := url.Parse(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Upstream: u})
	if err != nil {
		t.Fatal(err)
	}
	regular, stream := &countingPool{next: p.rp.BufferPool}, &countingPool{next: p.streamRP.BufferPool}
	p.rp.BufferPool, p.streamRP.BufferPool = regular, stream
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)

	tests := []struct {
		method, accept string
		wantStream     bool
	}{
		{http.MethodGet, "text/event-stream", true},
		{http.MethodPost, "application/json, text/event-stream", false},
		{http.MethodGet, "application/json", false},
	}
	for _, tt := range tests {
		beforeRegular, beforeStream := regular.gets.Load(), stream.gets.Load()
		req, _ := http.NewRequestWithContext(t.Context(), tt.method, front.URL+"/mcp", strings.NewReader(""))
		req.Header.Set("Accept", tt.accept)
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(body) != "data: {}\n\n" {
			t.Errorf("%s %q: body %q", tt.method, tt.accept, body)
		}
		gotStream := stream.gets.Load() - beforeStream
		gotRegular := regular.gets.Load() - beforeRegular
		if tt.wantStream && (gotStream != 1 || gotRegular != 0) || !tt.wantStream && (gotStream != 0 || gotRegular != 1) {
			t.Errorf("%s %q: %d stream and %d regular buffers, want the stream one: %v", tt.method, tt.accept, gotStream, gotRegular, tt.wantStream)
		}
	}
	if got := stream.size.Load(); got != streamCopyBufferSize {
		t.Errorf("stream copy buffer of %d bytes, want %d", got, streamCopyBufferSize)
	}
	if got := regular.size.Load(); got != copyBufferSize {
		t.Errorf("regular copy buffer of %d bytes, want %d", got, copyBufferSize)
	}
}

// upstreamTransport unwraps the breaker and retry layers New puts around
// the base transport.
func upstreamTransport(t *testing.T, rt http.RoundTripper) (*http.Transport, *breaker) {
	t.Helper()
	bt, ok := rt.(*breakerTransport)
	if !ok {
		t.Fatalf("outer transport %T, want the breaker", rt)
	}
	r, ok := bt.next.(*retryTransport)
	if !ok {
		t.Fatalf("inside the breaker %T, want retries", bt.next)
	}
	base, ok := r.next.(*http.Transport)
	if !ok {
		t.Fatalf("base transport %T", r.next)
	}
	return base, bt.b
}

// TestEventStreamsHaveTheirOwnSmallConnections: event-stream GETs reach
// the upstream over connections with 1 KiB buffers, everything else over
// the 2 KiB ones, and one breaker guards both; a request header larger
// than the small write buffer still arrives whole.
func TestEventStreamsHaveTheirOwnSmallConnections(t *testing.T) {
	long := strings.Repeat("v", 3<<10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: "+strings.Repeat("e", 3<<10)+"\n\n")
		_, _ = io.WriteString(w, "data: "+r.Header.Get("X-Long")+"\n\n")
	}))
	t.Cleanup(up.Close)
	u, err := url.Parse(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Upstream: u})
	if err != nil {
		t.Fatal(err)
	}
	regular, rb := upstreamTransport(t, p.rp.Transport)
	stream, sb := upstreamTransport(t, p.streamRP.Transport)
	if regular == stream {
		t.Fatal("event streams share the regular transport")
	}
	if rb != sb {
		t.Error("event streams have their own breaker; one upstream needs one")
	}
	if regular.ReadBufferSize != transportReadBufferSize || regular.WriteBufferSize != transportWriteBufferSize {
		t.Errorf("regular transport buffers %d/%d", regular.ReadBufferSize, regular.WriteBufferSize)
	}
	if stream.ReadBufferSize != streamTransportReadBufferSize || stream.WriteBufferSize != streamTransportWriteBufferSize {
		t.Errorf("stream transport buffers %d/%d", stream.ReadBufferSize, stream.WriteBufferSize)
	}

	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, front.URL+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("X-Long", long)
	resp, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	want := "data: " + strings.Repeat("e", 3<<10) + "\n\n" + "data: " + long + "\n\n"
	if string(body) != want {
		t.Errorf("body of %d bytes, want %d: the long header or event did not pass whole", len(body), len(want))
	}
}
