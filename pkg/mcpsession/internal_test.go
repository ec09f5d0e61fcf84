package mcpsession

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

func TestInitializeResult(t *testing.T) {
	cases := []struct {
		name, contentType, body, version string
		ok                               bool
	}{
		{"json", "application/json", `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{}}}`, "2025-11-25", true},
		{"sse", "text/event-stream", "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-06-18\"}}\n\n", "2025-06-18", true},
		{"sse after a notification", "text/event-stream; charset=utf-8", ": ok\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\ndata: {\"jsonrpc\":\"2.0\",\n" + "data: \"id\":1,\"result\":{\"protocolVersion\":\"2025-03-26\"}}\n", "2025-03-26", true},
		{"json error", "application/json", `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad version"}}`, "", false},
		{"sse error", "text/event-stream", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32603,\"message\":\"boom\"}}\n\n", "", false},
		{"no id", "application/json", `{"jsonrpc":"2.0","result":{}}`, "", false},
		{"garbage", "application/json", `not json`, "", false},
		{"empty sse", "text/event-stream", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := initializeResult(tc.contentType, []byte(tc.body))
			if (err == nil) != tc.ok || v != tc.version {
				t.Fatalf("initializeResult = %q, %v; want %q, ok=%v", v, err, tc.version, tc.ok)
			}
		})
	}
}

func TestIsInitialize(t *testing.T) {
	cases := map[string]bool{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`:                    true,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`:                        false,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"initialize"}}`: false,
		`[{"jsonrpc":"2.0","id":1,"method":"initialize"}]`:                              false,
		`{"method":"initialize"`: false,
	}
	for body, want := range cases {
		if got := isInitialize([]byte(body)); got != want {
			t.Errorf("isInitialize(%s) = %v, want %v", body, got, want)
		}
	}
}

func TestDeadOwners(t *testing.T) {
	var d deadOwners
	now := time.Unix(1000, 0)
	if d.isDead("a:1", now) {
		t.Fatal("an owner never marked is dead")
	}
	d.mark("a:1", now)
	if !d.isDead("a:1", now.Add(deadFor-time.Second)) {
		t.Error("a marked owner is alive before deadFor passed")
	}
	if d.isDead("a:1", now.Add(deadFor)) {
		t.Error("a marked owner is still dead after deadFor")
	}
	for i := range maxDeadOwners + 10 {
		d.mark(fmt.Sprintf("198.18.0.%d:%d", i%250, i), now)
	}
	if n := len(d.until); n > maxDeadOwners {
		t.Errorf("%d owners remembered, bound %d", n, maxDeadOwners)
	}
}

func TestRewindBody(t *testing.T) {
	b := newRewindBody(strings.NewReader("hello world"))
	first, err := b.reader()
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 5)
	if n, _ := first.Read(p); string(p[:n]) != "hello" {
		t.Fatalf("first read %q", p[:n])
	}
	second, err := b.reader()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Read(p); !errors.Is(err, errDetached) {
		t.Errorf("the earlier reader still reads after a rewind: %v", err)
	}
	all, err := io.ReadAll(second)
	if err != nil || string(all) != "hello world" {
		t.Fatalf("rewound body %q, %v", all, err)
	}

	long := newRewindBody(strings.NewReader(strings.Repeat("x", maxRewind+1)))
	r, _ := long.reader()
	if n, err := io.Copy(io.Discard, r); err != nil || n != maxRewind+1 {
		t.Fatalf("read %d, %v", n, err)
	}
	if _, err := long.reader(); !errors.Is(err, errTooLongToRewind) {
		t.Errorf("rewind of a body over maxRewind: %v", err)
	}
}

func TestFlightsShareOneRun(t *testing.T) {
	var f flights
	var runs atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{})
	var wg sync.WaitGroup
	results := make(chan string, 10)
	leader := func() {
		defer wg.Done()
		c, err := f.do(context.Background(), "k", func() (Claims, error) {
			runs.Add(1)
			close(started)
			<-release
			return Claims{Upstream: "new"}, nil
		})
		if err != nil {
			results <- err.Error()
			return
		}
		results <- c.Upstream
	}
	wg.Add(1)
	go leader()
	<-started
	for range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := f.do(context.Background(), "k", func() (Claims, error) {
				runs.Add(1)
				return Claims{Upstream: "second"}, nil
			})
			if err != nil {
				results <- err.Error()
				return
			}
			results <- c.Upstream
		}()
	}
	waitUntil(t, "nine requests waiting for the flight", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		fl, ok := f.m["k"]
		return ok && fl.waiters == 9
	})
	close(release)
	wg.Wait()
	close(results)
	for r := range results {
		if r != "new" {
			t.Errorf("a request got %q, want the one run's result", r)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("%d runs for ten requests, want 1", n)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, 5*time.Second, what, cond)
}
