package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// streamResult is what one proxy did with many held SSE streams.
type streamResult struct {
	kind               string
	want, held         int
	openErr            string // the first stream that failed to open, if any
	openTime           time.Duration
	startup            time.Duration
	idleRSS, loggedRSS int64 // right after /readyz; after login and one request
	heldRSS            int64 // with held streams open, after the events
	events, minEvents  int   // events sent; fewest any held stream received
	delayP50, delayP99 time.Duration
}

// perStream is the RSS growth per held stream.
func (s streamResult) perStream() float64 {
	if s.held == 0 {
		return 0
	}
	return float64(s.heldRSS-s.loggedRSS) / float64(s.held)
}

// runStreams starts a fresh proxy of kind, holds up to o.streams SSE
// streams through it to the upstream's /sse, sends o.streamEvents events to
// all of them, and reads the proxy's memory and the events' delay.
func (e *env) runStreams(ctx context.Context, kind string) (streamResult, error) {
	r := streamResult{kind: kind, want: e.o.streams, events: e.o.streamEvents}
	p, err := e.launch(ctx, kind)
	if err != nil {
		return r, err
	}
	defer p.stop()
	r.startup = p.startup
	e.startups[len(e.startups)-1].name += " (again, for the streams)"
	if r.idleRSS, err = p.rss(); err != nil {
		return r, err
	}
	var header string
	switch kind {
	case kindRedis:
		c, err := sessionCookie(ctx, p.url, e.idp)
		if err != nil {
			return r, fmt.Errorf("login: %w", err)
		}
		header = "Cookie: " + c
	case kindO2P:
		c, err := sessionCookie(ctx, p.url, e.idp)
		if err != nil {
			return r, fmt.Errorf("login: %w", err)
		}
		header = "Cookie: " + c
	}
	t := target{name: kind, url: p.url + "/data"}
	if header != "" {
		t.headers = []string{header}
	}
	if err := probe(ctx, t); err != nil {
		return r, err
	}
	if r.loggedRSS, err = p.rss(); err != nil {
		return r, err
	}

	addr := strings.TrimPrefix(p.url, "http://")
	req := "GET /sse HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n"
	if header != "" {
		req += header + "\r\n"
	}
	req += "\r\n"

	var (
		mu       sync.Mutex
		conns    []net.Conn
		delays   []time.Duration
		counts   []*atomic.Int64
		firstErr string
		readers  sync.WaitGroup
	)
	measuring := atomic.Bool{}
	openCtx, cancelOpen := context.WithTimeout(ctx, e.o.streamOpenTimeout)
	defer cancelOpen()
	sem := make(chan struct{}, 64)
	var opening sync.WaitGroup
	start := time.Now()
	for range e.o.streams {
		if openCtx.Err() != nil {
			break
		}
		sem <- struct{}{}
		opening.Add(1)
		go func() {
			defer opening.Done()
			defer func() { <-sem }()
			c, br, err := openStream(openCtx, addr, req)
			if err != nil {
				mu.Lock()
				if firstErr == "" {
					firstErr = err.Error()
				}
				mu.Unlock()
				cancelOpen() // the most held is what opened before the first failure
				return
			}
			n := &atomic.Int64{}
			mu.Lock()
			conns = append(conns, c)
			counts = append(counts, n)
			mu.Unlock()
			readers.Add(1)
			go func() {
				defer readers.Done()
				var mine []time.Duration
				defer func() { mu.Lock(); delays = append(delays, mine...); mu.Unlock() }()
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					ts, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data: "))
					if !ok || !measuring.Load() {
						continue
					}
					at, err := strconv.ParseInt(string(ts), 10, 64)
					if err != nil {
						continue
					}
					mine = append(mine, time.Since(time.Unix(0, at)))
					n.Add(1)
				}
			}()
		}()
	}
	opening.Wait()
	r.openTime = time.Since(start)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
		readers.Wait()
	}()
	r.held = len(conns)
	if firstErr != "" {
		r.openErr = firstErr
	}
	if r.held == 0 {
		return r, fmt.Errorf("no stream opened: %s", firstErr)
	}
	// Every held stream reaches the upstream before the events go out.
	if err := poll(ctx, 30*time.Second, func() bool { return e.sse.open.Load() >= int64(r.held) }); err != nil {
		return r, fmt.Errorf("%d streams held but the upstream sees %d", r.held, e.sse.open.Load())
	}
	measuring.Store(true)
	tick := time.NewTicker(e.o.streamInterval)
	for range e.o.streamEvents {
		e.sse.fire(time.Now())
		select {
		case <-ctx.Done():
			tick.Stop()
			return r, ctx.Err()
		case <-tick.C:
		}
	}
	tick.Stop()
	all := func() bool {
		for _, n := range counts {
			if n.Load() < int64(e.o.streamEvents) {
				return false
			}
		}
		return true
	}
	_ = poll(ctx, 10*time.Second, all) // a shortfall is reported, not an error
	if r.heldRSS, err = p.rss(); err != nil {
		return r, err
	}
	r.minEvents = e.o.streamEvents
	for _, n := range counts {
		r.minEvents = min(r.minEvents, int(n.Load()))
	}
	for _, c := range conns {
		_ = c.Close()
	}
	readers.Wait()
	conns = nil
	if len(delays) > 0 {
		sortDurations(delays)
		r.delayP50, r.delayP99 = quantile(delays, 0.5), quantile(delays, 0.99)
	}
	return r, nil
}

// openStream dials the proxy, sends the SSE request and reads the response
// head; the returned reader carries the event stream, de-chunked.
func openStream(ctx context.Context, addr, req string) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = c.Close()
		return nil, nil, fmt.Errorf("reading the SSE response head: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		_ = c.Close()
		return nil, nil, fmt.Errorf("GET /sse answered %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	_ = c.SetDeadline(time.Time{})
	return c, bufio.NewReaderSize(resp.Body, 256), nil
}

// poll calls cond every 10ms until it holds, ctx ends or d passes.
func poll(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
