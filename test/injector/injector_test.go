package injector

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/certs"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/webhook"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/waitfor"
)

// TestInjector runs the behaviours that share one injector (self-managed
// certificates with production lifetimes).
func TestInjector(t *testing.T) {
	inj := startInjector(t, "mcp-oidc-injector-certs")
	ctx := context.Background()

	t.Run("webhook registered with the injector's CA", func(t *testing.T) {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := env.client.Get(ctx, types.NamespacedName{Name: webhookConfigName}, mwc); err != nil {
			t.Fatal(err)
		}
		secret := &corev1.Secret{}
		if err := env.client.Get(ctx, types.NamespacedName{Namespace: injectorNamespace, Name: "mcp-oidc-injector-certs"}, secret); err != nil {
			t.Fatal(err)
		}
		for _, wh := range mwc.Webhooks {
			if wh.FailurePolicy == nil || *wh.FailurePolicy != admissionregistrationv1.Fail ||
				wh.SideEffects == nil || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone ||
				wh.ReinvocationPolicy == nil || *wh.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy ||
				len(wh.MatchConditions) == 0 {
				t.Errorf("webhook %s lost its promises: %+v", wh.Name, wh)
			}
			if string(wh.ClientConfig.CABundle) != string(secret.Data[certs.KeyBundle]) || len(wh.ClientConfig.CABundle) == 0 {
				t.Errorf("webhook %s caBundle is not the injector's bundle", wh.Name)
			}
		}
		resp, err := http.Get(inj.metrics)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, name := range []string{"mcp_oidc_injector_admissions_total", "mcp_oidc_injector_admission_duration_seconds"} {
			if !strings.Contains(string(body), name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
	})

	t.Run("annotated pod comes back injected", func(t *testing.T) {
		ns := newNamespace(t, nil)
		pod := annotatedPod(ns, nil)
		if err := env.client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		got := &corev1.Pod{}
		if err := env.client.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
			t.Fatal(err)
		}
		c, err := proxyContainer(got)
		if err != nil {
			t.Fatalf("stored pod: %v", err)
		}
		if c.Image != sidecarImage {
			t.Errorf("proxy image = %q, want %q", c.Image, sidecarImage)
		}
		if _, ok := got.Annotations[inject.AnnotationStatus]; !ok {
			t.Errorf("no %s annotation: %v", inject.AnnotationStatus, got.Annotations)
		}
		if n := counterValue(ns, webhook.ResultInjected); n != 1 {
			t.Errorf("injected admissions in %s = %v, want 1", ns, n)
		}
	})

	t.Run("pods without the annotation never reach the webhook", func(t *testing.T) {
		ns := newNamespace(t, nil)
		for _, ann := range []map[string]string{nil, {inject.AnnotationInject: "false"}, {"other": "x"}} {
			pod := plainPod(ns)
			pod.Annotations = ann
			if err := env.client.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}
			if len(pod.Spec.Containers) != 1 || len(pod.Spec.InitContainers) != 0 {
				t.Errorf("pod with annotations %v was changed: %+v", ann, pod.Spec)
			}
		}
		if n := admissions(ns); n != 0 {
			t.Errorf("the webhook was called %v times for pods that did not opt in", n)
		}
	})

	t.Run("invalid annotation refused with its fix", func(t *testing.T) {
		ns := newNamespace(t, nil)
		err := env.client.Create(ctx, annotatedPod(ns, map[string]string{inject.AnnotationPort: "nope"}))
		if err == nil {
			t.Fatal("pod with port \"nope\" was admitted")
		}
		for _, want := range []string{inject.AnnotationPort, "fix:", `"nope"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		// A typo in the opt-in value reaches the webhook and is refused.
		if err := env.client.Create(ctx, annotatedPod(ns, map[string]string{inject.AnnotationInject: "ture"})); err == nil ||
			!strings.Contains(err.Error(), inject.AnnotationInject) {
			t.Errorf("inject: ture: err = %v, want a denial naming %s", err, inject.AnnotationInject)
		}
		if n := counterValue(ns, webhook.ResultDenied); n != 2 {
			t.Errorf("denied admissions = %v, want 2", n)
		}
	})

	t.Run("no configuration source refused with its fix", func(t *testing.T) {
		ns := newNamespace(t, nil)
		pod := annotatedPod(ns, map[string]string{inject.AnnotationSecret: "mcp-secrets"})
		delete(pod.Annotations, inject.AnnotationConfig)
		err := env.client.Create(ctx, pod)
		if err == nil {
			t.Fatal("a pod without a ConfigMap was admitted by an injector without cluster defaults")
		}
		for _, want := range []string{inject.AnnotationConfig, "no configuration source", "fix:", "sidecar.defaults"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if n := counterValue(ns, webhook.ResultDenied); n != 1 {
			t.Errorf("denied admissions = %v, want 1", n)
		}
	})

	t.Run("restricted namespace refuses redirect with the rebind hint", func(t *testing.T) {
		ns := newNamespace(t, map[string]string{inject.PodSecurityEnforceLabel: "restricted"})
		err := env.client.Create(ctx, annotatedPod(ns, nil))
		if err == nil {
			t.Fatal("redirect admitted in a restricted namespace")
		}
		for _, want := range []string{inject.AnnotationMode, "rebind", "restricted"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		// Rebind is admitted there, and the API server's own Pod Security
		// admission accepts the injected sidecar as "restricted".
		pod := annotatedPod(ns, map[string]string{inject.AnnotationMode: "rebind", inject.AnnotationRebindEnv: "PORT"})
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
		if err := env.client.Create(ctx, pod); err != nil {
			t.Fatalf("rebind in a restricted namespace: %v", err)
		}
		if _, err := proxyContainer(pod); err != nil {
			t.Error(err)
		}
		// Rebind of a port below 1024: the sysctl that lets the non-root
		// proxy bind it passes the API server's Pod Security admission.
		low := pod.DeepCopy()
		low.ObjectMeta = annotatedPod(ns, map[string]string{inject.AnnotationMode: "rebind", inject.AnnotationRebindEnv: "PORT"}).ObjectMeta
		low.Spec.InitContainers = nil
		low.Spec.Volumes = nil
		low.Spec.Containers = low.Spec.Containers[len(low.Spec.Containers)-1:]
		low.Spec.Containers[0].Env = nil
		low.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}
		if err := env.client.Create(ctx, low); err != nil {
			t.Fatalf("rebind of port 80 in a restricted namespace: %v", err)
		}
		if sc := low.Spec.SecurityContext; sc == nil || len(sc.Sysctls) != 1 || sc.Sysctls[0].Value != "80" {
			t.Errorf("pod sysctls = %+v, want %s=80", sc, inject.UnprivilegedPortStartSysctl)
		}
	})

	t.Run("dryRun gets the patch and persists nothing", func(t *testing.T) {
		ns := newNamespace(t, nil)
		pod := annotatedPod(ns, nil)
		pod.GenerateName, pod.Name = "", "dry"
		if err := env.client.Create(ctx, pod, client.DryRunAll); err != nil {
			t.Fatal(err)
		}
		if _, err := proxyContainer(pod); err != nil {
			t.Errorf("dry-run result: %v", err)
		}
		err := env.client.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("dry-run pod persisted: get err = %v", err)
		}
	})

	t.Run("injector down: annotated pods refused, others created", func(t *testing.T) {
		ns := newNamespace(t, nil)
		inj.Stop(t)
		err := env.client.Create(ctx, annotatedPod(ns, nil))
		if err == nil {
			t.Fatal("annotated pod admitted while the injector is down")
		}
		if !strings.Contains(err.Error(), webhookName) {
			t.Errorf("error %q does not name the webhook %s", err, webhookName)
		}
		pod := plainPod(ns)
		if err := env.client.Create(ctx, pod); err != nil {
			t.Errorf("plain pod refused while the injector is down: %v", err)
		}
	})
}

func counterValue(ns, result string) float64 {
	return testutil.ToFloat64(env.metrics.Admissions(ns, result))
}

// TestCertificateRotation rotates the serving certificate and the CA within
// seconds while the API server keeps admitting pods through the webhook;
// not one admission may fail.
func TestCertificateRotation(t *testing.T) {
	const secret = "rotation-certs"
	startInjector(t, secret,
		"--cert-ca-lifetime=12s", "--cert-serving-lifetime=4500ms", "--cert-publish-grace=500ms",
		"--cert-resync=100ms", "--cert-watch-interval=100ms")
	ctx := context.Background()
	ns := newNamespace(t, nil)

	var (
		mu         sync.Mutex
		served     = map[string]bool{} // serving serials seen on the wire
		cas        = map[string]bool{} // CA serials seen in the Secret
		failures   []error
		ok         atomic.Int64
		caSwitched atomic.Bool
		firstCA    string
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	// The stream: a dry-run annotated pod every ~50ms.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pod := annotatedPod(ns, nil)
			err := env.client.Create(ctx, pod, client.DryRunAll)
			if err == nil {
				_, err = proxyContainer(pod)
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, err)
				mu.Unlock()
				continue
			}
			ok.Add(1)
		}
	}()

	addr := "127.0.0.1:" + strconv.Itoa(env.webhookPort)
	// Sample what is served and stored until the CA has switched and
	// several serving certificates were seen; the final checks below say
	// what was missing if that never happens.
	waitfor.Poll(25*time.Second, 100*time.Millisecond, func() bool {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the served serial only
		if err == nil {
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			mu.Lock()
			served[leaf.SerialNumber.String()] = true
			mu.Unlock()
		}
		s := &corev1.Secret{}
		if err := env.client.Get(ctx, types.NamespacedName{Namespace: injectorNamespace, Name: secret}, s); err == nil {
			if ca, err := certs.ParseCertificates(s.Data[certs.KeyCACert]); err == nil && len(ca) == 1 {
				serial := ca[0].SerialNumber.String()
				mu.Lock()
				if firstCA == "" {
					firstCA = serial
				}
				cas[serial] = true
				mu.Unlock()
				// Done once a serving certificate from the second CA is served.
				if serial != firstCA {
					if srv, err := certs.ParseCertificates(s.Data[certs.KeyServingCrt]); err == nil && len(srv) == 1 &&
						srv[0].CheckSignatureFrom(ca[0]) == nil {
						caSwitched.Store(true)
					}
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return caSwitched.Load() && len(served) >= 3
	})
	// A little more traffic on the new chain, then stop the stream.
	target := ok.Load() + 10
	waitfor.NoError(t, 5*time.Second, "admissions after the CA switch", func() error {
		if ok.Load() < target {
			return errors.New("not yet")
		}
		return nil
	})
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for _, err := range failures {
		t.Errorf("admission failed during rotation: %v", err)
	}
	if len(served) < 2 {
		t.Errorf("served serving certificates = %d, want a rotation", len(served))
	}
	if len(cas) < 2 || !caSwitched.Load() {
		t.Errorf("CAs seen = %d, switched to the new CA = %v; want a CA rotation", len(cas), caSwitched.Load())
	}
	t.Logf("admissions: %d ok, %d failed; serving certs served: %d; CAs: %d", ok.Load(), len(failures), len(served), len(cas))
}

func ptr[T any](v T) *T { return &v }

// TestReplicasConvergeOnOneSecret runs several certificate managers (as the
// replicas do) against one Secret at once: they must agree on one CA and one
// serving certificate and all write the same files.
func TestReplicasConvergeOnOneSecret(t *testing.T) {
	ctx := context.Background()
	const replicas = 3
	ms := make([]*certs.Manager, replicas)
	dirs := make([]string, replicas)
	for i := range ms {
		dirs[i] = t.TempDir()
		m, err := certs.New(env.client, certs.Config{Namespace: injectorNamespace, SecretName: "replicas-certs",
			WebhookConfigName: webhookConfigName, ServiceName: "mcp-oidc-injector", CertDir: dirs[i]})
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	errs := make(chan error, replicas)
	for _, m := range ms {
		go func() { errs <- m.Reconcile(ctx) }()
	}
	for range ms {
		if err := <-errs; err != nil {
			t.Errorf("reconcile: %v", err)
		}
	}
	st, err := ms[0].Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, dir := range dirs {
		got, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(st.Serving.CertPEM) {
			t.Errorf("replica %d serves a certificate that is not the Secret's", i)
		}
	}
}

// TestStaleReplicaKeepsTheNewCAInTheBundle: replica A reads the Secret, then
// replica B rotates the CA and publishes it before A writes the caBundle.
// A must not put back its stale bundle (which lacks the new CA that serving
// certificates are about to switch to); it adopts B's state instead.
func TestStaleReplicaKeepsTheNewCAInTheBundle(t *testing.T) {
	ctx := context.Background()
	const secret = "stale-replica-certs"
	lifetime := 24 * time.Hour
	newManager := func(c client.Client, now func() time.Time) *certs.Manager {
		m, err := certs.New(c, certs.Config{Namespace: injectorNamespace, SecretName: secret,
			WebhookConfigName: webhookConfigName, ServiceName: "mcp-oidc-injector", CertDir: t.TempDir(),
			CALifetime: lifetime, ServingLifetime: time.Hour, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// B lives late in the CA's life, so its first pass rotates the CA.
	b := newManager(env.client, func() time.Time { return time.Now().Add(lifetime * 9 / 10) })
	var armed atomic.Bool
	var bErr error
	base, err := client.NewWithWatch(env.cfg, client.Options{Scheme: env.client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	aClient := interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*admissionregistrationv1.MutatingWebhookConfiguration); ok && armed.CompareAndSwap(true, false) {
				bErr = b.Reconcile(ctx) // B rotates between A's Secret read and its caBundle write
			}
			return c.Get(ctx, key, obj, opts...)
		},
	})
	a := newManager(aClient, time.Now)
	if err := a.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := a.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}

	armed.Store(true)
	if err := a.Reconcile(ctx); err != nil {
		t.Fatalf("replica A: %v", err)
	}
	if bErr != nil {
		t.Fatalf("replica B: %v", bErr)
	}
	st, err := a.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.CA.Cert.Equal(first.CA.Cert) {
		t.Fatal("replica B did not rotate the CA; the test proves nothing")
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := env.client.Get(ctx, types.NamespacedName{Name: webhookConfigName}, mwc); err != nil {
		t.Fatal(err)
	}
	for _, wh := range mwc.Webhooks {
		bundle, err := certs.ParseCertificates(wh.ClientConfig.CABundle)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(bundle, st.CA.Cert.Equal) || !slices.ContainsFunc(bundle, first.CA.Cert.Equal) {
			t.Errorf("webhook %s caBundle has %d certificates; want both the new CA and the old one", wh.Name, len(bundle))
		}
	}
}

// TestNotReadyUntilTheCABundleIsPublished: an injector that cannot publish
// its caBundle (here: the configured webhook configuration does not exist)
// must not report ready, or the Deployment looks healthy while the API
// server rejects every call with "certificate signed by unknown authority";
// it becomes ready once it can publish.
func TestNotReadyUntilTheCABundleIsPublished(t *testing.T) {
	ctx := context.Background()
	const name = "readyz-missing-config"
	inj := launchInjector(t, env.cfg, name, "--webhook-config-name="+name)
	waitfor.NoError(t, 20*time.Second, "the webhook server started", func() error { return inj.probe("/readyz/webhook") })
	if err := inj.probe("/readyz"); err == nil {
		t.Fatal("/readyz is OK while the webhook configuration to publish the caBundle into does not exist")
	}
	if err := inj.probe("/readyz/ca-bundle"); err == nil {
		t.Fatal("/readyz/ca-bundle is OK while the webhook configuration does not exist")
	}

	// Create it with a selector no namespace matches, so it never takes
	// part in the other tests' admissions.
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := env.client.Get(ctx, types.NamespacedName{Name: webhookConfigName}, mwc); err != nil {
		t.Fatal(err)
	}
	mwc.ObjectMeta = metav1.ObjectMeta{Name: name}
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.CABundle = nil
		mwc.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{name: "never"}}
	}
	if err := env.client.Create(ctx, mwc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.client.Delete(context.Background(), mwc); err != nil {
			t.Error(err)
		}
	})
	waitfor.NoError(t, 20*time.Second, "ready after the caBundle is published", func() error { return inj.probe("/readyz") })
}
