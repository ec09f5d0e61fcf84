package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestBreakerStateMachine drives the breaker directly through sequences the
// HTTP-level test cannot produce deterministically (a trial that ends
// neutrally, a late success from a request started before opening).
func TestBreakerStateMachine(t *testing.T) {
	type step struct {
		op      string // "allow", "ok", "fail", "neutral", "tick"
		trial   bool   // for ok/fail/neutral: was it the trial
		wantErr bool   // for allow
		wantTr  bool   // for allow
	}
	tests := []struct {
		name   string
		steps  []step
		states []string
	}{
		{
			name: "opens at threshold, success resets the count",
			steps: []step{
				{op: "allow"}, {op: "fail"}, {op: "allow"}, {op: "ok"},
				{op: "allow"}, {op: "fail"}, {op: "allow"}, {op: "fail"},
				{op: "allow", wantErr: true},
			},
			states: []string{BreakerOpen},
		},
		{
			name: "neutral trial frees the slot for another trial",
			steps: []step{
				{op: "fail"}, {op: "fail"}, {op: "tick"},
				{op: "allow", wantTr: true}, {op: "allow", wantErr: true},
				{op: "neutral", trial: true},
				{op: "allow", wantTr: true}, {op: "ok", trial: true},
				{op: "allow"},
			},
			states: []string{BreakerOpen, BreakerHalfOpen, BreakerClosed},
		},
		{
			name: "late success of an old request closes an open breaker",
			steps: []step{
				{op: "fail"}, {op: "fail"}, {op: "allow", wantErr: true},
				{op: "ok"}, {op: "allow"},
			},
			states: []string{BreakerOpen, BreakerClosed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(0, 0)
			var states []string
			b := newBreaker(BreakerOptions{Failures: 2, OpenDuration: time.Second, Now: func() time.Time { return now }},
				func(s string) { states = append(states, s) })
			for i, s := range tt.steps {
				switch s.op {
				case "allow":
					tr, err := b.allow()
					if (err != nil) != s.wantErr || tr != s.wantTr {
						t.Fatalf("step %d allow = (%v, %v), want trial=%v err=%v", i, tr, err, s.wantTr, s.wantErr)
					}
					if err != nil && !errors.Is(err, ErrCircuitOpen) {
						t.Fatalf("step %d: error %v is not ErrCircuitOpen", i, err)
					}
				case "ok":
					b.success(s.trial)
				case "fail":
					b.failure(s.trial)
				case "neutral":
					b.neutral(s.trial)
				case "tick":
					now = now.Add(time.Second)
				}
			}
			if !slices.Equal(states, tt.states) {
				t.Errorf("transitions = %v, want %v", states, tt.states)
			}
		})
	}
}

func TestIsConnFailure(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		err  error
		want bool
	}{
		{refused, true},
		{fmt.Errorf("wrapped: %w", refused), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no route")}, true},
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false},
		{errors.New("malformed HTTP response"), false},
	}
	for _, tt := range tests {
		if got := isConnFailure(tt.err); got != tt.want {
			t.Errorf("isConnFailure(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	o := RetryOptions{}.withDefaults()
	for n := range 10 {
		d := o.backoff(n)
		ceiling := min(o.InitialBackoff<<n, o.MaxBackoff)
		if d < ceiling/2 || d > ceiling {
			t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, d, ceiling/2, ceiling)
		}
	}
}
