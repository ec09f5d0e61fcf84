package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	injector "github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-injector/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/webhook"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/kube"
)

// admissionResult compares the API server creating (dry run) an annotated
// pod, which goes through the injector's webhook over HTTPS, with a plain
// pod, which the webhook's match conditions keep away from it.
type admissionResult struct {
	n                          int
	directP50, directP99       time.Duration // AdmissionReview POSTed to the webhook itself
	annotatedP50, annotatedP99 time.Duration
	plainP50, plainP99         time.Duration
	injected                   bool
}

const injectorNamespace = "mcp-oidc-injector"

// runAdmission starts kube-apiserver and etcd (envtest), installs the
// shipped webhook configuration pointing at an injector run through the
// same app.Run as the binary, and times o.admissions dry-run pod creations
// of each kind through the API server, one at a time.
func (e *env) runAdmission(ctx context.Context) (admissionResult, error) {
	r := admissionResult{n: e.o.admissions}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		out, err := exec.CommandContext(ctx, filepath.Join(e.root, "hack/envtest-bins.sh")).Output()
		if err != nil {
			return r, fmt.Errorf("hack/envtest-bins.sh: %w", err)
		}
		if err := os.Setenv("KUBEBUILDER_ASSETS", strings.TrimSpace(string(out))); err != nil {
			return r, err
		}
	}
	ctrl.SetLogger(logr.Discard())
	cfg, stop, err := kube.StartAPIServer()
	if err != nil {
		return r, err
	}
	defer stop()

	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return r, err
	}
	if err := admissionregistrationv1.AddToScheme(scheme); err != nil {
		return r, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return r, err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: injectorNamespace}}); err != nil {
		return r, err
	}
	port, err := kube.FreePort()
	if err != nil {
		return r, err
	}
	manifest := filepath.Join(e.root, "config/webhook/mutatingwebhookconfiguration.yaml")
	data, err := os.ReadFile(manifest)
	if err != nil {
		return r, err
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(data, mwc); err != nil {
		return r, fmt.Errorf("parsing %s: %w", manifest, err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, webhook.Path)
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	}
	if err := c.Create(ctx, mwc); err != nil {
		return r, fmt.Errorf("installing %s: %w", manifest, err)
	}

	health, err := kube.FreePort()
	if err != nil {
		return r, err
	}
	metricsPort, err := kube.FreePort()
	if err != nil {
		return r, err
	}
	certDir, err := os.MkdirTemp("", "bench-injector-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(certDir)
	args := []string{
		"--namespace=" + injectorNamespace,
		"--cert-dir=" + certDir,
		"--cert-secret-name=bench-injector-cert",
		"--cert-extra-names=127.0.0.1",
		"--webhook-config-name=" + mwc.Name,
		"--webhook-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(port),
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metricsPort),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(health),
		"--log-level=error",
	}
	opts, err := injector.ParseOptions(args, func(k string) string {
		if k == injector.EnvPrefix+"SIDECAR_IMAGE" {
			return "example.com/mcp-oidc-proxy:bench"
		}
		return ""
	})
	if err != nil {
		return r, fmt.Errorf("injector options: %w", err)
	}
	ictx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- injector.Run(ictx, opts, injector.Deps{REST: cfg, Log: injector.NewLogger("error", io.Discard)})
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}()

	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", health)
	if err := poll(ctx, 60*time.Second, func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return r, fmt.Errorf("injector %s: %w", ready, err)
	}
	// Ready is not yet admitting: the caBundle has to reach the API server.
	var lastErr error
	if err := poll(ctx, 60*time.Second, func() bool {
		pod := benchPod(true)
		lastErr = c.Create(ctx, pod, client.DryRunAll)
		return lastErr == nil && hasContainer(pod, inject.ProxyContainerName)
	}); err != nil {
		return r, fmt.Errorf("the API server admitting through the injector: %w (last: %v)", err, lastErr)
	}
	r.injected = true

	// Warm both paths, then time them interleaved.
	var annotated, plain []time.Duration
	for i := range r.n + 5 {
		for _, ann := range []bool{true, false} {
			pod := benchPod(ann)
			t0 := time.Now()
			if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
				return r, fmt.Errorf("dry-run create (annotated %v): %w", ann, err)
			}
			d := time.Since(t0)
			if ann && !hasContainer(pod, inject.ProxyContainerName) {
				return r, fmt.Errorf("annotated pod admitted without %s", inject.ProxyContainerName)
			}
			if i < 5 {
				continue
			}
			if ann {
				annotated = append(annotated, d)
			} else {
				plain = append(plain, d)
			}
		}
	}
	sortDurations(annotated)
	sortDurations(plain)
	r.annotatedP50, r.annotatedP99 = quantile(annotated, 0.5), quantile(annotated, 0.99)
	r.plainP50, r.plainP99 = quantile(plain, 0.5), quantile(plain, 0.99)

	// The webhook alone: the AdmissionReview the API server would send,
	// POSTed over HTTPS (trusting the caBundle the injector installed) on a
	// kept-alive connection, as the API server's own client does.
	if err := c.Get(ctx, client.ObjectKeyFromObject(mwc), mwc); err != nil {
		return r, err
	}
	pool := x509.NewCertPool()
	if len(mwc.Webhooks) == 0 || !pool.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle) {
		return r, errors.New("the webhook configuration has no caBundle")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	var direct []time.Duration
	for i := range r.n + 5 {
		d, err := review(ctx, hc, url, i)
		if err != nil {
			return r, fmt.Errorf("AdmissionReview straight to the webhook: %w", err)
		}
		if i >= 5 {
			direct = append(direct, d)
		}
	}
	sortDurations(direct)
	r.directP50, r.directP99 = quantile(direct, 0.5), quantile(direct, 0.99)
	return r, nil
}

// review POSTs one AdmissionReview for an annotated pod and checks that it
// is allowed with a patch (the sidecar).
func review(ctx context.Context, hc *http.Client, url string, i int) (time.Duration, error) {
	pod, err := json.Marshal(benchPod(true))
	if err != nil {
		return 0, err
	}
	dry := true
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(fmt.Sprintf("bench-%d", i)),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "default", Operation: admissionv1.Create, DryRun: &dry,
			Object: runtime.RawExtension{Raw: pod},
		},
	})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	d := time.Since(t0)
	_ = resp.Body.Close()
	if err != nil {
		return 0, err
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &out); err != nil {
		return 0, fmt.Errorf("answer %d: %w", resp.StatusCode, err)
	}
	if out.Response == nil || !out.Response.Allowed || len(out.Response.Patch) == 0 {
		return 0, fmt.Errorf("answer %d: %s, want allowed with a patch", resp.StatusCode, raw)
	}
	return d, nil
}

// benchPod is an MCP server pod; annotated, it asks for the sidecar with
// its configuration in a ConfigMap.
func benchPod(annotated bool) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "mcp-", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "example.com/mcp-server:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
	if annotated {
		pod.Annotations = map[string]string{inject.AnnotationInject: "true", inject.AnnotationConfig: "mcp-config"}
	}
	return pod
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}
