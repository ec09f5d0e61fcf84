package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/mcpsession"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/requestid"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/mcpclient"
)

const (
	// sessionCalls is how many tool calls each client makes in one
	// session, as the issue asks.
	sessionCalls = 50
	// killCalls is how many calls a session makes before and after its
	// owner is killed (before: enough that some land on the other pod, all
	// but certainly).
	killCalls = 25
	// sessionProtocol is the protocol version the Go client is pinned to:
	// the last one with Mcp-Session-Id sessions.
	sessionProtocol = "2025-11-25"
	// hopsMetric counts the requests a replica routed for a session it
	// does not own, by result.
	hopsMetric = "mcp_oidc_proxy_mcp_session_hops_total"
	// replayName names the Deployment and Service with initialize replay
	// on, in a namespace of their own.
	replayName = "mcp-replay"
	// nodeTimeout bounds node-level effects of a pod deletion: the pod's
	// processes exiting and kube-proxy dropping its endpoint.
	nodeTimeout = 30 * time.Second
	// tsTimeout bounds one run of the TypeScript client (npm ci included).
	tsTimeout = 3 * time.Minute
)

// Step 10: MCP sessions of the protocol versions that keep one, behind the
// README's plain Service (two replicas, no session affinity). Every
// request goes on a new connection, as a per-request load balancer would
// send it, so the calls of a session land on both pods and the sidecars
// forward each to the pod that owns the session:
//   - the Service has no sessionAffinity;
//   - the Go SDK client pinned to 2025-11-25 and the TypeScript SDK 1.x
//     client each complete 50 tool calls in one session, with no
//     "session not found", and the hop metric shows forwarded requests;
//   - the pod that owns the Go client's session is killed: its next call
//     fails with session not found (404) and a new session works;
//   - on a second Deployment with mcp_session.replay_initialize (and debug
//     logs, which show each hop on both pods with the same request id),
//     killing the owner goes unnoticed: every call succeeds and a live
//     pod counts the replay.
func (s *suite) stepSessions(t *testing.T) {
	replayNS := "mcp-replay-" + s.runID
	s.diagnoseOnFailure(t, s.appNS, replayNS)
	ctx := context.Background()
	start := time.Now()

	// The replay Deployment starts while the README's is tested.
	s.createReplayDeployment(t, replayNS)

	actx, cancel := apiCtx()
	defer cancel()
	svc, err := s.kube.CoreV1().Services(s.appNS).Get(actx, "mcp-server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := svc.Spec.SessionAffinity; a != corev1.ServiceAffinityNone {
		t.Errorf("the README's Service has sessionAffinity %q, want %q: the sidecars route sessions, no affinity is needed", a, corev1.ServiceAffinityNone)
	}
	// A fresh access token, so the step does not depend on how long the
	// steps before it took.
	if s.mcp == nil {
		t.Fatal("step 4 left no MCP client")
	}
	tok, err := s.mcp.Tokens.Refresh(actx)
	if err != nil {
		t.Fatalf("refreshing step 4's token: %v", err)
	}
	token := tok.AccessToken

	// The Go SDK client, pinned to 2025-11-25, through the Service.
	pods := s.app.pods
	waitRoutedToAll(t, s.app.service, pods)
	endpoint := s.clusterURL + "/mcp"
	rt := spreadTransport(s.app.service)
	before := s.hopSnapshot(t, pods)
	phase := time.Now()
	cs := connectPinned(t, ctx, endpoint, rt, token)
	callN(t, ctx, cs, "go", sessionCalls)
	after := s.hopSnapshot(t, pods)
	owner, survivor := ownerByHops(t, pods, before, after)
	t.Logf("Go SDK client (%s): %d calls in one session through the Service %s in %s; %s owns it, %s forwarded %.0f requests to it",
		sessionProtocol, sessionCalls, svc.Spec.ClusterIP, time.Since(phase).Round(100*time.Millisecond), owner.Name, survivor.Name, after.delta(survivor.Name, before, mcpsession.ResultForwarded))

	// The TypeScript SDK client through the external URL (the ingress in
	// front of the Service).
	phase = time.Now()
	sum := s.runTSCalls(t, s.externalURL+"/mcp", token, sessionCalls)
	afterTS := s.hopSnapshot(t, pods)
	if sum.OK != sessionCalls || len(sum.Errors) > 0 || !sum.Session || sum.Server != exampleServerName {
		t.Errorf("TypeScript SDK client: %+v; want %d successful calls in one session with %s and no error", sum, sessionCalls, exampleServerName)
	}
	var tsForwarded float64
	for _, p := range pods {
		tsForwarded += afterTS.delta(p.Name, after, mcpsession.ResultForwarded)
		for _, r := range []string{mcpsession.ResultOwnerGone, mcpsession.ResultRefused} {
			if d := afterTS.delta(p.Name, after, r); d != 0 {
				t.Errorf("pod %s counted %.0f hops %s during the TypeScript client's run; want none", p.Name, d, r)
			}
		}
	}
	if tsForwarded == 0 {
		t.Errorf("no request of the TypeScript client's session was forwarded: its requests did not reach both pods, so the run proves nothing")
	}
	t.Logf("TypeScript SDK client (protocol %s): %d calls in one session through %s in %s; %.0f requests forwarded to the owner",
		sum.ProtocolVersion, sum.OK, s.externalURL, time.Since(phase).Round(100*time.Millisecond), tsForwarded)

	// The owner of the Go client's session goes away: without replay, the
	// next call gets 404 (session not found), and a new session works.
	phase = time.Now()
	s.killPod(t, s.appNS, owner, s.app.podPort, s.app.service)
	err = callEcho(ctx, cs, "after the owner is gone")
	switch {
	case err == nil:
		t.Fatalf("a call of a session whose owner %s is gone succeeded, without initialize replay; want session not found", owner.Name)
	case !errors.Is(err, mcp.ErrSessionMissing):
		t.Fatalf("a call of a session whose owner is gone failed with %s; want session not found (404), so the client starts a new session", redact(err))
	}
	_ = cs.Close()
	if n := s.hopSnapshot(t, s.readyPods(t, s.appNS, appSelector)).sum(afterTS, mcpsession.ResultOwnerGone); n < 1 {
		t.Errorf("the live pods counted %.0f hops owner_gone; want at least 1", n)
	}
	cs2 := connectPinned(t, ctx, endpoint, rt, token)
	callN(t, ctx, cs2, "go, new session", killCalls)
	_ = cs2.Close()
	t.Logf("owner %s killed: the next call failed with session not found (%s); a new session then made %d calls (%s)",
		owner.Name, redact(err), killCalls, time.Since(phase).Round(100*time.Millisecond))

	s.checkReplay(t, replayNS, token)

	// Later steps use the README's pods: the Deployment replaced the
	// killed one.
	s.app.pods = s.waitPodsReady(t, s.appNS, appSelector, 2)
	t.Logf("step done in %s", time.Since(start).Round(100*time.Millisecond))
}

