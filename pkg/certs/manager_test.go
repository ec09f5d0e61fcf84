package certs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

const testWebhookConfig = "injector"

func webhookConfig(webhooks ...string) *admissionregistrationv1.MutatingWebhookConfiguration {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: testWebhookConfig}}
	for _, name := range webhooks {
		cfg.Webhooks = append(cfg.Webhooks, admissionregistrationv1.MutatingWebhook{Name: name})
	}
	return cfg
}

// forbidWebhookUpdates is RBAC without update on the webhook configuration.
var forbidWebhookUpdates = interceptor.Funcs{
	Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		if _, ok := obj.(*admissionregistrationv1.MutatingWebhookConfiguration); ok {
			return apierrors.NewForbidden(schema.GroupResource{Group: "admissionregistration.k8s.io",
				Resource: "mutatingwebhookconfigurations"}, obj.GetName(), errors.New("RBAC"))
		}
		return c.Update(ctx, obj, opts...)
	},
}

func newTestManager(t *testing.T, funcs *interceptor.Funcs, objs ...client.Object) (*Manager, client.Client) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := admissionregistrationv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...)
	if funcs != nil {
		b = b.WithInterceptorFuncs(*funcs)
	}
	c := b.Build()
	m, err := New(c, Config{Namespace: "ns", SecretName: "certs", WebhookConfigName: testWebhookConfig,
		ServiceName: "svc", CertDir: t.TempDir(), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	return m, c
}

// TestPublishedChecker: the injector is ready only once the caBundle it
// published trusts the certificate it serves.
func TestPublishedChecker(t *testing.T) {
	tests := []struct {
		name      string
		objs      []client.Object
		funcs     *interceptor.Funcs
		wantReady bool
	}{
		{"published", []client.Object{webhookConfig("a", "b")}, nil, true},
		{"webhook configuration missing", nil, nil, false},
		{"webhook configuration without webhooks", []client.Object{webhookConfig()}, nil, false},
		{"update forbidden", []client.Object{webhookConfig("a")}, &forbidWebhookUpdates, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestManager(t, tc.funcs, tc.objs...)
			check := m.PublishedChecker()
			if err := check(nil); !errors.Is(err, errNotReconciled) {
				t.Fatalf("before the first reconcile: checker = %v, want %v", err, errNotReconciled)
			}
			recErr := m.Reconcile(context.Background())
			err := check(nil)
			if tc.wantReady {
				if recErr != nil || err != nil {
					t.Fatalf("Reconcile = %v, checker = %v; want both nil", recErr, err)
				}
				return
			}
			if recErr == nil {
				t.Fatal("Reconcile succeeded, want an error")
			}
			if !errors.Is(err, recErr) {
				t.Fatalf("checker = %v, want it to wrap %v", err, recErr)
			}
		})
	}
}

// TestPublishedCheckerFollowsTheLastReconcile: readiness is lost when the
// caBundle can no longer be published, and regained when it can again.
func TestPublishedCheckerFollowsTheLastReconcile(t *testing.T) {
	ctx := context.Background()
	m, c := newTestManager(t, nil, webhookConfig("a"))
	check := m.PublishedChecker()
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := check(nil); err != nil {
		t.Fatalf("after publishing: checker = %v", err)
	}
	if err := c.Delete(ctx, webhookConfig()); err != nil {
		t.Fatal(err)
	}
	// A failed pass right after a confirmed publish keeps readiness (an API
	// server blip must not empty the Service); a lasting failure loses it.
	if err := m.Reconcile(ctx); !apierrors.IsNotFound(err) {
		t.Fatalf("Reconcile without the webhook configuration = %v, want NotFound", err)
	}
	if err := check(nil); err != nil {
		t.Fatalf("within the grace period: checker = %v, want ready", err)
	}
	base := time.Now()
	m.cfg.Now = func() time.Time { return base.Add(m.cfg.ReadyGrace + time.Second) }
	if err := m.Reconcile(ctx); !apierrors.IsNotFound(err) {
		t.Fatalf("Reconcile without the webhook configuration = %v, want NotFound", err)
	}
	if err := check(nil); !apierrors.IsNotFound(err) {
		t.Fatalf("without the webhook configuration: checker = %v, want NotFound", err)
	}
	if err := c.Create(ctx, webhookConfig("a")); err != nil {
		t.Fatal(err)
	}
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := check(nil); err != nil {
		t.Fatalf("after publishing again: checker = %v", err)
	}
	got := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: testWebhookConfig}, got); err != nil {
		t.Fatal(err)
	}
	st, err := m.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := ParseCertificates(got.Webhooks[0].ClientConfig.CABundle)
	if err != nil || !signedBy(st.Serving.Cert, cas) {
		t.Fatalf("caBundle does not trust the serving certificate (parse error %v)", err)
	}
}
