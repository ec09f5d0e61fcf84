package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Reasons Mutate gives in Result.Skipped. They are constants so that the
// webhook can use them as low-cardinality metric labels.
const (
	SkipNoAnnotation   = "no " + AnnotationInject + " annotation"
	SkipInjectFalse    = AnnotationInject + " is \"false\""
	SkipHostNetwork    = "hostNetwork pod: the proxy cannot take over a port of the node's network"
	SkipKubeSystem     = "namespace kube-system is never injected"
	SkipInjectorItself = "the injector's own pods are never injected"
)

// PodSecurityEnforceLabel is the namespace label whose value is the enforced
// Pod Security level; "baseline" and "restricted" forbid NET_ADMIN, which
// redirect mode needs.
const PodSecurityEnforceLabel = "pod-security.kubernetes.io/enforce"

// DefaultContainerAnnotation makes kubectl exec/logs pick the app, not the
// proxy that now comes first.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// Mutate returns pod protected by the proxy sidecar, or why it was left
// alone, or every reason it must be refused (a join of *Denial). The input is
// never modified: an injected pod is a deep copy, and a skipped or already
// injected pod is returned as given. Mutate is pure and deterministic so the
// webhook can compute a patch from it and tests can compare it to goldens.
// It works out what depends on s alone for this one call; the webhook keeps
// an Injector (New) so that this happens once, at start-up.
func Mutate(pod *corev1.Pod, ns Namespace, s Settings) (Result, error) {
	return New(s).Mutate(pod, ns)
}

// Mutate is the package's Mutate with the Injector's Settings.
func (in *Injector) Mutate(pod *corev1.Pod, ns Namespace) (Result, error) {
	if pod == nil {
		return Result{}, errors.New("inject: nil pod")
	}
	if ns.Name == "" {
		ns.Name = pod.Namespace
	}
	if reason := skipReason(pod, ns, in.s); reason != "" {
		return Result{Pod: pod, Skipped: reason}, nil
	}
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		// Re-admission (reinvocation, or the injected output applied
		// again) changes nothing, but only when everything the status
		// records is really there: a copied pod that kept the status but
		// lost init-redirect would otherwise be admitted with its port
		// open to the network.
		if err := checkInjected(pod); err != nil {
			return Result{}, err
		}
		return Result{Pod: pod, AlreadyInjected: true}, nil
	}
	req := parse(pod)
	p, err := in.validate(req, pod, ns)
	if err != nil {
		return Result{}, err
	}
	out, err := in.patch(pod, p)
	if err != nil {
		return Result{}, err
	}
	return Result{Pod: out}, nil
}

// Skip says why pod is not ours to inject, or "" when it is, from the pod and
// its namespace's name alone. The webhook asks it before looking up the
// namespace's labels, so a failing lookup can only ever refuse pods that
// asked for protection. Mutate applies the same check.
func Skip(pod *corev1.Pod, namespace string, s Settings) string {
	if pod == nil {
		return ""
	}
	if namespace == "" {
		namespace = pod.Namespace
	}
	return skipReason(pod, Namespace{Name: namespace}, s)
}

// skipReason says why pod is not ours to inject, or "" when it is. An inject
// value that is neither true nor false is not a skip: validate denies it,
// because a typo must not leave the pod unprotected.
func skipReason(pod *corev1.Pod, ns Namespace, s Settings) string {
	v, ok := pod.Annotations[AnnotationInject]
	switch {
	case !ok:
		return SkipNoAnnotation
	case pod.Labels[InjectorComponentLabel] == InjectorComponentValue,
		s.InjectorNamespace != "" && ns.Name == s.InjectorNamespace:
		return SkipInjectorItself
	case ns.Name == "kube-system":
		return SkipKubeSystem
	case pod.Spec.HostNetwork:
		return SkipHostNetwork
	case strings.EqualFold(strings.TrimSpace(v), "false"):
		return SkipInjectFalse
	}
	return ""
}

// checkInjected accepts a pod carrying the status annotation only when the
// status parses and every container and volume it lists is present, the
// proxy among them, and init-redirect too in redirect mode. Otherwise the
// pod is refused: injecting again would duplicate what is there, and
// admitting it could leave the port unprotected.
func checkInjected(pod *corev1.Pod) error {
	const fix = "remove " + AnnotationStatus + " and the containers and volumes it lists from the pod template, so that the injector injects the pod afresh"
	var st Status
	if err := json.Unmarshal([]byte(pod.Annotations[AnnotationStatus]), &st); err != nil {
		return &Denial{Annotation: AnnotationStatus, Problem: "is not the injector's status record (" + err.Error() + "); only the injector writes this annotation", Fix: fix}
	}
	var missing []string
	need := func(what, name string, present bool) {
		if !present {
			missing = append(missing, fmt.Sprintf("%s %q", what, name))
		}
	}
	need("container", ProxyContainerName, hasContainer(pod.Spec.Containers, ProxyContainerName) || hasContainer(pod.Spec.InitContainers, ProxyContainerName))
	if st.Mode != ModeRebind {
		need("init container", RedirectContainerName, hasContainer(pod.Spec.InitContainers, RedirectContainerName))
	}
	for _, name := range st.Containers {
		need("container", name, hasContainer(pod.Spec.Containers, name))
	}
	for _, name := range st.InitContainers {
		need("init container", name, hasContainer(pod.Spec.InitContainers, name))
	}
	for _, name := range st.Volumes {
		need("volume", name, slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name }))
	}
	missing = slices.Compact(missing)
	if len(missing) > 0 {
		return &Denial{Annotation: AnnotationStatus, Problem: "records an injection, but the pod lacks " + strings.Join(missing, ", ") + "; only the injector writes this annotation", Fix: fix}
	}
	return nil
}

func hasContainer(cs []corev1.Container, name string) bool {
	for i := range cs {
		if cs[i].Name == name {
			return true
		}
	}
	return false
}
