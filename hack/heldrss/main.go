// Command heldrss measures what held SSE streams cost the sidecar binary in
// resident memory: it starts a local OpenID provider and an upstream with an
// SSE endpoint on loopback, runs the given binary with the flags of
// test/stack (memory session store) plus any -arg, logs in once through the
// browser flow for a session cookie, opens -n SSE streams through the
// sidecar with that cookie, waits until every stream has its first event,
// sends -events more events to all of them (each must arrive), and prints
// VmRSS from /proc/<pid>/status before and while holding, per stream, and
// the sidecar's goroutine count and Go heap/stack figures from its admin
// /metrics.
//
//	go run ./hack/heldrss -bin /tmp/mcp-oidc-proxy [-n 3000] [-events 5] [-env GOGC=50] [-arg --flag -arg value]
//	go run ./hack/heldrss -bare /tmp/bareproxy -n 3000   # a bare ReverseProxy (-listen, -upstream flags)
//
// The descriptor limit is raised to its hard limit (the harness holds two
// descriptors per stream, the sidecar two more). Every wait is bounded.
// CPU time is read assuming 100 clock ticks a second (Linux on amd64 and
// arm64). Linux only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/oidcprovider"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/stack"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "heldrss:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "", "the sidecar binary to measure")
	bare := flag.String("bare", "", "a bare reverse proxy binary (flags -listen, -upstream) to measure instead")
	n := flag.Int("n", 3000, "SSE streams to hold")
	events := flag.Int("events", 5, "events sent to every stream once all are held")
	noLogin := flag.Bool("no-login", false, "send no session cookie (for --auth-mode bypass)")
	dump := flag.Bool("dump", false, "print the process's go_memstats_* metrics while holding")
	settle := flag.Duration("settle", 2*time.Second, "wait before the held reading")
	gcURL := flag.String("gc-url", "", "a URL that makes the process collect garbage (/debug/pprof/heap?gc=1 with --pprof; ADMIN is replaced with the admin listener's address); read again after it")
	pause := flag.Duration("pause", 0, "keep the streams held this long after the reading (to profile the process)")
	var env, args listFlag
	flag.Var(&env, "env", "KEY=VALUE for the measured process (repeatable)")
	flag.Var(&args, "arg", "extra command-line argument for the sidecar (repeatable)")
	flag.Parse()
	if (*bin == "") == (*bare == "") {
		return errors.New("exactly one of -bin and -bare is required")
	}
	if err := raiseNoFile(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	idpLn, err := stack.Listen()
	if err != nil {
		return err
	}
	idp, err := oidcprovider.New(idpLn, oidcprovider.Options{})
	if err != nil {
		return fmt.Errorf("OpenID provider: %w", err)
	}
	go func() { _ = idp.Serve() }()
	defer idp.Close()
	sse := newBroadcaster()
	mux := stack.UpstreamMux()
	mux.Handle("/sse", sse)
	mux.HandleFunc("/data", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	upLn, err := stack.Listen()
	if err != nil {
		return err
	}
	upURL, stopUp := stack.Serve(upLn, mux)
	defer stopUp()

	listen, err := freeAddr()
	if err != nil {
		return err
	}
	admin, err := freeAddr()
	if err != nil {
		return err
	}
	var cmd *exec.Cmd
	if *bare != "" {
		cmd = exec.CommandContext(ctx, *bare, "-listen", listen, "-upstream", upURL)
	} else {
		a := append(stack.Flags(listen, admin, upURL, "http://"+idpLn.Addr().String()), "--log-level", "warn")
		cmd = exec.CommandContext(ctx, *bin, append(a, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	base := "http://" + listen
	var header, metricsURL string
	if *bare != "" {
		err = waitStatus(ctx, base+"/data", "", http.StatusOK)
	} else {
		metricsURL = "http://" + admin + "/metrics"
		if err = waitStatus(ctx, "http://"+admin+"/readyz", "", http.StatusOK); err == nil && !*noLogin {
			var c string
			if c, err = sessionCookie(ctx, base, idp); err == nil {
				header = "Cookie: " + c
				err = waitStatus(ctx, base+"/data", header, http.StatusOK)
			}
		}
	}
	if err != nil {
		return err
	}
	before, err := sample(cmd.Process.Pid, metricsURL)
	if err != nil {
		return err
	}
	fmt.Printf("before: %s\n", before)

	req := "GET /sse HTTP/1.1\r\nHost: " + listen + "\r\nAccept: text/event-stream\r\n"
	if header != "" {
		req += header + "\r\n"
	}
	req += "\r\n"
	h, err := hold(ctx, listen, req, *n)
	defer h.close()
	if err != nil {
		return err
	}
	if err := poll(ctx, 30*time.Second, func() bool { return sse.open.Load() >= int64(*n) }); err != nil {
		return fmt.Errorf("%d streams held but the upstream sees %d", *n, sse.open.Load())
	}
	for i := range *events {
		sse.fire()
		want := int64(i + 2) // the first event plus i+1 fired ones
		if err := poll(ctx, 30*time.Second, func() bool { return h.min() >= want }); err != nil {
			return fmt.Errorf("event %d did not reach every stream: %w", i+1, err)
		}
	}
	time.Sleep(*settle) // a measurement interval, not synchronisation
	held, err := sample(cmd.Process.Pid, metricsURL)
	if err != nil {
		return err
	}
	fmt.Printf("held:   %s\n", held)
	fmt.Printf("streams %d, events each %d, VmRSS per stream %.1f KiB, goroutines per stream %.2f, heap+stack per stream %.1f KiB\n",
		*n, *events+1, float64(held.rssKiB-before.rssKiB)/float64(*n),
		float64(held.goroutines-before.goroutines)/float64(*n),
		float64(held.heapInuse+held.stackInuse-before.heapInuse-before.stackInuse)/1024/float64(*n))
	if *gcURL != "" {
		if err := waitStatus(ctx, strings.ReplaceAll(*gcURL, "ADMIN", admin), "", http.StatusOK); err != nil {
			return err
		}
		time.Sleep(*settle) // a measurement interval, not synchronisation
		gc, err := sample(cmd.Process.Pid, metricsURL)
		if err != nil {
			return err
		}
		fmt.Printf("after GC: %s\n", gc)
		fmt.Printf("after GC: VmRSS per stream %.1f KiB, heap+stack per stream %.1f KiB\n",
			float64(gc.rssKiB-before.rssKiB)/float64(*n),
			float64(gc.heapInuse+gc.stackInuse-before.heapInuse-before.stackInuse)/1024/float64(*n))
	}
	if *dump && metricsURL != "" {
		if resp, err := http.Get(metricsURL); err == nil {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "go_memstats_") || strings.HasPrefix(sc.Text(), "go_gc_gogc") || strings.HasPrefix(sc.Text(), "go_gc_gomemlimit") {
					fmt.Println(sc.Text())
				}
			}
			_ = resp.Body.Close()
		}
	}
	time.Sleep(*pause) // time for a profiler, not synchronisation
	return nil
}

// broadcaster is the upstream's /sse: one event at once, then one more
// every time fire is called, until the client goes away.
type broadcaster struct {
	mu   sync.Mutex
	next chan struct{}
	open atomic.Int64
}

func newBroadcaster() *broadcaster { return &broadcaster{next: make(chan struct{})} }

func (b *broadcaster) fire() {
	b.mu.Lock()
	close(b.next)
	b.next = make(chan struct{})
	b.mu.Unlock()
}

func (b *broadcaster) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.next
}

const event = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n"

func (b *broadcaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	next := b.wait()
	if _, err := io.WriteString(w, event); err != nil || rc.Flush() != nil {
		return
	}
	b.open.Add(1)
	defer b.open.Add(-1)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-next:
		}
		next = b.wait()
		if _, err := io.WriteString(w, event); err != nil || rc.Flush() != nil {
			return
		}
	}
}