// checkReplay runs the replay case on the Deployment createReplayDeployment
// started: a session whose owner is killed goes on without an error, and
// the debug logs show each hop on both pods with the same request id.
func (s *suite) checkReplay(t *testing.T, ns, token string) {
	t.Helper()
	ctx := context.Background()
	phase := time.Now()
	pods := s.waitPodsReady(t, ns, "app.kubernetes.io/name="+replayName, 2)
	port, _, _ := protectedPort(t, &pods[0])
	actx, cancel := apiCtx()
	defer cancel()
	svc, err := s.kube.CoreV1().Services(ns).Get(actx, replayName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	service := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
	tg := target{name: "Service " + replayName, base: "http://" + replayName + "." + ns + ".svc.cluster.local", rt: transportTo(service)}
	waitServes(t, tg)
	waitRoutedToAll(t, service, pods)
	t.Logf("replay Deployment ready and served by its Service (waited %s)", time.Since(phase).Round(100*time.Millisecond))

	tagged := &requestIDs{base: spreadTransport(service), prefix: "sessions-" + s.runID}
	before := s.hopSnapshot(t, pods)
	cs := connectPinned(t, ctx, tg.base+"/mcp", tagged, token)
	defer cs.Close()
	callN(t, ctx, cs, "go, replay on", killCalls)
	after := s.hopSnapshot(t, pods)
	owner, survivor := ownerByHops(t, pods, before, after)
	t.Logf("replay on: %s owns the session, %s forwarded %.0f requests to it", owner.Name, survivor.Name, after.delta(survivor.Name, before, mcpsession.ResultForwarded))
	s.checkHopLogs(t, ns, survivor, owner, tagged.prefix)

	phase = time.Now()
	s.killPod(t, ns, owner, port, service)
	for i := range killCalls {
		if err := callEcho(ctx, cs, fmt.Sprintf("go, replay on, after the kill %d", i)); err != nil {
			t.Fatalf("call %d after the owner %s was killed, with initialize replay on: %s; want no error", i, owner.Name, redact(err))
		}
	}
	// The survivor replays, or the pod replacing the owner if it got the
	// first request after the kill.
	replayed := s.hopSnapshot(t, s.readyPods(t, ns, "app.kubernetes.io/name="+replayName)).sum(after, mcpsession.ResultReplayed)
	if replayed < 1 {
		t.Errorf("the live pods counted %.0f replays; want at least 1", replayed)
	}
	t.Logf("replay on: owner %s killed, the session went on: %d calls without an error, %.0f replay of its initialize (%s)",
		owner.Name, killCalls, replayed, time.Since(phase).Round(100*time.Millisecond))
}

// createReplayDeployment creates, in a restricted namespace of its own, a
// copy of the README's ConfigMap and Secret with
// mcp_session.replay_initialize on, and a Deployment like the README's (two
// replicas, rebind mode, debug logs) behind a plain Service. It does not
// wait for the pods.
func (s *suite) createReplayDeployment(t *testing.T, ns string) {
	t.Helper()
	s.createNamespace(t, ns, "restricted")
	s.copyAuth(t, ns)
	ctx, cancel := apiCtx()
	defer cancel()
	cms := s.kube.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(ctx, configMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &doc); err != nil {
		t.Fatalf("the README's config.yaml: %v", err)
	}
	doc["mcp_session"] = map[string]any{"replay_initialize": true}
	edited, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["config.yaml"] = string(edited)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update ConfigMap %s/%s: %v", ns, configMapName, err)
	}

	labels := map[string]string{"app.kubernetes.io/name": replayName}
	c := restrictedContainer("mcp-server", s.image("mcp-example-server"))
	c.Env = []corev1.EnvVar{{Name: "HOST", Value: "127.0.0.1"}}
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
		PeriodSeconds: 2,
	}
	ann := annotations("rebind")
	ann[inject.AnnotationLogLevel] = "debug"
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: replayName, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann},
				Spec:       restrictedPodSpec(c),
			},
		},
	}
	if _, err := s.kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Deployment %s/%s: %v", ns, replayName, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: replayName},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	if _, err := s.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Service %s/%s: %v", ns, replayName, err)
	}
}

