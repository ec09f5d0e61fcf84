package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
)

// appPort is the example server's port, named "http" in its pods.
const appPort = 8080

// image names an image of this run (COMMON.md's names, tagged VERSION).
func (s *suite) image(name string) string {
	return "ghcr.io/mcp-oidc-proxy/" + name + ":" + s.env.version
}

// copyAuth copies the README's ConfigMap and Secret into ns, so pods there
// use the same provider, Redis and cookie secret as the README's pods.
func (s *suite) copyAuth(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := apiCtx()
	defer cancel()
	cm, err := s.kube.CoreV1().ConfigMaps(s.appNS).Get(ctx, configMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := s.kube.CoreV1().Secrets(s.appNS).Get(ctx, configMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: cm.Name}, Data: cm.Data,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: sec.Name}, Type: sec.Type, Data: sec.Data,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// restrictedContainer is a container that passes the restricted Pod
// Security level.
func restrictedContainer(name, image string, args ...string) corev1.Container {
	return corev1.Container{
		Name:            name,
		Image:           image,
		Args:            args,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: appPort}},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// restrictedPodSpec runs containers as a non-root user with the runtime's
// seccomp profile.
func restrictedPodSpec(containers ...corev1.Container) corev1.PodSpec {
	return corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			RunAsUser:      ptr.To(int64(65532)),
			RunAsGroup:     ptr.To(int64(65532)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: containers,
	}
}

// annotations opts a pod in with the copied ConfigMap and Secret; mode
// "rebind" also tells the example server its localhost address.
func annotations(mode string) map[string]string {
	a := map[string]string{
		inject.AnnotationInject:  "true",
		inject.Prefix + "port":   "http",
		inject.AnnotationConfig:  configMapName,
		inject.Prefix + "secret": configMapName,
		inject.Prefix + "mode":   mode,
	}
	if mode == "rebind" {
		a[inject.Prefix+"rebind-port-env"] = "PORT"
	}
	return a
}

// examplePod is an annotated example MCP server pod.
func (s *suite) examplePod(name, mode string, ann map[string]string) *corev1.Pod {
	c := restrictedContainer("mcp-server", s.image("mcp-example-server"))
	if mode == "rebind" {
		c.Env = []corev1.EnvVar{{Name: "HOST", Value: "127.0.0.1"}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": name}, Annotations: ann},
		Spec:       restrictedPodSpec(c),
	}
}

// Step 7: port takeover on the real node. Rebind (the README's pods in a
// restricted namespace): the proxy holds the pod port and the app's
// localhost port is unreachable from outside. Redirect (a namespace that
// allows NET_ADMIN): the init container's nftables rule sends the pod port
// to the proxy although the app listens on every address, and the proxy
// still reaches the app over loopback.
func (s *suite) stepPortTakeover(t *testing.T) {
	ns := "mcp-redirect-" + s.runID
	s.diagnoseOnFailure(t, s.appNS, ns)
	ctx := context.Background()
	if !s.app.rebind {
		t.Errorf("the README's pods are not in rebind mode; the restricted namespace needs it")
	}
	for _, p := range s.app.pods {
		addr := net.JoinHostPort(p.Status.PodIP, strconv.Itoa(s.app.appPort))
		if conn, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			_ = conn.Close()
			t.Errorf("rebind: the app's port %s is reachable from outside the pod; it must listen on 127.0.0.1 only", addr)
		} else {
			t.Logf("rebind: the app's port %s is not reachable from outside (%v)", addr, err)
		}
	}
	for _, tg := range s.podTargets() {
		if r, err := mcpInitialize(ctx, tg, nil); err != nil || r.status != http.StatusUnauthorized {
			t.Errorf("rebind: %s without credentials: %v %v; want 401 from the proxy", tg.name, r, err)
		}
	}

	s.createNamespace(t, ns, "")
	s.copyAuth(t, ns)
	pod := s.examplePod("mcp-redirect", "redirect", annotations("redirect"))
	actx, cancel := apiCtx()
	defer cancel()
	if _, err := s.kube.CoreV1().Pods(ns).Create(actx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the redirect-mode pod: %v", err)
	}
	pods := s.waitPodsReady(t, ns, "app.kubernetes.io/name=mcp-redirect", 1)
	p := pods[0]
	checkInjected(t, &p)
	var ran bool
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.Name == inject.RedirectContainerName {
			ran = cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
		}
	}
	if !ran {
		t.Errorf("redirect: the init container %s did not complete with exit 0: %s", inject.RedirectContainerName, podState(&p))
	}
	tg := target{name: "redirect pod " + p.Name, base: "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(appPort)), rt: &http.Transport{ResponseHeaderTimeout: apiTimeout}}
	r, err := mcpInitialize(ctx, tg, nil)
	if err != nil || r.status != http.StatusUnauthorized {
		t.Errorf("redirect: %s (the app listens on every address there) without credentials: %v %v; want 401: the nftables rule must send it to the proxy", tg.name, r, err)
	}
	if err := checkInitialize(ctx, tg, s.cookie); err != nil {
		t.Errorf("redirect: %v (the proxy must reach the app over loopback, which the rule leaves alone)", err)
	}
	t.Logf("redirect: %s answers 401 without credentials and the app with the session cookie", tg.base)
}

// Step 8: a Job whose pod is annotated completes: its container finishes,
// then the kubelet stops the native sidecar and the pod succeeds.
func (s *suite) stepJob(t *testing.T) {
	ns := "mcp-job-" + s.runID
	s.diagnoseOnFailure(t, ns)
	s.createNamespace(t, ns, "restricted")
	s.copyAuth(t, ns)
	// The job's work: wait until the sidecar beside it is ready, as a
	// client of the protected app would, then exit 0.
	c := restrictedContainer("work", s.image("mcp-oidc-proxy"),
		"wait", "--url", fmt.Sprintf("http://127.0.0.1:%d/readyz", inject.AdminPort), "--timeout", "60s")
	spec := restrictedPodSpec(c)
	spec.RestartPolicy = corev1.RestartPolicyNever
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "mcp-job"},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To(int32(0)),
			ActiveDeadlineSeconds: ptr.To(int64(podsTimeout.Seconds())),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: annotations("rebind")},
				Spec:       spec,
			},
		},
	}
	ctx, cancel := apiCtx()
	defer cancel()
	if _, err := s.kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the Job: %v", err)
	}
	start := time.Now()
	eventually(t, podsTimeout, "the annotated Job to complete", func() error {
		ctx, cancel := apiCtx()
		defer cancel()
		j, err := s.kube.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range j.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				return nil
			case batchv1.JobFailed:
				t.Fatalf("the Job failed: %s: %s", c.Reason, c.Message)
			}
		}
		return fmt.Errorf("not complete yet (active %d, succeeded %d)", j.Status.Active, j.Status.Succeeded)
	})
	ctx2, cancel2 := apiCtx()
	defer cancel2()
	pods, err := s.kube.CoreV1().Pods(ns).List(ctx2, metav1.ListOptions{LabelSelector: "job-name=" + job.Name})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("the Job's pod: %v (%d pods)", err, len(pods.Items))
	}
	p := pods.Items[0]
	checkInjected(t, &p)
	if p.Status.Phase != corev1.PodSucceeded {
		t.Errorf("the Job's pod is %s, want Succeeded: %s", p.Status.Phase, podState(&p))
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.Name == inject.ProxyContainerName {
			if cs.State.Terminated == nil {
				t.Errorf("the sidecar of the finished Job's pod has not exited: %s", podState(&p))
			} else {
				t.Logf("the sidecar exited with code %d (%s)", cs.State.Terminated.ExitCode, cs.State.Terminated.Reason)
			}
		}
	}
	t.Logf("the annotated Job completed %s after it was created", time.Since(start).Round(100*time.Millisecond))
}

