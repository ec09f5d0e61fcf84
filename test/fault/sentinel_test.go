package fault

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/redisserver"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// Bounds of the Sentinel failover test.
const (
	masterName = "mcp-sessions"
	// downAfter is Sentinel's down-after-milliseconds: how long the master
	// may be silent before a Sentinel calls it down (Redis' default is 30s;
	// production setups commonly use 5s).
	downAfter = time.Second
	// failoverTimeout is Sentinel's failover-timeout.
	failoverTimeout = 5 * time.Second
	// failoverRecovery: cookie requests succeed again on every replica
	// within this long of the master being killed: downAfter, the
	// Sentinels' election and the promotion, and the proxy following the
	// new master, with a wide margin for a loaded machine.
	failoverRecovery = 30 * time.Second
	// failoverAnswer bounds every request during the failover: 200, or a
	// 503 while there is no master, never a hang.
	failoverAnswer = 5 * time.Second
)

// A live Sentinel failover under load: one master, one replica, three
// Sentinels (quorum 2, down-after downAfter, failover-timeout
// failoverTimeout); two proxy replicas configured with redis.addrs (the
// Sentinels) and redis.master_name. The sessions are replicated (WAIT)
// before the master is killed, so the outcome is deterministic.
//
// Promises: the proxy follows the new master by itself within
// failoverRecovery of the kill; sessions created before the failover still
// work on both replicas (cookie and MCP session); bearer requests keep
// working throughout; cookie requests get 200 or 503 (never 401 or a
// redirect), each within failoverAnswer; new logins work on the new master.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	master := redisserver.Start(t)
	replicaSrv := redisserver.Start(t, redisserver.WithReplicaOf(master.Addr()))
	var sentinels []*redisserver.Server
	var addrs []string
	for range 3 {
		s := redisserver.StartSentinel(t, redisserver.SentinelOptions{
			MasterName: masterName, MasterAddr: master.Addr(), Quorum: 2,
			DownAfter: downAfter, FailoverTimeout: failoverTimeout,
		})
		sentinels = append(sentinels, s)
		addrs = append(addrs, s.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Before anything is killed, every Sentinel must know the replica and
	// the two other Sentinels; otherwise no majority could elect a leader.
	for _, s := range sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		defer sc.Close()
		waitfor.NoError(t, setupTimeout, "Sentinel "+s.Addr()+" to see the replica and the other Sentinels", func() error {
			m, err := sc.Master(ctx, masterName).Result()
			if err != nil {
				return err
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("num-slaves %s, num-other-sentinels %s", m["num-slaves"], m["num-other-sentinels"])
			}
			return nil
		})
	}

	e := newEnv(t)
	e.redisArgs = []string{"--redis-addrs", strings.Join(addrs, ","), "--redis-master-name", masterName}
	a := e.start(t, "A", replicaOptions{})
	b := e.start(t, "B", replicaOptions{})
	replicas := []*replica{a, b}
	cookie := e.login(t, a, b)
	facade := e.facadeClient(t, a)
	bearer := bearerOf(t, facade)

	load := startLoad(ctx, replicas, map[string]credential{"cookie": {cookie: cookie}, "bearer": bearer})
	defer load.stop()
	load.waitEach(t, phaseBefore, 20)

	// Everything written so far has reached the replica.
	mc := redis.NewClient(&redis.Options{Addr: master.Addr()})
	defer mc.Close()
	if n, err := mc.Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 5000 on the master = %d, %v; want the replica to acknowledge", n, err)
	}

	load.phase.Store(phaseDown)
	killed := time.Now()
	master.Stop()

	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0].Addr()})
	defer sc.Close()
	waitfor.NoError(t, failoverRecovery, "the Sentinels to promote the replica", func() error {
		addr, err := sc.GetMasterAddrByName(ctx, masterName).Result()
		if err != nil {
			return err
		}
		if got := strings.Join(addr, ":"); got != replicaSrv.Addr() {
			return fmt.Errorf("master is %s", got)
		}
		return nil
	})
	promoted := time.Since(killed)
	for _, r := range replicas {
		var last result
		if !waitfor.Poll(failoverRecovery-time.Since(killed), waitfor.Interval, func() bool {
			last = r.get(ctx, "/data", credential{cookie: cookie}, jsonAPI)
			return last.Status == http.StatusOK
		}) {
			t.Fatalf("cookie request on %s %s after the master was killed = %s; promised 200 within %s",
				r.name, time.Since(killed).Round(time.Millisecond), last, failoverRecovery)
		}
	}
	recovered := time.Since(killed)
	load.phase.Store(phaseRecovered)
	t.Logf("measured: Sentinels promoted the replica %s after the kill; both proxy replicas served the old session %s after it (bound %s)",
		promoted.Round(time.Millisecond), recovered.Round(time.Millisecond), failoverRecovery)

	if _, err := callWhoami(ctx, facade.Session); err != nil {
		t.Errorf("MCP session from before the failover: %v", err)
	}
	load.checkAfter(t, map[string]int{"bearer": http.StatusOK}, failoverAnswer)

	// New state goes to the new master.
	fresh := e.login(t, b, a)
	for _, r := range replicas {
		if res := r.get(ctx, "/data", credential{cookie: fresh}, jsonAPI); res.Status != http.StatusOK {
			t.Errorf("session created after the failover on %s: %s", r.name, res)
		}
	}
}
