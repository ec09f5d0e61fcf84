// Package syncbuf is a bytes.Buffer that several goroutines may write to
// at once: a child process's stdout and stderr, a zap core, an HTTP
// server's error log. Tests read it for their assertions and failure
// messages.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is safe for concurrent use. Its zero value is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Sync does nothing; it lets a Buffer be a zapcore.WriteSyncer.
func (s *Buffer) Sync() error { return nil }

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
