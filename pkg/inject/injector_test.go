package inject

import (
	"fmt"
	"strconv"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// mutateOutcome renders a Mutate result for comparison.
func mutateOutcome(t *testing.T, res Result, err error) string {
	t.Helper()
	if err != nil {
		return "denied: " + err.Error()
	}
	return fmt.Sprintf("skipped=%q already=%v\n%s", res.Skipped, res.AlreadyInjected, toYAML(t, res.Pod))
}

// TestInjectorSharedAcrossPods runs every golden case through one Injector
// per Settings, twice and from several goroutines at once, and requires the
// answer a fresh Mutate gives: what the Injector remembers (the
// configuration-source check) must never carry over from one pod to another
// that differs in mode, ports, log level or Secret.
func TestInjectorSharedAcrossPods(t *testing.T) {
	type testCase struct {
		name string
		pod  *corev1.Pod
		ns   Namespace
		want string
	}
	injectors := map[string]*Injector{}
	var cases []testCase
	var casesInjector []*Injector
	for _, name := range caseNames(t) {
		pod, ns, s := loadCase(t, name)
		res, err := Mutate(pod, ns, s)
		key := fmt.Sprintf("%#v", s)
		in, ok := injectors[key]
		if !ok {
			in = New(s)
			injectors[key] = in
		}
		cases = append(cases, testCase{name: name, pod: pod, ns: ns, want: mutateOutcome(t, res, err)})
		casesInjector = append(casesInjector, in)
	}
	if len(injectors) == len(cases) {
		t.Fatal("no two golden cases share Settings; the test shares nothing")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 2 {
				for i := range cases {
					// Each goroutine walks the cases in another order.
					c := cases[(i+g*7)%len(cases)]
					in := casesInjector[(i+g*7)%len(cases)]
					before := c.pod.DeepCopy()
					res, err := in.Mutate(c.pod, c.ns)
					got := mutateOutcome(t, res, err)
					mu.Lock()
					if got != c.want {
						failures = append(failures, fmt.Sprintf("%s (goroutine %d, round %d): shared Injector says\n%s\nfresh Mutate says\n%s", c.name, g, round, got, c.want))
					}
					if !equality.Semantic.DeepEqual(before, c.pod) {
						failures = append(failures, c.name+": Mutate modified its input")
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
}

// TestInjectorSourceChecksBounded admits pods on more distinct ports than
// the Injector remembers source checks for, with and without a Secret and a
// log level: memory stays bounded and every answer (denied unless the pod
// gives both, injected when it does) is still a fresh Mutate's.
func TestInjectorSourceChecksBounded(t *testing.T) {
	s := testSettings()
	// Defaults with the redis store but no Redis URL or cookie secret
	// (problems only the pod's Secret can fix) and a log level the pod's
	// own log-level annotation must replace.
	s.ProxyDefaults = "oidc:\n  discovery_url: https://login.example.com\n  client_id: mcp-proxy\nsession:\n  store: redis\nlog_level: verbose\n"
	s.DefaultMode = ModeRebind
	in := New(s)
	outcomes := map[bool]int{}
	for i := range maxSourceChecks + 20 {
		for _, v := range []struct{ secret, logLevel string }{{"", ""}, {"mcp-secret", ""}, {"", "debug"}, {"mcp-secret", "debug"}} {
			ann := map[string]string{AnnotationInject: "true", AnnotationRebindEnv: "PORT",
				AnnotationPort: strconv.Itoa(2000 + i)}
			if v.secret != "" {
				ann[AnnotationSecret] = v.secret
			}
			if v.logLevel != "" {
				ann[AnnotationLogLevel] = v.logLevel
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "apps", Annotations: ann},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
			res, err := in.Mutate(pod, Namespace{Name: "apps"})
			outcomes[err == nil]++
			got := mutateOutcome(t, res, err)
			fres, ferr := Mutate(pod, Namespace{Name: "apps"}, s)
			if want := mutateOutcome(t, fres, ferr); got != want {
				t.Fatalf("port %d, %+v: shared Injector says\n%s\nfresh Mutate says\n%s", 2000+i, v, got, want)
			}
		}
	}
	if outcomes[true] == 0 || outcomes[false] == 0 {
		t.Errorf("injected %d, denied %d: want both", outcomes[true], outcomes[false])
	}
	in.sources.mu.Lock()
	n := len(in.sources.results)
	in.sources.mu.Unlock()
	if n > maxSourceChecks {
		t.Errorf("%d source checks remembered, more than the bound %d", n, maxSourceChecks)
	}
	if n == 0 {
		t.Error("no source check remembered")
	}
}
