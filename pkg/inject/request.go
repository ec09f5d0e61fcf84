package inject

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// value is one annotation as the user wrote it.
type value struct {
	v   string
	set bool
}

// request is the pod's annotations, read but not yet judged: parse never
// fails, validate turns it into a plan or a list of denials.
type request struct {
	inject        value
	port          value
	config        value
	secret        value
	mode          value
	rebindEnv     value
	rebindAppPort value
	nativeSidecar value
	logLevel      value
	drainDelay    value
	// resources maps each resource annotation that is set to its value.
	resources map[string]string
	// unknown lists annotations with our prefix that we do not know, sorted:
	// a typo such as "mcp-oidc-proxy.io/prot" must not silently protect the
	// wrong port.
	unknown []string
}

// resourceAnnotation ties a resource override annotation to where it lands
// in the proxy's ResourceRequirements.
type resourceAnnotation struct {
	annotation string
	name       corev1.ResourceName
	limit      bool
}

// resourceAnnotations lists the overrides in the order they are validated.
func resourceAnnotations() []resourceAnnotation {
	return []resourceAnnotation{
		{AnnotationCPURequest, corev1.ResourceCPU, false},
		{AnnotationMemoryRequest, corev1.ResourceMemory, false},
		{AnnotationCPULimit, corev1.ResourceCPU, true},
		{AnnotationMemoryLimit, corev1.ResourceMemory, true},
	}
}

// parse reads the pod's mcp-oidc-proxy.io/ annotations into a request.
func parse(pod *corev1.Pod) request {
	a := pod.Annotations
	get := func(k string) value {
		v, ok := a[k]
		return value{v: strings.TrimSpace(v), set: ok}
	}
	r := request{
		inject:        get(AnnotationInject),
		port:          get(AnnotationPort),
		config:        get(AnnotationConfig),
		secret:        get(AnnotationSecret),
		mode:          get(AnnotationMode),
		rebindEnv:     get(AnnotationRebindEnv),
		rebindAppPort: get(AnnotationRebindPort),
		nativeSidecar: get(AnnotationNativeSidecar),
		logLevel:      get(AnnotationLogLevel),
		drainDelay:    get(AnnotationDrainDelay),
		resources:     map[string]string{},
	}
	known := map[string]bool{
		AnnotationInject: true, AnnotationStatus: true, AnnotationPort: true,
		AnnotationConfig: true, AnnotationSecret: true, AnnotationMode: true,
		AnnotationRebindEnv: true, AnnotationRebindPort: true,
		AnnotationNativeSidecar: true, AnnotationLogLevel: true, AnnotationDrainDelay: true,
	}
	for _, ra := range resourceAnnotations() {
		known[ra.annotation] = true
		if v, ok := a[ra.annotation]; ok {
			r.resources[ra.annotation] = strings.TrimSpace(v)
		}
	}
	for k := range a {
		if strings.HasPrefix(k, Prefix) && !known[k] {
			r.unknown = append(r.unknown, k)
		}
	}
	sort.Strings(r.unknown)
	return r
}
