package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/fakeclock"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

func newFakeMemory(t *testing.T, interval time.Duration) (*Memory, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := NewMemory(MemoryOptions{Now: clock.Now, CleanupInterval: interval})
	t.Cleanup(func() { _ = m.Close() })
	return m, clock
}

func TestMemoryExpiryWithFakeClock(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		abs      time.Duration
		idle     time.Duration
		steps    []time.Duration // advance, then Get, for each step
		wantLive []bool
	}{
		{"absolute", time.Hour, 0, []time.Duration{59 * time.Minute, time.Minute}, []bool{true, false}},
		{"idle without reads", time.Hour, 10 * time.Minute, []time.Duration{10 * time.Minute}, []bool{false}},
		{"idle slides", time.Hour, 10 * time.Minute,
			[]time.Duration{9 * time.Minute, 9 * time.Minute, 9 * time.Minute, 10 * time.Minute}, []bool{true, true, true, false}},
		{"idle capped by absolute", 15 * time.Minute, 10 * time.Minute,
			[]time.Duration{9 * time.Minute, 6 * time.Minute}, []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, clock := newFakeMemory(t, time.Hour)
			rec := Record{ID: "id", UserKey: "u", Data: []byte("d"), CreatedAt: clock.Now(),
				ExpiresAt: clock.Now().Add(tt.abs), IdleTimeout: tt.idle}
			if _, err := m.CreateSession(ctx, rec, Limit{}); err != nil {
				t.Fatal(err)
			}
			for i, step := range tt.steps {
				clock.Advance(step)
				_, err := m.GetSession(ctx, rec.ID)
				if live := err == nil; live != tt.wantLive[i] {
					t.Fatalf("step %d: live = %v (err %v), want %v", i, live, err, tt.wantLive[i])
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatalf("step %d: %v", i, err)
				}
			}
		})
	}
}

func TestMemoryOnceAndLockExpiryWithFakeClock(t *testing.T) {
	ctx := context.Background()
	m, clock := newFakeMemory(t, time.Hour)
	if err := m.PutOnce(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	l, err := m.TryLock(ctx, "l", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if _, err := m.TakeOnce(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("TakeOnce after ttl = %v, want ErrNotFound", err)
	}
	if err := l.Extend(ctx, time.Minute); !errors.Is(err, ErrLocked) {
		t.Fatalf("Extend after ttl = %v, want ErrLocked", err)
	}
	if _, err := m.TryLock(ctx, "l", time.Minute); err != nil {
		t.Fatalf("TryLock after ttl: %v", err)
	}
}

func TestMemoryJanitor(t *testing.T) {
	ctx := context.Background()
	m, clock := newFakeMemory(t, time.Millisecond)
	rec := Record{ID: "id", UserKey: "u", CreatedAt: clock.Now(), ExpiresAt: clock.Now().Add(time.Minute)}
	if _, err := m.CreateSession(ctx, rec, Limit{}); err != nil {
		t.Fatal(err)
	}
	if err := m.PutOnce(ctx, "k", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := m.TryLock(ctx, "l", time.Minute); err != nil {
		t.Fatal(err)
	}
	sizes := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.sessions) + len(m.users) + len(m.onces) + len(m.locks)
	}
	if got := sizes(); got != 4 {
		t.Fatalf("entries = %d, want 4", got)
	}
	clock.Advance(time.Minute)
	waitfor.True(t, 5*time.Second, "the janitor to drop every expired entry", func() bool { return sizes() == 0 })
}

func TestMemoryCloseStopsJanitor(t *testing.T) {
	m := NewMemory(MemoryOptions{CleanupInterval: time.Millisecond})
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case <-m.done:
	default:
		t.Fatal("janitor still running after Close")
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestMemoryCopiesData(t *testing.T) {
	ctx := context.Background()
	m, clock := newFakeMemory(t, time.Hour)
	data := []byte("abc")
	rec := Record{ID: "id", UserKey: "u", Data: data, CreatedAt: clock.Now(), ExpiresAt: clock.Now().Add(time.Minute)}
	if _, err := m.CreateSession(ctx, rec, Limit{}); err != nil {
		t.Fatal(err)
	}
	data[0] = 'X'
	got, err := m.GetSession(ctx, "id")
	if err != nil {
		t.Fatal(err)
	}
	got.Data[1] = 'Y'
	again, err := m.GetSession(ctx, "id")
	if err != nil || string(again.Data) != "abc" {
		t.Fatalf("stored data = %q, %v; want abc (callers must not alias it)", again.Data, err)
	}
}