// holder keeps the client ends of the streams and counts their events.
type holder struct {
	mu     sync.Mutex
	conns  []net.Conn
	counts []*atomic.Int64
	wg     sync.WaitGroup
}

func (h *holder) min() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := int64(-1)
	for _, c := range h.counts {
		if v := c.Load(); m < 0 || v < m {
			m = v
		}
	}
	return m
}

func (h *holder) close() {
	h.mu.Lock()
	for _, c := range h.conns {
		_ = c.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// hold opens n streams, 64 at a time, and returns once each has its head.
func hold(ctx context.Context, addr, req string, n int) (*holder, error) {
	h := &holder{}
	sem := make(chan struct{}, 64)
	var opening sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range n {
		sem <- struct{}{}
		opening.Add(1)
		go func() {
			defer opening.Done()
			defer func() { <-sem }()
			c, br, err := openStream(ctx, addr, req)
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			cnt := &atomic.Int64{}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.counts = append(h.counts, cnt)
			h.mu.Unlock()
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if bytes.HasPrefix(line, []byte("data: ")) {
						cnt.Add(1)
					}
				}
			}()
		}()
	}
	opening.Wait()
	if p := firstErr.Load(); p != nil {
		return h, fmt.Errorf("opening a stream: %w", *p)
	}
	return h, nil
}

