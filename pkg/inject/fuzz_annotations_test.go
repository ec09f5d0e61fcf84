package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
)

// FuzzAnnotations throws arbitrary annotation names and values at Mutate,
// including the ones FuzzMutate leaves alone: the status annotation only the
// injector writes, unknown names under our prefix, memory and CPU limits and
// the port given by name. A pod that did not get the proxy is never
// admitted as already injected, a misspelt annotation is never ignored,
// every denial names an annotation, a problem and a fix, and every
// rewritten probe path is one the sidecar decodes and serves.
func FuzzAnnotations(f *testing.F) {
	f.Add("true", "http", "", "", "", "", "")
	f.Add("true", "8080", `{"mode":"rebind","containers":["mcp-oidc-proxy"]}`, "", "64Mi", "1Gi", "500m")
	f.Add("true", "http", `{}`, "prot", "", "", "")
	f.Add(" True ", "", "garbage", "", "-1", "1e100", "lots")
	f.Add("true", "http", "", "inject ", "64Mi", "32Mi", "")
	f.Add("false", "http", `{"mode":"redirect"}`, "x", "", "", "")
	f.Fuzz(func(t *testing.T, inject, port, status, unknown, memReq, memLimit, cpuLimit string) {
		ann := map[string]string{AnnotationInject: inject}
		for k, v := range map[string]string{
			AnnotationPort: port, AnnotationStatus: status, AnnotationMemoryRequest: memReq,
			AnnotationMemoryLimit: memLimit, AnnotationCPULimit: cpuLimit,
		} {
			if v != "" {
				ann[k] = v
			}
		}
		if unknown != "" {
			ann[Prefix+unknown] = "x"
		}
		pod := basePod(nil)
		pod.Annotations = ann
		pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}}
		res, err := Mutate(pod, Namespace{Name: "team-a"}, testSettings())
		if err != nil {
			for _, d := range denialsOf(t, err) {
				if d.Annotation == "" || d.Problem == "" || d.Fix == "" {
					t.Fatalf("denial without annotation, problem or fix: %+v", d)
				}
			}
			return
		}
		if res.Skipped != "" {
			if !strings.EqualFold(strings.TrimSpace(inject), "false") {
				t.Fatalf("inject=%q skipped: %s", inject, res.Skipped)
			}
			return
		}
		if res.AlreadyInjected {
			t.Fatalf("a pod without the proxy was admitted as already injected (status %q)", status)
		}
		if _, ok := ann[AnnotationStatus]; ok {
			t.Fatalf("status annotation %q was accepted on a pod without the proxy", status)
		}
		if _, ok := ann[Prefix+unknown]; unknown != "" && ok && !knownAnnotation(Prefix+unknown) {
			t.Fatalf("unknown annotation %q was ignored", Prefix+unknown)
		}
		proxy := findContainer(t, res.Pod, ProxyContainerName)
		env, n := envValue(proxy, probe.EnvVar)
		if n != 1 {
			t.Fatalf("%s set %d times", probe.EnvVar, n)
		}
		set, err := probe.Decode(env.Value)
		if err != nil {
			t.Fatalf("the sidecar cannot decode what the injector wrote: %v", err)
		}
		app := findContainer(t, res.Pod, "server")
		rp := app.ReadinessProbe
		if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Port.IntValue() != AdminPort {
			t.Fatalf("readiness probe not rewritten to the admin port: %+v", rp)
		}
		if _, ok := set[rp.HTTPGet.Path]; !ok || len(set) != 1 {
			t.Fatalf("rewritten probe path %q is not the one passed to the sidecar (%v)", rp.HTTPGet.Path, set)
		}
	})
}

func knownAnnotation(name string) bool {
	for _, k := range knownAnnotations() {
		if k == name {
			return true
		}
	}
	return false
}
