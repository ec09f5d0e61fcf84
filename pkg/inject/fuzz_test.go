package inject

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"

	corev1 "k8s.io/api/core/v1"
)

// FuzzMutate throws arbitrary annotation values at Mutate. It must never
// panic, never admit an opted-in pod without the proxy, and its output must
// be a fixed point.
func FuzzMutate(f *testing.F) {
	f.Add("true", "http", "redirect", "", "", "", "", "", "", false, false)
	f.Add("TRUE", "8080", "rebind", "PORT", "9999", "true", "100m", "debug", "cfg", true, true)
	f.Add("yes", "70000", "x", "1BAD", "-1", "maybe", "lots", "loud", "Bad_Name", false, true)
	f.Add("true", "15090", "rebind", "PORT", "8080", "false", "2", "info", "", true, false)
	f.Add("false", "", "", "", "", "", "", "", "", false, false)
	f.Fuzz(func(t *testing.T, inject, port, mode, env, appPort, native, cpu, level, cfg string, nativeOK, restricted bool) {
		ann := map[string]string{
			AnnotationInject: inject, AnnotationPort: port, AnnotationMode: mode,
			AnnotationRebindEnv: env, AnnotationRebindPort: appPort, AnnotationNativeSidecar: native,
			AnnotationCPURequest: cpu, AnnotationLogLevel: level, AnnotationConfig: cfg, AnnotationSecret: cfg,
		}
		for k, v := range ann {
			if v == "" {
				delete(ann, k)
			}
		}
		pod := basePod(nil)
		pod.Annotations = ann
		pod.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/h", Port: intstr.FromString("http")}}}
		s := testSettings()
		s.NativeSidecars = nativeOK
		s.RebindWhenRestricted = true
		ns := Namespace{Name: "team-a"}
		if restricted {
			ns.Labels = map[string]string{PodSecurityEnforceLabel: "restricted"}
		}
		before := pod.DeepCopy()
		res, err := Mutate(pod, ns, s)
		if !equality.Semantic.DeepEqual(before, pod) {
			t.Fatal("input modified")
		}
		if err != nil {
			if res.Pod != nil {
				t.Fatal("denial with a pod")
			}
			denialsOf(t, err)
			return
		}
		if res.Skipped != "" {
			return
		}
		if !hasContainer(res.Pod.Spec.Containers, ProxyContainerName) && !hasContainer(res.Pod.Spec.InitContainers, ProxyContainerName) {
			t.Fatal("admitted without the proxy")
		}
		again, err := Mutate(res.Pod, ns, s)
		if err != nil || !again.AlreadyInjected || !equality.Semantic.DeepEqual(again.Pod, res.Pod) {
			t.Fatalf("output is not a fixed point: %v %+v", err, again)
		}
	})
}