// injectorSelector selects the injector's pods of the README's release.
const injectorSelector = "app.kubernetes.io/name=mcp-oidc-injector,app.kubernetes.io/instance=" + release

// Step 9: with the injector scaled to 0, an annotated pod is refused with a
// message naming the webhook (failurePolicy Fail) while other pods are
// created; scaled back, annotated pods are injected again.
func (s *suite) stepInjectorDown(t *testing.T) {
	ns := "mcp-outage-" + s.runID
	s.diagnoseOnFailure(t, ns, s.injectorNS)
	s.createNamespace(t, ns, "restricted")
	s.copyAuth(t, ns)
	ctx := context.Background()
	actx, cancel := apiCtx()
	defer cancel()
	dep, err := s.kube.AppsV1().Deployments(s.injectorNS).Get(actx, release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replicas := *dep.Spec.Replicas
	mwc, err := s.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(actx, release, metav1.GetOptions{})
	if err != nil || len(mwc.Webhooks) == 0 {
		t.Fatalf("MutatingWebhookConfiguration %s: %v", release, err)
	}
	webhook := mwc.Webhooks[0].Name
	scale := func(n int32) {
		t.Helper()
		out, err := s.kubectl(ctx, "scale", "deployment/"+release, "-n", s.injectorNS, "--replicas", strconv.Itoa(int(n)))
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			scale(replicas)
		}
	})

	scale(0)
	eventually(t, podsTimeout, "the injector's pods to be gone", func() error {
		ctx, cancel := apiCtx()
		defer cancel()
		list, err := s.kube.CoreV1().Pods(s.injectorNS).List(ctx, metav1.ListOptions{LabelSelector: injectorSelector})
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d pods left", len(list.Items))
		}
		return nil
	})
	pods := s.kube.CoreV1().Pods(ns)
	_, err = pods.Create(actx, s.examplePod("annotated-while-down", "rebind", annotations("rebind")), metav1.CreateOptions{})
	if err == nil {
		t.Fatalf("an annotated pod was admitted while the injector was down; failurePolicy Fail must refuse it")
	}
	if msg := err.Error(); !strings.Contains(msg, "failed calling webhook") || !strings.Contains(msg, webhook) {
		t.Errorf("refusal while the injector is down: %q; want a message naming the webhook %q (failed calling webhook)", msg, webhook)
	} else {
		t.Logf("annotated pod refused while the injector is down: %s", msg)
	}
	plain := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "plain-while-down"},
		Spec:       restrictedPodSpec(restrictedContainer("pause", "registry.k8s.io/pause:3.10")),
	}
	if _, err := pods.Create(actx, plain, metav1.CreateOptions{}); err != nil {
		t.Errorf("a pod without the annotation was refused while the injector was down: %v; only opted-in pods may depend on it", err)
	}

	scale(replicas)
	restored = true
	out, err := s.kubectl(ctx, "rollout", "status", "deployment/"+release, "-n", s.injectorNS, "--timeout", podsTimeout.String())
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var injected *corev1.Pod
	eventually(t, podsTimeout, "an annotated pod to be admitted and injected after scaling back", func() error {
		ctx, cancel := apiCtx()
		defer cancel()
		p, err := pods.Create(ctx, s.examplePod("annotated-after", "rebind", annotations("rebind")), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		injected = p
		return nil
	})
	checkInjected(t, injected)
	t.Logf("scaled back to %d replicas: annotated pods are injected again", replicas)
}

