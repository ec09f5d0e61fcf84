package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
)

// benchDefaults are cluster-wide sidecar defaults as an operator would give
// them in the chart's sidecar.defaults: enough for a pod without a ConfigMap.
const benchDefaults = `oidc:
  discovery_url: https://login.example.com
  client_id: mcp-proxy
  scopes: [openid, profile, email]
session:
  store: redis
redis:
  url: redis://redis.mcp-system.svc:6379/0
log_level: info
`

// benchPod is an MCP server pod as a Deployment would create it: two
// containers, probes, env, resources and a volume.
func benchPod(ann map[string]string) *corev1.Pod {
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromString("http")}}, PeriodSeconds: 10}
	}
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "mcp-server-7d9f8b6c5-", Namespace: "apps",
			Labels:      map[string]string{"app.kubernetes.io/name": "mcp-server", "pod-template-hash": "7d9f8b6c5"},
			Annotations: ann},
		Spec: corev1.PodSpec{
			ServiceAccountName: "mcp-server",
			Containers: []corev1.Container{{
				Name: "app", Image: "example.com/mcp-server:1.4.2",
				Args:  []string{"--listen=:8080", "--log-format=json"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
				Env: []corev1.EnvVar{{Name: "GOMAXPROCS", Value: "1"}, {Name: "MCP_TOOLS", Value: "search,fetch,summarise"},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				Resources:      res,
				ReadinessProbe: probe("/readyz"), LivenessProbe: probe("/healthz"),
				VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}},
			}, {
				Name: "log-shipper", Image: "example.com/shipper:2", Resources: res,
			}},
			Volumes: []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// benchReview is the AdmissionReview the API server POSTs for pod.
func benchReview(b *testing.B, pod *corev1.Pod) []byte {
	b.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	dry := true
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "bench", Namespace: "apps", Operation: admissionv1.Create, DryRun: &dry,
			Kind:     metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Object:   runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// benchWebhook is the handler as app.Run serves it: the real decoder,
// metrics and a JSON zap logger at info level, wrapped in
// admission.Webhook.
func benchWebhook(b *testing.B, s inject.Settings) http.Handler {
	b.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	log := crzap.New(crzap.WriteTo(io.Discard), crzap.UseDevMode(false))
	// admission.Webhook logs through controller-runtime's logger, which
	// app.Main sets to the same logger.
	logf.SetLogger(log)
	h, err := NewHandler(Options{
		Decoder:    admission.NewDecoder(scheme),
		Namespaces: namespaces{"apps": {"kubernetes.io/metadata.name": "apps"}},
		Settings:   s,
		Observer:   m,
		Log:        log,
	})
	if err != nil {
		b.Fatal(err)
	}
	recoverPanic := true
	return &admission.Webhook{Handler: h, RecoverPanic: &recoverPanic}
}

// BenchmarkAdmission is one AdmissionReview for an annotated pod through
// the webhook's HTTP handler: JSON in, decoding, the namespace lookup, the
// mutation, the JSON patch and the encoded answer out. It checks every
// answer is allowed with a patch. The cases: the pod names its ConfigMap
// (as make bench's pod), or it relies on the cluster defaults (the
// configuration-source check runs), or it is refused.
func BenchmarkAdmission(b *testing.B) {
	withDefaults := settings()
	withDefaults.ProxyDefaults = benchDefaults
	cases := []struct {
		name    string
		ann     map[string]string
		s       inject.Settings
		allowed bool
	}{
		{"configmap", map[string]string{inject.AnnotationInject: "true", inject.AnnotationConfig: "mcp-config", inject.AnnotationSecret: "mcp-secret"}, settings(), true},
		{"cluster-defaults", map[string]string{inject.AnnotationInject: "true", inject.AnnotationSecret: "mcp-secret"}, withDefaults, true},
		{"rebind-defaults", map[string]string{inject.AnnotationInject: "true", inject.AnnotationSecret: "mcp-secret",
			inject.AnnotationMode: "rebind", inject.AnnotationRebindEnv: "PORT", inject.AnnotationLogLevel: "debug"}, withDefaults, true},
		{"denied", map[string]string{inject.AnnotationInject: "true", inject.AnnotationPort: "nope"}, withDefaults, false},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			h := benchWebhook(b, tc.s)
			body := benchReview(b, benchPod(tc.ann))
			w := httptest.NewRecorder()
			check := func() {
				var out admissionv1.AdmissionReview
				if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
					b.Fatalf("answer %d: %v", w.Code, err)
				}
				if out.Response == nil || out.Response.Allowed != tc.allowed || (len(out.Response.Patch) > 0) != tc.allowed {
					b.Fatalf("answer: %s, want allowed=%v with a patch when allowed", w.Body.Bytes(), tc.allowed)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				w.Body.Reset()
				r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, Path, bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				h.ServeHTTP(w, r)
			}
			check()
		})
	}
}