// waitServes waits until tg reaches a sidecar (a request without
// credentials gets the proxy's 401).
func waitServes(t *testing.T, tg target) {
	t.Helper()
	eventually(t, serviceTimeout, tg.name+" to reach the sidecars", func() error {
		r, err := mcpInitialize(context.Background(), tg, nil)
		if err != nil {
			return err
		}
		if r.status != http.StatusUnauthorized {
			return fmt.Errorf("answered %s, want the proxy's 401", r)
		}
		return nil
	})
}

// spreadTransport sends every request to the Service addr on a new
// connection, so kube-proxy picks a pod for each, as a load balancer that
// balances requests (not connections) would.
func spreadTransport(addr string) *http.Transport {
	tr := transportTo(addr)
	tr.DisableKeepAlives = true
	return tr
}

// requestIDs gives every request an X-Request-Id of its own, prefix-n, which
// the sidecars use in their logs.
type requestIDs struct {
	base   http.RoundTripper
	prefix string
	n      atomic.Int64
}

func (r *requestIDs) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(requestid.Header, fmt.Sprintf("%s-%d", r.prefix, r.n.Add(1)))
	return r.base.RoundTrip(req)
}

// connectPinned starts a session with the Go SDK client pinned to
// sessionProtocol, with a fixed bearer token, and checks that the server
// gave it a session id.
func connectPinned(t *testing.T, ctx context.Context, endpoint string, rt http.RoundTripper, token string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-cluster-sessions", Version: "v1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: rt}, OAuthHandler: mcpclient.StaticToken(token)},
		&mcp.ClientSessionOptions{ProtocolVersion: sessionProtocol})
	if err != nil {
		t.Fatalf("Go SDK client (%s) at %s: %s", sessionProtocol, endpoint, redact(err))
	}
	if v := cs.InitializeResult().ProtocolVersion; v != sessionProtocol {
		_ = cs.Close()
		t.Fatalf("the session speaks %q, want %s", v, sessionProtocol)
	}
	if cs.ID() == "" {
		_ = cs.Close()
		t.Fatalf("the server gave no Mcp-Session-Id: the session is not stateful, so the step proves nothing")
	}
	return cs
}

