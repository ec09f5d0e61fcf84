package fault

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// Phases of an outage, recorded with every request of the background load.
const (
	phaseBefore int32 = iota
	phaseDown
	phaseRecovered
)

// Each load worker sends at most one request per loadInterval and at most
// maxLoadPerWorker in all (a minute and a half at full pace), so the load
// is bounded in rate, count and time on a shared 2-core machine.
const (
	loadInterval     = 10 * time.Millisecond
	maxLoadPerWorker = 9000
)

// loadResult is one request of the background load.
type loadResult struct {
	kind    string // which credential
	replica string
	phase   int32 // when the request started
	endedIn int32 // when it ended
	res     result
}

// load is background traffic: one worker per replica and credential, each
// sending GET /data until stop (paced and capped, see loadInterval), while
// the test moves phase along.
type load struct {
	phase    atomic.Int32
	workers  int
	stopOnce sync.Once
	quit     chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex
	results []loadResult
}

func startLoad(ctx context.Context, replicas []*replica, creds map[string]credential) *load {
	l := &load{quit: make(chan struct{})}
	for _, r := range replicas {
		for kind, c := range creds {
			l.workers++
			l.wg.Go(func() {
				pace := time.NewTicker(loadInterval)
				defer pace.Stop()
				for range maxLoadPerWorker {
					select {
					case <-l.quit:
						return
					case <-pace.C:
					}
					p := l.phase.Load()
					res := r.get(ctx, "/data", c, jsonAPI)
					l.mu.Lock()
					l.results = append(l.results, loadResult{kind: kind, replica: r.name, phase: p, endedIn: l.phase.Load(), res: res})
					l.mu.Unlock()
				}
			})
		}
	}
	return l
}

// waitEach waits until every worker has had n successful requests that
// started in phase.
func (l *load) waitEach(t *testing.T, phase int32, n int) {
	t.Helper()
	waitfor.True(t, setupTimeout, fmt.Sprintf("each load worker to succeed %d times in phase %d", n, phase), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		ok := map[string]int{}
		for _, r := range l.results {
			if r.phase == phase && r.res.Status == http.StatusOK {
				ok[r.kind+" "+r.replica]++
			}
		}
		done := 0
		for _, c := range ok {
			if c >= n {
				done++
			}
		}
		return done == l.workers
	})
}

// stop ends the load and waits for the workers.
func (l *load) stop() {
	l.stopOnce.Do(func() { close(l.quit) })
	l.wg.Wait()
}

// checkAfter waits until every worker has succeeded in phaseRecovered,
// stops the load and checks every request: no transport errors; a kind
// listed in always got that status throughout; every other kind got 200,
// or 503 for a request that overlapped the outage; each answered within
// answer. It logs the status counts.
func (l *load) checkAfter(t *testing.T, always map[string]int, answer time.Duration) {
	t.Helper()
	l.waitEach(t, phaseRecovered, 1)
	l.stop()
	counts := map[string]map[int]int{}
	for _, r := range l.results {
		key := r.kind + " " + r.replica
		if counts[key] == nil {
			counts[key] = map[int]int{}
		}
		counts[key][r.res.Status]++
		overlapped := r.phase == phaseDown || r.endedIn == phaseDown
		want, fixed := always[r.kind]
		switch {
		case r.res.Err != nil:
			t.Errorf("load %s request on %s: %v", r.kind, r.replica, r.res.Err)
		case fixed && r.res.Status != want:
			t.Errorf("load %s request on %s = %s; promised %d throughout", r.kind, r.replica, r.res, want)
		case !fixed && r.res.Status == http.StatusServiceUnavailable && !overlapped:
			t.Errorf("load %s request on %s got 503 outside the outage: %s", r.kind, r.replica, r.res)
		case !fixed && r.res.Status != http.StatusOK && r.res.Status != http.StatusServiceUnavailable:
			t.Errorf("load %s request on %s = %s; promised 200, or 503 during the outage (never 401 or a redirect)", r.kind, r.replica, r.res)
		case r.res.Took > answer:
			t.Errorf("load %s request on %s took %s; promised an answer within %s", r.kind, r.replica, r.res.Took, answer)
		}
	}
	t.Logf("measured: load status counts %v", counts)
}
