package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
)

// namespaces is a NamespaceGetter over a map; a missing name is an error.
type namespaces map[string]map[string]string

func (n namespaces) GetNamespace(_ context.Context, name string) (*corev1.Namespace, error) {
	labels, ok := n[name]
	if !ok {
		return nil, errors.New("namespace not found")
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, nil
}

func settings() inject.Settings {
	// The cluster defaults name the OIDC provider, so pods without a
	// ConfigMap have a configuration source.
	return inject.Settings{Image: "example.com/proxy:1", ImagePullPolicy: corev1.PullIfNotPresent,
		DefaultMode: inject.ModeRedirect, NativeSidecars: true,
		ProxyDefaults: "oidc:\n  discovery_url: https://login.example.com\n  client_id: mcp-proxy\n"}
}

func pod(ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "mcp-", Annotations: ann},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}
}

func request(t *testing.T, ns string, p *corev1.Pod, raw []byte) admission.Request {
	t.Helper()
	if p != nil {
		var err error
		if raw, err = json.Marshal(p); err != nil {
			t.Fatal(err)
		}
	}
	dry := true
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-1", Namespace: ns, Operation: admissionv1.Create, DryRun: &dry,
		Kind:   metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Object: runtime.RawExtension{Raw: raw},
	}}
}

func newTestHandler(t *testing.T, mutate MutateFunc) (*Handler, *Metrics) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Options{
		Decoder:    admission.NewDecoder(scheme),
		Namespaces: namespaces{"apps": nil, "locked": {inject.PodSecurityEnforceLabel: "restricted"}},
		Settings:   settings(),
		Mutate:     mutate,
		Observer:   m,
		Log:        logr.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, m
}

func TestHandle(t *testing.T) {
	injected, err := inject.Mutate(pod(map[string]string{inject.AnnotationInject: "true"}), inject.Namespace{Name: "apps"}, settings())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		ns          string
		pod         *corev1.Pod
		raw         []byte
		mutate      MutateFunc
		wantAllowed bool
		wantPatch   bool
		wantCode    int32
		wantMsg     []string
		wantResult  string
	}{
		{name: "annotated pod is patched", ns: "apps", pod: pod(map[string]string{inject.AnnotationInject: "true"}),
			wantAllowed: true, wantPatch: true, wantResult: ResultInjected},
		{name: "plain pod allowed untouched", ns: "apps", pod: pod(nil),
			wantAllowed: true, wantResult: ResultSkipped},
		{name: "already injected allowed untouched", ns: "apps", pod: injected.Pod,
			wantAllowed: true, wantResult: ResultAlreadyInjected},
		{name: "invalid annotation denied with every reason", ns: "apps",
			pod:     pod(map[string]string{inject.AnnotationInject: "true", inject.AnnotationPort: "nope", inject.AnnotationLogLevel: "loud"}),
			wantMsg: []string{inject.AnnotationPort, inject.AnnotationLogLevel, "fix:"}, wantCode: http.StatusForbidden, wantResult: ResultDenied},
		{name: "redirect in a restricted namespace denied with the rebind hint", ns: "locked",
			pod:     pod(map[string]string{inject.AnnotationInject: "true"}),
			wantMsg: []string{inject.AnnotationMode, "rebind"}, wantCode: http.StatusForbidden, wantResult: ResultDenied},
		{name: "undecodable object is an error", ns: "apps", raw: []byte("{not json"),
			wantMsg: []string{"decoding the pod"}, wantCode: http.StatusBadRequest, wantResult: ResultError},
		{name: "namespace lookup failure is an error", ns: "gone", pod: pod(map[string]string{inject.AnnotationInject: "true"}),
			wantMsg: []string{`namespace "gone"`}, wantCode: http.StatusInternalServerError, wantResult: ResultError},
		{name: "plain pod allowed when the namespace lookup fails", ns: "gone", pod: pod(nil),
			wantAllowed: true, wantResult: ResultSkipped},
		{name: "opted-out pod allowed when the namespace lookup fails", ns: "gone", pod: pod(map[string]string{inject.AnnotationInject: "false"}),
			wantAllowed: true, wantResult: ResultSkipped},
		{name: "mutation failure that is not a denial is an error", ns: "apps", pod: pod(map[string]string{inject.AnnotationInject: "true"}),
			mutate: func(*corev1.Pod, inject.Namespace) (inject.Result, error) {
				return inject.Result{}, errors.New("boom")
			},
			wantMsg: []string{"mutating the pod", "boom"}, wantCode: http.StatusInternalServerError, wantResult: ResultError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, m := newTestHandler(t, tc.mutate)
			resp := h.Handle(context.Background(), request(t, tc.ns, tc.pod, tc.raw))
			if resp.Allowed != tc.wantAllowed {
				t.Errorf("allowed = %v, want %v (%+v)", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if got := len(resp.Patches) > 0; got != tc.wantPatch {
				t.Errorf("patched = %v, want %v", got, tc.wantPatch)
			}
			if !tc.wantAllowed {
				if resp.Result == nil || resp.Result.Code != tc.wantCode {
					t.Errorf("result = %+v, want code %d", resp.Result, tc.wantCode)
				}
				for _, want := range tc.wantMsg {
					if resp.Result == nil || !strings.Contains(resp.Result.Message, want) {
						t.Errorf("message lacks %q: %+v", want, resp.Result)
					}
				}
			}
			if n := testutil.ToFloat64(m.Admissions(tc.ns, tc.wantResult)); n != 1 {
				t.Errorf("admissions{%s,%s} = %v, want 1", tc.ns, tc.wantResult, n)
			}
		})
	}
}

// TestPatchTouchesOnlyTheInjection checks that the patch adds the sidecar and
// the status annotation and leaves the pod's identity alone.
func TestPatchTouchesOnlyTheInjection(t *testing.T) {
	h, _ := newTestHandler(t, nil)
	resp := h.Handle(context.Background(), request(t, "apps", pod(map[string]string{inject.AnnotationInject: "true"}), nil))
	var sawContainers, sawStatus bool
	for _, op := range resp.Patches {
		switch {
		case strings.HasPrefix(op.Path, "/spec/initContainers") || strings.HasPrefix(op.Path, "/spec/containers"):
			sawContainers = true
		case strings.HasPrefix(op.Path, "/metadata/annotations"):
			sawStatus = true
		case strings.HasPrefix(op.Path, "/metadata/namespace"), strings.HasPrefix(op.Path, "/metadata/name"):
			t.Errorf("patch touches %s", op.Path)
		}
	}
	if !sawContainers || !sawStatus {
		t.Errorf("patch lacks containers (%v) or annotations (%v): %+v", sawContainers, sawStatus, resp.Patches)
	}
}

func TestNewHandlerRequiresDependencies(t *testing.T) {
	if _, err := NewHandler(Options{}); err == nil {
		t.Error("NewHandler without decoder accepted")
	}
	if _, err := NewHandler(Options{Decoder: admission.NewDecoder(runtime.NewScheme())}); err == nil {
		t.Error("NewHandler without namespaces accepted")
	}
}

func TestMetricsReRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	a.Observe("ns", ResultInjected, time.Millisecond)
	if n := testutil.ToFloat64(b.Admissions("ns", ResultInjected)); n != 1 {
		t.Errorf("re-registered metrics do not share series: %v", n)
	}
}
