package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// kubectl runs kubectl against the cluster and returns its combined output.
func (s *suite) kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return s.command(ctx, s.env.kubectl, append([]string{"--kubeconfig", s.env.kubeconfig}, args...)...)
}

// helmCmd runs helm against the cluster.
func (s *suite) helmCmd(ctx context.Context, args ...string) ([]byte, error) {
	return s.command(ctx, s.env.helm, append([]string{"--kubeconfig", s.env.kubeconfig}, args...)...)
}

func (s *suite) command(ctx context.Context, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, readmeStepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = s.env.root
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w", bin, strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}

// eventually polls f until it returns nil, failing the test at timeout with
// f's last error.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	var last error
	if !waitfor.Poll(timeout, pollInterval, func() bool { last = f(); return last == nil }) {
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, last)
	}
}

// apiCtx is the context of one API request.
func apiCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), apiTimeout)
}

// createNamespace creates a namespace of this run enforcing the Pod
// Security level (empty: no label, the cluster default "privileged"); the
// teardown deletes it.
func (s *suite) createNamespace(t *testing.T, name, level string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if level != "" {
		ns.Labels["pod-security.kubernetes.io/enforce"] = level
	}
	ctx, cancel := apiCtx()
	defer cancel()
	if _, err := s.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	s.namespaces = append(s.namespaces, name)
}

// podReady reports the pod's Ready condition.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitPodsReady waits until exactly n pods match selector in ns, none of
// them terminating, all Ready, and returns them.
func (s *suite) waitPodsReady(t *testing.T, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, podsTimeout, fmt.Sprintf("%d Ready pods %q in %s", n, selector, ns), func() error {
		ctx, cancel := apiCtx()
		defer cancel()
		list, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		pods = pods[:0]
		var states []string
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				states = append(states, p.Name+": terminating")
				continue
			}
			if !podReady(&p) {
				states = append(states, p.Name+": "+podState(&p))
				continue
			}
			pods = append(pods, p)
		}
		if len(pods) != n || len(states) > 0 {
			return fmt.Errorf("%d ready, want %d; others: %v", len(pods), n, states)
		}
		return nil
	})
	return pods
}

// podState summarises why a pod is not ready, for failure messages.
func podState(p *corev1.Pod) string {
	parts := []string{string(p.Status.Phase)}
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("%s waiting (%s: %s)", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s terminated (%s, exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		case !cs.Ready:
			parts = append(parts, cs.Name+" running, not ready")
		}
		if cs.RestartCount > 0 {
			parts = append(parts, fmt.Sprintf("%s restarted %d times", cs.Name, cs.RestartCount))
		}
	}
	return strings.Join(parts, ", ")
}

// restarts sums the restart counts of every container of the pod,
// sidecars and init containers included.
func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		n += cs.RestartCount
	}
	return n
}

// diagnoseOnFailure registers a cleanup that, if the test failed, logs the
// state of the namespaces: pods, recent events and the last lines of every
// container's log (the proxy and the injector never log secrets).
func (s *suite) diagnoseOnFailure(t *testing.T, namespaces ...string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, ns := range namespaces {
			for _, args := range [][]string{
				{"get", "pods,deployments,replicasets,jobs", "-o", "wide", "-n", ns},
				{"get", "events", "--sort-by=.lastTimestamp", "-n", ns},
			} {
				out, _ := s.kubectl(ctx, args...)
				t.Logf("kubectl %s:\n%s", strings.Join(args, " "), indent(out))
			}
			list, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, p := range list.Items {
				var names []string
				for _, c := range p.Spec.InitContainers {
					names = append(names, c.Name)
				}
				for _, c := range p.Spec.Containers {
					names = append(names, c.Name)
				}
				for _, c := range names {
					out, _ := s.kubectl(ctx, "logs", "-n", ns, p.Name, "-c", c, "--tail=40")
					t.Logf("logs %s/%s/%s:\n%s", ns, p.Name, c, indent(out))
				}
			}
		}
	})
}
