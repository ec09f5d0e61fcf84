package inject

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
)

// TestProbeHandOverEncodesLikeTheKubernetesTypes keeps pkg/probe's own
// handler types wire-compatible with k8s.io/api: converting a Kubernetes
// handler (port resolved, host cleared, as collectProbes hands it over)
// encodes to the same JSON as the Kubernetes handler itself, which is what
// injectors wrote before pkg/probe had its own types; and that JSON decodes
// back through pkg/probe unchanged.
func TestProbeHandOverEncodesLikeTheKubernetesTypes(t *testing.T) {
	svc, empty := "liveness", ""
	h2 := corev1.HTTPProtocolHTTP2
	tests := []struct {
		name string
		k8s  corev1.ProbeHandler // port numeric, no host
	}{
		{"http, everything set", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/healthz?x=1", Port: intstr.FromInt32(8080), Scheme: corev1.URISchemeHTTPS,
			HTTPHeaders: []corev1.HTTPHeader{{Name: "Host", Value: "app.example"}, {Name: "X-Empty", Value: ""}},
			Protocol:    &h2,
		}}},
		{"http, minimal", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(1)}}},
		{"tcp", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(65535)}}},
		{"grpc with a service", corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000, Service: &svc}}},
		{"grpc with the empty service", corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000, Service: &empty}}},
		{"grpc without a service", corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type k8sProbe struct {
				corev1.ProbeHandler `json:",inline"`
				TimeoutSeconds      int32 `json:"timeoutSeconds,omitempty"`
			}
			want, err := json.Marshal(map[string]k8sProbe{"/app-probes/c/liveness": {tt.k8s, 3}})
			if err != nil {
				t.Fatal(err)
			}
			conv := probe.Probe{TimeoutSeconds: 3}
			switch h := tt.k8s; {
			case h.HTTPGet != nil:
				conv.HTTPGet = httpGetOf(h.HTTPGet, h.HTTPGet.Port.IntVal)
			case h.TCPSocket != nil:
				conv.TCPSocket = &probe.TCPSocketAction{Port: probe.PortNumber(h.TCPSocket.Port.IntVal)}
			default:
				conv.GRPC = grpcOf(h.GRPC, h.GRPC.Port)
			}
			got, err := probe.Encode(probe.Set{"/app-probes/c/liveness": conv})
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("pkg/probe encodes\n%s\nthe Kubernetes types encode\n%s", got, want)
			}
			set, err := probe.Decode(string(want))
			if err != nil {
				t.Fatal(err)
			}
			again, err := probe.Encode(set)
			if err != nil || again != string(want) {
				t.Fatalf("Encode(Decode(k8s JSON)) = %s, %v; want %s", again, err, want)
			}
		})
	}
}

// TestProbePortDecodesLikeIntOrString decodes the port forms the Kubernetes
// IntOrString accepts.
func TestProbePortDecodesLikeIntOrString(t *testing.T) {
	tests := []struct {
		in      string
		want    probe.Port
		wantErr bool
	}{
		{`8080`, probe.PortNumber(8080), false},
		{`"http"`, probe.Port{Name: "http"}, false},
		{`"8080"`, probe.Port{Name: "8080"}, false},
		{`null`, probe.Port{}, false},
		{`1.5`, probe.Port{}, true},
		{`4294967296`, probe.Port{}, true},
		{`{}`, probe.Port{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var p probe.Port
			err := json.Unmarshal([]byte(tt.in), &p)
			var ios intstr.IntOrString
			k8sErr := json.Unmarshal([]byte(tt.in), &ios)
			if (err != nil) != tt.wantErr || (k8sErr != nil) != tt.wantErr {
				t.Fatalf("errors: pkg/probe %v, IntOrString %v; want error %v", err, k8sErr, tt.wantErr)
			}
			if err == nil && (p != tt.want || p.Number != ios.IntVal || p.Name != ios.StrVal) {
				t.Fatalf("decoded %+v, IntOrString %+v, want %+v", p, ios, tt.want)
			}
		})
	}
}