// Step 11: an annotated pod with no ConfigMap is refused at admission with
// the fix in the message: first with the README's install, whose cluster
// defaults (the issuer only) do not make a configuration on their own, then
// with no cluster defaults at all, where the pod has no configuration
// source.
func (s *suite) stepNoConfig(t *testing.T) {
	ns := "mcp-noconfig-" + s.runID
	s.diagnoseOnFailure(t, ns, s.injectorNS)
	s.createNamespace(t, ns, "restricted")
	// Everything a restricted namespace needs, and no ConfigMap or Secret.
	ann := map[string]string{inject.AnnotationInject: "true", inject.Prefix + "mode": "rebind", inject.Prefix + "rebind-port-env": "PORT"}
	create := func() error {
		ctx, cancel := apiCtx()
		defer cancel()
		_, err := s.kube.CoreV1().Pods(ns).Create(ctx, s.examplePod("no-config", "rebind", ann), metav1.CreateOptions{})
		if err == nil {
			return errors.New("admitted")
		}
		return err
	}
	checkRefusal := func(err error, want string) {
		t.Helper()
		msg := err.Error()
		if msg == "admitted" {
			t.Fatalf("an annotated pod with no ConfigMap was admitted; it would crash-loop. Want a refusal at admission")
		}
		for _, w := range []string{"denied the request", inject.AnnotationConfig, "fix", want} {
			if !strings.Contains(msg, w) {
				t.Errorf("refusal %q does not contain %q", msg, w)
			}
		}
		t.Logf("refused: %s", msg)
	}
	checkRefusal(create(), "defaults")

	// The same install without cluster defaults.
	ctx := context.Background()
	vals, err := s.helmCmd(ctx, "get", "values", release, "-n", s.injectorNS, "-o", "json")
	if err != nil {
		t.Fatalf("%v: %s", err, vals)
	}
	var v map[string]any
	if err := json.Unmarshal(vals, &v); err != nil {
		t.Fatal(err)
	}
	if sc, ok := v["sidecar"].(map[string]any); ok {
		delete(sc, "defaults")
	}
	file := filepath.Join(t.TempDir(), "values.json")
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := s.helmCmd(ctx, "upgrade", release, filepath.Join(s.env.root, "charts", "mcp-oidc-proxy"), "-n", s.injectorNS,
		"-f", file, "--wait", "--timeout", podsTimeout.String()); err != nil {
		t.Fatalf("helm upgrade without cluster defaults: %v: %s", err, out)
	}
	var last error
	eventually(t, podsTimeout, "the injector without cluster defaults to refuse a pod without configuration source", func() error {
		last = create()
		if last != nil && strings.Contains(last.Error(), "no configuration source") {
			return nil
		}
		return fmt.Errorf("last answer: %v", last)
	})
	checkRefusal(last, "no configuration source")
}
