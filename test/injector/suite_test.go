// Package injector tests the injector end to end against a real
// kube-apiserver and etcd (controller-runtime envtest): the webhook
// configuration under config/webhook is installed as shipped (only its
// clientConfig points at the in-process injector), and the injector runs
// through the same app.Run as the binary.
package injector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-injector/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/webhook"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/kube"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/syncbuf"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

const (
	injectorNamespace = "mcp-oidc-injector"
	webhookConfigName = "mcp-oidc-injector"
	webhookName       = "inject.mcp-oidc-proxy.io"
	sidecarImage      = "example.com/mcp-oidc-proxy:test"
	manifest          = "../../config/webhook/mutatingwebhookconfiguration.yaml"
)

// suite is the shared API server; tests start and stop injectors on it one
// at a time (the webhook configuration points at one port).
type suite struct {
	cfg         *rest.Config
	client      client.Client
	webhookPort int
	metrics     *webhook.Metrics
}

var env suite

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// controller-runtime components log through the global logger.
	ctrl.SetLogger(logr.Discard())
	cfg, stop, err := kube.StartAPIServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	if err := setup(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "setting up the suite: %v\n", err)
		return 1
	}
	return m.Run()
}

func setup(cfg *rest.Config) error {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := admissionregistrationv1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	port, err := kube.FreePort()
	if err != nil {
		return err
	}
	// The same collectors app.Run registers (it adopts these).
	m, err := webhook.NewMetrics(metrics.Registry)
	if err != nil {
		return err
	}
	env = suite{cfg: cfg, client: c, webhookPort: port, metrics: m}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: injectorNamespace}}); err != nil {
		return err
	}
	// Install the shipped webhook configuration; only where it reaches the
	// injector changes (a URL instead of the in-cluster Service), and its
	// caBundle is left for the injector to fill in.
	data, err := os.ReadFile(manifest)
	if err != nil {
		return err
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(data, mwc); err != nil {
		return fmt.Errorf("parsing %s: %w", manifest, err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, webhook.Path)
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	}
	if err := c.Create(ctx, mwc); err != nil {
		return fmt.Errorf("installing %s: %w", manifest, err)
	}
	return nil
}

// injector is one running app.Run.
type injector struct {
	once    sync.Once
	stop    func()
	done    chan error
	health  string
	metrics string
	logs    *syncBuffer
}

// startInjector runs the injector with the suite's wiring plus extra flags,
// waits until /readyz answers and the API server admits an annotated pod
// through it, and stops it when the test ends.
func startInjector(t *testing.T, secretName string, extra ...string) *injector {
	t.Helper()
	return startInjectorAs(t, env.cfg, secretName, extra...)
}

// startInjectorAs is startInjector with the injector reaching the API server
// through cfg (e.g. impersonating its ServiceAccount).
func startInjectorAs(t *testing.T, cfg *rest.Config, secretName string, extra ...string) *injector {
	t.Helper()
	inj := launchInjector(t, cfg, secretName, extra...)
	waitfor.NoError(t, 20*time.Second, "injector ready", func() error { return inj.probe("/readyz") })
	waitfor.NoError(t, 20*time.Second, "the API server admitting through the injector", func() error {
		pod := annotatedPod("default", nil)
		return env.client.Create(context.Background(), pod, client.DryRunAll)
	})
	return inj
}

// launchInjector runs the injector without waiting for it, and stops it
// when the test ends.
func launchInjector(t *testing.T, cfg *rest.Config, secretName string, extra ...string) *injector {
	t.Helper()
	health, err := kube.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsPort, err := kube.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--namespace=" + injectorNamespace,
		"--cert-dir=" + t.TempDir(),
		"--cert-secret-name=" + secretName,
		"--cert-extra-names=127.0.0.1",
		"--cert-resync=200ms",
		"--cert-watch-interval=200ms",
		"--webhook-config-name=" + webhookConfigName,
		"--webhook-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(env.webhookPort),
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metricsPort),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(health),
	}, extra...)
	// The sidecar image comes from the environment, as in a Deployment.
	getenv := func(k string) string {
		if k == app.EnvPrefix+"SIDECAR_IMAGE" {
			return sidecarImage
		}
		return ""
	}
	o, err := app.ParseOptions(args, getenv)
	if err != nil {
		t.Fatalf("options: %v", err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	inj := &injector{stop: cancel, done: make(chan error, 1), logs: logs,
		health:  fmt.Sprintf("http://127.0.0.1:%d", health),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)}
	go func() { inj.done <- app.Run(ctx, o, app.Deps{REST: cfg, Log: app.NewLogger("info", logs)}) }()
	t.Cleanup(func() {
		inj.Stop(t)
		if t.Failed() {
			t.Logf("injector logs:\n%s", logs.String())
		}
	})
	return inj
}

// probe GETs a health endpoint and fails unless it answers 200, or if the
// injector has exited.
func (i *injector) probe(path string) error {
	select {
	case err := <-i.done:
		i.done <- err
		return fmt.Errorf("injector exited: %v", err)
	default:
	}
	resp, err := http.Get(i.health + path)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, body)
	}
	return nil
}

// Stop ends the injector and waits for it (once).
func (i *injector) Stop(t *testing.T) {
	t.Helper()
	i.once.Do(func() {
		i.stop()
		select {
		case err := <-i.done:
			if err != nil {
				t.Errorf("injector returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("injector did not stop")
		}
	})
}

func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "inject-", Labels: labels}}
	if err := env.client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// annotatedPod is an MCP server pod that asks for protection, with its
// sidecar configuration in a ConfigMap (the injector here has no cluster
// defaults, and a pod without a configuration source is refused).
func annotatedPod(ns string, ann map[string]string) *corev1.Pod {
	pod := plainPod(ns)
	pod.Annotations = map[string]string{inject.AnnotationInject: "true", inject.AnnotationConfig: "mcp-config"}
	for k, v := range ann {
		pod.Annotations[k] = v
	}
	return pod
}

func plainPod(ns string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "mcp-", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "example.com/mcp-server:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
}

// admissions sums the injector's admission counter for a namespace.
func admissions(ns string) float64 {
	var n float64
	for _, r := range []string{webhook.ResultInjected, webhook.ResultSkipped, webhook.ResultAlreadyInjected,
		webhook.ResultDenied, webhook.ResultError} {
		n += testutil.ToFloat64(env.metrics.Admissions(ns, r))
	}
	return n
}

type syncBuffer = syncbuf.Buffer

var errNotInjected = errors.New("no proxy container")

// proxyContainer finds the injected sidecar.
func proxyContainer(pod *corev1.Pod) (*corev1.Container, error) {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == inject.ProxyContainerName {
				return &cs[i], nil
			}
		}
	}
	return nil, errNotInjected
}
