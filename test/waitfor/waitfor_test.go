package waitfor

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	var n atomic.Int32
	if !Poll(5*time.Second, time.Millisecond, func() bool { return n.Add(1) >= 3 }) {
		t.Fatal("Poll gave up on a condition that became true")
	}
	if got := n.Load(); got != 3 {
		t.Errorf("condition checked %d times, want 3 (stop as soon as it holds)", got)
	}
	if Poll(20*time.Millisecond, time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a condition that never held")
	}
}

func TestNoErrorReportsTheLastError(t *testing.T) {
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		NoError(ft, 20*time.Millisecond, "the thing", func() error { return errors.New("still broken") })
	}()
	<-done
	if !strings.Contains(ft.msg, "the thing") || !strings.Contains(ft.msg, "still broken") {
		t.Fatalf("failure message %q, want it to name the wait and the last error", ft.msg)
	}
}

// fakeT records Fatalf and stops its goroutine, as testing.T does, without
// failing the real test.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