// callEcho makes one echo call and checks its text came back.
func callEcho(ctx context.Context, cs *mcp.ClientSession, text string) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": text}})
	if err != nil {
		return err
	}
	if res.IsError {
		return fmt.Errorf("echo returned a tool error: %+v", res.Content)
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	var out struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Text != text {
		return fmt.Errorf("echo answered %s, want the text %q", raw, text)
	}
	return nil
}

// sessionIDInError is where the Go SDK's errors name the session id.
var sessionIDInError = regexp.MustCompile(`session ID: [^)\s]+`)

// redact is err's message without the session id, which is a credential
// for the session.
func redact(err error) string {
	return sessionIDInError.ReplaceAllString(err.Error(), "session ID: (redacted)")
}

// callN makes n echo calls; any failure fails the test.
func callN(t *testing.T, ctx context.Context, cs *mcp.ClientSession, what string, n int) {
	t.Helper()
	for i := range n {
		if err := callEcho(ctx, cs, fmt.Sprintf("%s %d", what, i)); err != nil {
			if errors.Is(err, mcp.ErrSessionMissing) {
				t.Fatalf("%s: call %d of %d: session not found: %s", what, i+1, n, redact(err))
			}
			t.Fatalf("%s: call %d of %d: %s", what, i+1, n, redact(err))
		}
	}
}

// hops is each pod's hop counters by result.
type hops map[string]map[string]float64

// delta is how much the counter result of pod grew since before.
func (h hops) delta(pod string, before hops, result string) float64 {
	return h[pod][result] - before[pod][result]
}

// sum is how much the counter result grew since before, over the pods of
// h (a pod not in before counts from 0).
func (h hops) sum(before hops, result string) float64 {
	var n float64
	for pod := range h {
		n += h.delta(pod, before, result)
	}
	return n
}

// readyPods are the Ready pods matching selector in ns that are not being
// deleted.
func (s *suite) readyPods(t *testing.T, ns, selector string) []corev1.Pod {
	t.Helper()
	ctx, cancel := apiCtx()
	defer cancel()
	list, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			out = append(out, p)
		}
	}
	return out
}

var hopsLine = regexp.MustCompile(`^` + hopsMetric + `\{result="([a-z_]+)"\} ([0-9.e+]+)$`)

// hopSnapshot reads the hop counters of the pods from their sidecars'
// /metrics on the admin port.
func (s *suite) hopSnapshot(t *testing.T, pods []corev1.Pod) hops {
	t.Helper()
	out := hops{}
	for _, p := range pods {
		u := "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(inject.AdminPort)) + "/metrics"
		ctx, cancel := apiCtx()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("pod %s metrics: %v", p.Name, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		cancel()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("pod %s metrics: %d %v", p.Name, resp.StatusCode, err)
		}
		counts := map[string]float64{}
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := hopsLine.FindStringSubmatch(sc.Text()); m != nil {
				v, err := strconv.ParseFloat(m[2], 64)
				if err != nil {
					t.Fatalf("pod %s metrics: %q: %v", p.Name, sc.Text(), err)
				}
				counts[m[1]] = v
			}
		}
		out[p.Name] = counts
	}
	return out
}

