// Package certreload serves the proxy's own TLS key pair from two files and
// picks up a renewed pair without a restart. It is the sidecar's replacement
// for controller-runtime's certwatcher, which would link client-go and
// controller-runtime into every sidecar for one file watch.
//
// The files' directories are watched (fsnotify), because a mounted Secret is
// updated by swapping its ..data symlink, which changes neither file's own
// inode; a slow poll backs the watch up for file systems that miss events.
// A new pair that does not load (half written, mismatched, not PEM) is
// refused: the running pair keeps serving, the refusal is logged and
// counted, and the next change is tried again.
package certreload

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Results of a reload attempt, as passed to Options.Observe (the
// tls_certificate_reloads_total{result} metric).
const (
	// Applied: a new pair was loaded and is served from now on.
	Applied = "applied"
	// Refused: the files changed but do not hold a valid pair; the running
	// pair is kept.
	Refused = "refused"
)

// DefaultPollInterval is how often the files are re-read when no event
// arrives.
const DefaultPollInterval = time.Minute

// Options are a Reloader's optional dependencies.
type Options struct {
	// Logger receives one line per applied or refused reload (nil: none).
	Logger *zap.Logger
	// Observe is told the result of every reload that found changed files
	// (Applied or Refused); nil: not observed.
	Observe func(result string)
	// PollInterval re-reads the files this often as a backstop for missed
	// events (0: DefaultPollInterval; negative: no polling).
	PollInterval time.Duration
}

// Reloader holds the current key pair. Its GetCertificate is safe for
// concurrent use by every TLS handshake.
type Reloader struct {
	certFile, keyFile string
	log               *zap.Logger
	observe           func(string)
	poll              time.Duration

	cert atomic.Pointer[tls.Certificate]

	mu sync.Mutex // serialises reloads and guards the fields below
	// loaded and refused are the file contents last served and last
	// refused, so an unchanged or still-broken pair is neither re-parsed
	// nor re-reported by every event and poll.
	loaded  [2][]byte
	refused *[2][]byte
}

// New loads the pair from certFile and keyFile. An invalid pair is an
// error: the proxy must not start serving TLS without a certificate.
func New(certFile, keyFile string, opts Options) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("certreload: both a certificate and a key file are required")
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: opts.Logger, observe: opts.Observe, poll: opts.PollInterval}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if r.observe == nil {
		r.observe = func(string) {}
	}
	if r.poll == 0 {
		r.poll = DefaultPollInterval
	}
	files, cert, err := r.read()
	if err != nil {
		return nil, err
	}
	r.loaded = files
	r.cert.Store(cert)
	return r, nil
}

// GetCertificate returns the current pair; use it as tls.Config's
// GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// read loads both files and parses them as a pair.
func (r *Reloader) read() ([2][]byte, *tls.Certificate, error) {
	var files [2][]byte
	var err error
	if files[0], err = os.ReadFile(r.certFile); err != nil {
		return files, nil, fmt.Errorf("certreload: reading the certificate: %w", err)
	}
	if files[1], err = os.ReadFile(r.keyFile); err != nil {
		return files, nil, fmt.Errorf("certreload: reading the key: %w", err)
	}
	cert, err := tls.X509KeyPair(files[0], files[1])
	if err != nil {
		return files, nil, fmt.Errorf("certreload: loading the pair from %s and %s: %w", r.certFile, r.keyFile, err)
	}
	return files, &cert, nil
}

// Reload re-reads the files. It returns Applied when a new valid pair now
// serves, Refused when the files changed to something invalid (the running
// pair is kept), and "" when nothing changed.
func (r *Reloader) Reload() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	files, cert, err := r.read()
	if (err == nil && same(files, r.loaded)) || (err != nil && r.refused != nil && same(files, *r.refused)) {
		return ""
	}
	if err != nil {
		r.refused = &files
		r.log.Error("TLS certificate reload refused; keeping the running certificate", zap.Error(err))
		r.observe(Refused)
		return Refused
	}
	r.loaded, r.refused = files, nil
	r.cert.Store(cert)
	r.log.Info("TLS certificate reloaded", zap.String("cert_file", r.certFile), zap.Time("not_after", cert.Leaf.NotAfter))
	r.observe(Applied)
	return Applied
}

func same(a, b [2][]byte) bool {
	return bytes.Equal(a[0], b[0]) && bytes.Equal(a[1], b[1])
}

// Run reloads on every change of the files (or of a Kubernetes ..data
// symlink beside them) and on every poll until ctx ends. It fails only when
// the watch cannot be set up.
func (r *Reloader) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("certreload: %w", err)
	}
	defer w.Close()
	watched := map[string]bool{}
	for _, f := range []string{r.certFile, r.keyFile} {
		dir := filepath.Dir(f)
		if watched[dir] {
			continue
		}
		if err := w.Add(dir); err != nil {
			return fmt.Errorf("certreload: watching %s: %w", dir, err)
		}
		watched[dir] = true
	}
	relevant := map[string]bool{filepath.Base(r.certFile): true, filepath.Base(r.keyFile): true, "..data": true}
	var tick <-chan time.Time
	if r.poll > 0 {
		t := time.NewTicker(r.poll)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if relevant[filepath.Base(ev.Name)] {
				r.Reload()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("watching the TLS certificate files failed; polling continues", zap.Error(err))
		case <-tick:
			r.Reload()
		}
	}
}
