package requestid

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMiddlewarePropagatesValidIDsAndReplacesOthers(t *testing.T) {
	tests := []struct {
		name      string
		incoming  string
		propagate bool
	}{
		{"none", "", false},
		{"uuid", "3f2b8c1e-9a7d-4c1b-8e2f-0a1b2c3d4e5f", true},
		{"trace-ish", "req_01:abc.def", true},
		{"newline injection", "abc\nlevel=error", false},
		{"space", "a b", false},
		{"quote", `a"b`, false},
		{"too long", strings.Repeat("a", maxLen+1), false},
		{"max length", strings.Repeat("a", maxLen), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seenCtx, seenHeader string
			h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seenCtx = FromContext(r.Context())
				seenHeader = r.Header.Get(Header)
			}))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.incoming != "" {
				req.Header.Set(Header, tt.incoming)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if seenCtx == "" || seenCtx != seenHeader || rec.Header().Get(Header) != seenCtx {
				t.Fatalf("context %q, forwarded %q, response %q: want one non-empty ID everywhere", seenCtx, seenHeader, rec.Header().Get(Header))
			}
			if got := seenCtx == tt.incoming; got != tt.propagate {
				t.Fatalf("propagated = %v, want %v (id %q)", got, tt.propagate, seenCtx)
			}
		})
	}
}

func TestNewIsUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		if seen[id] || len(id) != 32 {
			t.Fatalf("New() = %q: duplicate or wrong length", id)
		}
		seen[id] = true
	}
}

// Lines logged through Logger carry the request ID under the field name
// the access log uses, including from a context detached from the request.
func TestLoggerCarriesTheID(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	ctx := NewContext(context.Background(), "req-7")
	Logger(ctx, zap.New(core)).Info("one")
	Logger(context.WithoutCancel(ctx), zap.New(core)).Info("two")
	Logger(context.Background(), zap.New(core)).Info("outside")
	want := map[string]string{"one": "req-7", "two": "req-7", "outside": ""}
	for _, e := range logs.All() {
		if got := e.ContextMap()["request_id"]; got != want[e.Message] {
			t.Errorf("%q: request_id = %v, want %q", e.Message, got, want[e.Message])
		}
	}
	if logs.Len() != len(want) {
		t.Fatalf("%d lines, want %d", logs.Len(), len(want))
	}
}

type otherKey struct{}

// The ID is read back through derived and detached contexts, the parent's
// own values stay visible, and storing and reading it cost one allocation
// and none.
func TestContextCarriesTheID(t *testing.T) {
	parent := context.WithValue(context.Background(), otherKey{}, "kept")
	ctx := NewContext(parent, "req-1")
	derived, cancel := context.WithCancel(context.WithValue(ctx, otherKey{}, "inner"))
	defer cancel()
	for name, c := range map[string]context.Context{"direct": ctx, "derived": derived, "detached": context.WithoutCancel(derived)} {
		if got := FromContext(c); got != "req-1" {
			t.Errorf("%s: FromContext = %q, want req-1", name, got)
		}
	}
	if got := ctx.Value(otherKey{}); got != "kept" {
		t.Errorf("parent value = %v, want kept", got)
	}
	if got := FromContext(parent); got != "" {
		t.Errorf("FromContext outside a request = %q, want empty", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = FromContext(derived) }); n != 0 {
		t.Errorf("FromContext allocates %.0f times, want 0", n)
	}
	id := New() // not a constant, which would be stored without allocating
	if n := testing.AllocsPerRun(100, func() { _ = NewContext(parent, id) }); n > 1 {
		t.Errorf("NewContext allocates %.0f times, want at most 1", n)
	}
}

// Header is already canonical, so reading and writing it on every request
// costs no key allocation.
func TestHeaderIsCanonical(t *testing.T) {
	if got := http.CanonicalHeaderKey(Header); got != Header {
		t.Fatalf("Header = %q, canonical form %q", Header, got)
	}
}