// ownerByHops tells which of two pods owns a session whose requests were
// spread over both: the other one forwarded some of them to it, the owner
// forwarded none. Nothing else may have been counted.
func ownerByHops(t *testing.T, pods []corev1.Pod, before, after hops) (owner, other corev1.Pod) {
	t.Helper()
	if len(pods) != 2 {
		t.Fatalf("%d pods, want 2", len(pods))
	}
	for _, p := range pods {
		for _, r := range []string{mcpsession.ResultOwnerGone, mcpsession.ResultRefused, mcpsession.ResultReplayed} {
			if d := after.delta(p.Name, before, r); d != 0 {
				t.Errorf("pod %s counted %.0f hops %s; want none while both pods run", p.Name, d, r)
			}
		}
	}
	f0 := after.delta(pods[0].Name, before, mcpsession.ResultForwarded)
	f1 := after.delta(pods[1].Name, before, mcpsession.ResultForwarded)
	switch {
	case f0 == 0 && f1 > 0:
		return pods[0], pods[1]
	case f1 == 0 && f0 > 0:
		return pods[1], pods[0]
	}
	t.Fatalf("forwarded requests: %s %.0f, %s %.0f; want some on exactly one pod (the requests must reach both pods, and only the one that does not own the session forwards)",
		pods[0].Name, f0, pods[1].Name, f1)
	return owner, other
}

// logLine is the part of a sidecar's JSON log line the hop check reads.
type logLine struct {
	Msg       string `json:"msg"`
	RequestID string `json:"request_id"`
	Result    string `json:"result"`
	Owner     string `json:"owner"`
}

// checkHopLogs checks that the debug logs show a hop on both pods: "mcp
// session hop" (forwarded) on the pod that forwarded a request with one of
// the client's request ids, and "mcp session hop received" with the same id
// on the owner.
func (s *suite) checkHopLogs(t *testing.T, ns string, from, owner corev1.Pod, prefix string) {
	t.Helper()
	read := func(p corev1.Pod) ([]logLine, error) {
		out, err := s.kubectl(context.Background(), "logs", "-n", ns, p.Name, "-c", inject.ProxyContainerName)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, out)
		}
		var lines []logLine
		for _, l := range strings.Split(string(out), "\n") {
			var ll logLine
			if json.Unmarshal([]byte(l), &ll) == nil && strings.HasPrefix(ll.RequestID, prefix) {
				lines = append(lines, ll)
			}
		}
		return lines, nil
	}
	var sent map[string]bool
	var both []string
	// A container's log lines reach kubectl logs a moment after they are
	// written.
	eventually(t, serviceTimeout, "the debug log lines of a hop on both pods", func() error {
		fromLines, err := read(from)
		if err != nil {
			return err
		}
		ownerLines, err := read(owner)
		if err != nil {
			return err
		}
		sent, both = map[string]bool{}, nil
		for _, l := range fromLines {
			if l.Msg == "mcp session hop" && l.Result == mcpsession.ResultForwarded {
				sent[l.RequestID] = true
			}
		}
		for _, l := range ownerLines {
			if l.Msg == "mcp session hop received" && sent[l.RequestID] {
				both = append(both, l.RequestID)
			}
		}
		if len(sent) == 0 || len(both) == 0 {
			return fmt.Errorf("%d \"mcp session hop\" lines on %s, %d \"mcp session hop received\" lines with the same request id on the owner %s; want both for every hop",
				len(sent), from.Name, len(both), owner.Name)
		}
		return nil
	})
	t.Logf("debug logs: %d hops logged on %s as \"mcp session hop\" and on the owner %s as \"mcp session hop received\" with the same request id (e.g. %s)",
		len(sent), from.Name, owner.Name, both[0])
}

