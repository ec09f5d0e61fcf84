package helm

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-injector/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/webhook"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/kube"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// TestInjectorRunsFromTheRenderedChart installs the rendered chart, runs
// the real injector with the rendered Deployment's arguments as its
// ServiceAccount (so the rendered RBAC must suffice), and creates an
// annotated pod through the rendered webhook configuration. Only what
// cannot exist outside a cluster is replaced: the webhook reaches the
// in-process injector by URL, and files and ports are local.
func TestInjectorRunsFromTheRenderedChart(t *testing.T) {
	const ns = "live-system"
	ctx := context.Background()
	objs := mustTemplate(t, "live", ns,
		"--set", "sidecar.image.repository=example.com/mcp-oidc-proxy", "--set", "sidecar.image.tag=test",
		"--set", "sidecar.defaults.oidc.discovery_url=https://login.example.com",
		"--set", "sidecar.redis.existingSecret.name=redis", "--set", "sidecar.redis.existingSecret.passwordKey=redis-password",

		// Pods without a ConfigMap are admitted only when the defaults
		// make a configuration the sidecar accepts.
		"--set", "sidecar.defaults.oidc.client_id=mcp-proxy")
	newNamespace(t, ns)
	objs.apply(t, false, nil)

	var (
		dep appsv1.Deployment
		cm  corev1.ConfigMap
		sa  corev1.ServiceAccount
		mwc admissionregistrationv1.MutatingWebhookConfiguration
	)
	objs.into(t, "Deployment", &dep)
	objs.into(t, "ConfigMap", &cm)
	objs.into(t, "ServiceAccount", &sa)
	objs.into(t, "MutatingWebhookConfiguration", &mwc)
	c := dep.Spec.Template.Spec.Containers[0]
	rendered := kube.InjectorOptions(t, c.Args, ns)

	// The mounted defaults file, as the kubelet would project it.
	defaultsFile := filepath.Join(t.TempDir(), filepath.Base(rendered.ProxyDefaultsFile))
	if err := os.WriteFile(defaultsFile, []byte(cm.Data[filepath.Base(rendered.ProxyDefaultsFile)]), 0o600); err != nil {
		t.Fatal(err)
	}
	webhookPort, healthPort, metricsPort := freePort(t), freePort(t), freePort(t)
	// Later flags win: the rendered arguments stay as they are except for
	// local paths and addresses.
	args := append(append([]string{}, c.Args...),
		"--proxy-defaults-file="+defaultsFile,
		"--cert-dir="+t.TempDir(),
		"--cert-extra-names=127.0.0.1",
		"--cert-resync=200ms",
		"--cert-watch-interval=200ms",
		"--webhook-host=127.0.0.1",
		"--webhook-port="+strconv.Itoa(webhookPort),
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort),
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(healthPort),
	)
	o := kube.InjectorOptions(t, args, ns)

	// The rendered webhook configuration, reaching the injector by URL; its
	// caBundle is left for the injector to fill in.
	url := fmt.Sprintf("https://127.0.0.1:%d%s", webhookPort, webhook.Path)
	if err := env.client.Get(ctx, client.ObjectKeyFromObject(&mwc), &mwc); err != nil {
		t.Fatal(err)
	}
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	}
	if err := env.client.Update(ctx, &mwc); err != nil {
		t.Fatal(err)
	}

	cfg := rest.CopyConfig(env.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + sa.Namespace + ":" + sa.Name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + sa.Namespace, "system:authenticated"},
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx, o, app.Deps{REST: cfg, Log: logr.Discard()}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("injector returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("injector did not stop")
		}
	})
	waitfor.NoError(t, 30*time.Second, "injector ready", func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("injector exited: %w", err)
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})

	appNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "app-"}}
	if err := env.client.Create(ctx, appNS); err != nil {
		t.Fatal(err)
	}
	newPod := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "mcp-", Namespace: appNS.Name,
				Annotations: map[string]string{inject.AnnotationInject: "true", inject.AnnotationSecret: "mcp-proxy"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "example.com/mcp-server:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}}},
		}
	}
	// The caBundle reaches the API server's webhook client shortly after
	// the injector publishes it.
	waitfor.NoError(t, 30*time.Second, "the API server admitting through the injector", func() error {
		return env.client.Create(ctx, newPod(), client.DryRunAll)
	})
	pod := newPod()
	if err := env.client.Create(ctx, pod); err != nil {
		t.Fatalf("annotated pod: %v", err)
	}
	var proxy *corev1.Container
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == inject.ProxyContainerName {
				proxy = &cs[i]
			}
		}
	}
	if proxy == nil {
		t.Fatalf("the pod was not injected: %+v", pod.Spec)
	}
	if want := strings.TrimPrefix(findArg(t, c.Args, "--sidecar-image="), "--sidecar-image="); proxy.Image != want {
		t.Errorf("sidecar image %q, want the rendered %q", proxy.Image, want)
	}
	found := false
	for _, e := range proxy.Env {
		if e.Name == config.ClusterDefaultsEnv {
			found = strings.Contains(e.Value, "https://login.example.com")
		}
	}
	if !found {
		t.Errorf("the sidecar lacks the chart's sidecar.defaults in %s: %+v", config.ClusterDefaultsEnv, proxy.Env)
	}
	// sidecar.redis.existingSecret: the password from the platform's Secret
	// (by name, in the pod's namespace, required), the URL still from the
	// pod's own Secret.
	refs := map[string]corev1.SecretKeySelector{}
	for _, e := range proxy.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if _, dup := refs[e.Name]; dup {
				t.Errorf("%s is set twice", e.Name)
			}
			refs[e.Name] = *e.ValueFrom.SecretKeyRef
		}
	}
	if r := refs[config.FieldOf(func(c *config.Config) any { return &c.Redis.Password }).EnvName()]; r.Name != "redis" || r.Key != "redis-password" || (r.Optional != nil && *r.Optional) {
		t.Errorf("REDIS_PASSWORD from %+v, want the required key redis-password of Secret redis", r)
	}
	if r := refs[config.FieldOf(func(c *config.Config) any { return &c.Redis.URL }).EnvName()]; r.Name != "mcp-proxy" || r.Key != "redis-url" {
		t.Errorf("REDIS_URL from %+v, want key redis-url of the pod's Secret mcp-proxy", r)
	}
}

func findArg(t *testing.T, args []string, prefix string) string {
	t.Helper()
	for _, a := range args {
		if strings.HasPrefix(a, prefix) {
			return a
		}
	}
	t.Fatalf("no %s in %v", prefix, args)
	return ""
}

// freePort is kube.FreePort that fails the test.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := kube.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