func openStream(ctx context.Context, addr, req string) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 512)
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

// reading is one sample of the measured process.
type reading struct {
	rssKiB                int64
	goroutines            int64
	heapInuse, stackInuse int64
	heapSys, heapReleased int64
	sys                   int64
	cpuTicks              int64 // user+system time so far, in clock ticks
}

func (r reading) String() string {
	return fmt.Sprintf("CPU %.2fs, VmRSS %d kB, goroutines %d, heap in use %.1f MiB, stack in use %.1f MiB, heap sys-released %.1f MiB, Go sys %.1f MiB",
		float64(r.cpuTicks)/100, r.rssKiB, r.goroutines, float64(r.heapInuse)/(1<<20), float64(r.stackInuse)/(1<<20),
		float64(r.heapSys-r.heapReleased)/(1<<20), float64(r.sys)/(1<<20))
}

func sample(pid int, metricsURL string) (reading, error) {
	var r reading
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return r, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			r.rssKiB, err = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return r, fmt.Errorf("VmRSS %q: %w", v, err)
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return r, err
	}
	// Fields after the command name (which is in parentheses): utime and
	// stime are the 12th and 13th.
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
		if f := strings.Fields(string(stat[i+1:])); len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			r.cpuTicks = u + s
		}
	}
	if metricsURL == "" {
		return r, nil
	}
	resp, err := http.Get(metricsURL)
	if err != nil {
		return r, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(val, 64)
		switch name {
		case "go_goroutines":
			r.goroutines = int64(f)
		case "go_memstats_heap_inuse_bytes":
			r.heapInuse = int64(f)
		case "go_memstats_stack_inuse_bytes":
			r.stackInuse = int64(f)
		case "go_memstats_heap_sys_bytes":
			r.heapSys = int64(f)
		case "go_memstats_heap_released_bytes":
			r.heapReleased = int64(f)
		case "go_memstats_sys_bytes":
			r.sys = int64(f)
		}
	}
	return r, sc.Err()
}

func raiseNoFile() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("raising the descriptor limit to %d: %w", l.Max, err)
	}
	return nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitStatus(ctx context.Context, u, header string, want int) error {
	return poll(ctx, 30*time.Second, func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if k, v, ok := strings.Cut(header, ": "); ok {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == want
	})
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

// sessionCookie logs in through the sidecar's browser flow and returns the
// Cookie header value.
func sessionCookie(ctx context.Context, base string, idp *oidcprovider.Provider) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		_ = resp.Body.Close()
		return resp, nil
	}
	resp, err := get(base + "/oauth2/start?rd=/")
	if err != nil {
		return "", err
	}
	authURL := resp.Header.Get("Location")
	if authURL == "" {
		return "", fmt.Errorf("login start answered %d without a redirect", resp.StatusCode)
	}
	callback, err := idp.Login(ctx, nil, authURL)
	if err != nil {
		return "", err
	}
	if resp, err = get(callback.String()); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("callback answered %d", resp.StatusCode)
	}
	u, err := url.Parse(base + "/data")
	if err != nil {
		return "", err
	}
	var pairs []string
	for _, c := range jar.Cookies(u) {
		pairs = append(pairs, c.Name+"="+c.Value)
	}
	if len(pairs) == 0 {
		return "", errors.New("no session cookie after the callback")
	}
	return strings.Join(pairs, "; "), nil
}