// killPod deletes the pod with no grace period, as a crashed node would
// lose it, and waits until it is gone for good: its protected port no longer
// answers and kube-proxy no longer sends connections to the Service there.
func (s *suite) killPod(t *testing.T, ns string, p corev1.Pod, port int, service string) {
	t.Helper()
	ctx, cancel := apiCtx()
	defer cancel()
	if err := s.kube.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil {
		t.Fatalf("delete pod %s: %v", p.Name, err)
	}
	addr := net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port))
	eventually(t, nodeTimeout, "the killed pod's port "+addr+" to stop answering", func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		_ = conn.Close()
		return errors.New("it still accepts connections")
	})
	eventually(t, nodeTimeout, "kube-proxy to stop sending "+service+" to "+p.Status.PodIP, func() error {
		routed, err := proxyRoutes(p.Status.PodIP)
		if err != nil {
			return err
		}
		if len(routed) > 0 {
			return errors.New("its nftables rules still name the pod")
		}
		return nil
	})
}

// waitRoutedToAll waits until kube-proxy sends the Service's connections to
// every one of the pods (a pod's endpoint is programmed a moment after it
// is Ready): otherwise a session's requests may all reach one pod.
func waitRoutedToAll(t *testing.T, service string, pods []corev1.Pod) {
	t.Helper()
	var ips []string
	for _, p := range pods {
		ips = append(ips, p.Status.PodIP)
	}
	eventually(t, serviceTimeout, "kube-proxy to send "+service+" to each of "+strings.Join(ips, ", "), func() error {
		routed, err := proxyRoutes(ips...)
		if err != nil {
			return err
		}
		if len(routed) != len(ips) {
			return fmt.Errorf("its nftables rules name only %v", routed)
		}
		return nil
	})
}

// proxyRoutes returns which of the pod IPs kube-proxy's nftables rules
// name (the one-node cluster's kube-proxy runs in nftables mode on this
// host).
func proxyRoutes(ips ...string) ([]string, error) {
	ctx, cancel := apiCtx()
	defer cancel()
	out, err := exec.CommandContext(ctx, "nft", "list", "table", "ip", "kube-proxy").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("nft list table ip kube-proxy: %w: %s", err, out)
	}
	var routed []string
	for _, ip := range ips {
		if regexp.MustCompile(`(^|[^0-9])` + regexp.QuoteMeta(ip) + `([^0-9]|$)`).Match(out) {
			routed = append(routed, ip)
		}
	}
	return routed, nil
}

// tsSummary is what test/interop/ts/calls.mjs prints.
type tsSummary struct {
	ProtocolVersion string   `json:"protocolVersion"`
	Server          string   `json:"server"`
	Session         bool     `json:"session"`
	Calls           int      `json:"calls"`
	OK              int      `json:"ok"`
	Errors          []string `json:"errors"`
}

// runTSCalls runs the official TypeScript SDK client (test/interop/ts,
// pinned by its package-lock.json) for n calls in one session at endpoint.
func (s *suite) runTSCalls(t *testing.T, endpoint, token string, n int) tsSummary {
	t.Helper()
	node, npm := needTool(t, "node"), needTool(t, "npm")
	dir := filepath.Join(s.env.root, "test", "interop", "ts")
	ctx, cancel := context.WithTimeout(context.Background(), tsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	cmd = exec.CommandContext(ctx, node, "calls.mjs", endpoint, strconv.Itoa(n))
	cmd.Dir = dir
	// The token goes in the environment, never on the command line.
	cmd.Env = append(os.Environ(), "MCP_ACCESS_TOKEN="+token, "NODE_NO_WARNINGS=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var sum tsSummary
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("node calls.mjs: %v; output %q, stderr %q (want a JSON summary)", runErr, stdout.String(), stderr.String())
	}
	if runErr != nil {
		t.Errorf("node calls.mjs: %v: %+v\nstderr:\n%s", runErr, sum, stderr.String())
	}
	if e := strings.TrimSpace(stderr.String()); e != "" {
		t.Errorf("the TypeScript client wrote to stderr (SDK warnings count as failures):\n%s", e)
	}
	return sum
}

// needTool fails (never skips) when a tool the step needs is missing.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH (%v): the TypeScript SDK client needs Node.js 20 or newer with npm; "+
			"install it, e.g. `sudo apt-get install -y nodejs npm` or from https://nodejs.org", name, err)
	}
	return p
}
