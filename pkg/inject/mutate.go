package inject

import (
	"errors"
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

// ProxyBinary is the sidecar binary's path inside the image; the
// init-redirect container and the classic sidecar's postStart hook run it.
const ProxyBinary = "/mcp-oidc-proxy"

// Mutate returns pod protected by the proxy sidecar, or why it was left
// alone, or every reason it must be refused (a join of *Denial). The input is
// never modified: an injected pod is a deep copy, and a skipped or already
// injected pod is returned as given. Mutate is pure and deterministic so the
// webhook can compute a patch from it and tests can compare it to goldens.
func Mutate(pod *corev1.Pod, ns Namespace, s Settings) (Result, error) {
	if pod == nil {
		return Result{}, errors.New("inject: nil pod")
	}
	if ns.Name == "" {
		ns.Name = pod.Namespace
	}
	if reason := skipReason(pod, ns, s); reason != "" {
		return Result{Pod: pod, Skipped: reason}, nil
	}
	if alreadyInjected(pod) {
		return Result{Pod: pod, AlreadyInjected: true}, nil
	}
	req := parse(pod)
	p, err := validate(req, pod, ns, s)
	if err != nil {
		return Result{}, err
	}
	out, err := patch(pod, p, s)
	if err != nil {
		return Result{}, err
	}
	return Result{Pod: out}, nil
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

// alreadyInjected is true when a previous admission (or a reinvocation)
// injected the pod: the status annotation is there and so is the proxy.
func alreadyInjected(pod *corev1.Pod) bool {
	if _, ok := pod.Annotations[AnnotationStatus]; !ok {
		return false
	}
	return hasContainer(pod.Spec.Containers, ProxyContainerName) ||
		hasContainer(pod.Spec.InitContainers, ProxyContainerName)
}

func hasContainer(cs []corev1.Container, name string) bool {
	for i := range cs {
		if cs[i].Name == name {
			return true
		}
	}
	return false
}
