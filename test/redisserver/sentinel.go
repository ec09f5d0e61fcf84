package redisserver

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// SentinelOptions describe how a Sentinel watches its master.
type SentinelOptions struct {
	// MasterName is the name clients ask Sentinel for. Required.
	MasterName string
	// MasterAddr is the master's host:port. Required.
	MasterAddr string
	// Quorum is how many Sentinels must agree the master is down (default 2).
	Quorum int
	// DownAfter is how long the master may be silent before it is
	// considered down (default 1s; Redis' own default is 30s).
	DownAfter time.Duration
	// FailoverTimeout bounds one failover attempt (default 5s).
	FailoverTimeout time.Duration
}

type sentinelConfig struct {
	opts    SentinelOptions
	written string
}

// write creates the Sentinel configuration file once; later runs reuse the
// file Sentinel itself has rewritten.
func (c *sentinelConfig) write(dir string) (string, error) {
	if c.written != "" {
		return c.written, nil
	}
	host, port, err := net.SplitHostPort(c.opts.MasterAddr)
	if err != nil {
		return "", fmt.Errorf("sentinel master address %q: %w", c.opts.MasterAddr, err)
	}
	n := c.opts.MasterName
	conf := fmt.Sprintf("sentinel monitor %s %s %s %d\n"+
		"sentinel down-after-milliseconds %s %d\n"+
		"sentinel failover-timeout %s %d\n"+
		"sentinel parallel-syncs %s 1\n",
		n, host, port, c.opts.Quorum,
		n, c.opts.DownAfter.Milliseconds(),
		n, c.opts.FailoverTimeout.Milliseconds(),
		n)
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("write sentinel config: %w", err)
	}
	c.written = path
	return path, nil
}

// StartSentinel runs a Sentinel (redis-server --sentinel, the same binary;
// Debian's redis-sentinel package only adds a service and a symlink) on a
// free loopback port, watching o.MasterAddr, until the test ends.
func StartSentinel(tb testing.TB, o SentinelOptions) *Server {
	tb.Helper()
	if o.MasterName == "" || o.MasterAddr == "" {
		tb.Fatal("redisserver: StartSentinel needs MasterName and MasterAddr")
	}
	if o.Quorum <= 0 {
		o.Quorum = 2
	}
	if o.DownAfter <= 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout <= 0 {
		o.FailoverTimeout = 5 * time.Second
	}
	return Start(tb, func(c *config) { c.sentinel = &sentinelConfig{opts: o} })
}
