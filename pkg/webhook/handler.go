// Package webhook is the admission handler around inject.Mutate: it decodes
// the pod, looks up its namespace's labels, and turns the mutation's outcome
// into an admission response (a JSON patch, an allow, a denial or an error).
// With failurePolicy Fail, every error here refuses the pod: an annotated pod
// is never admitted without its sidecar.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
)

// Path is where the API server sends pod admissions.
const Path = "/mutate-v1-pod"

// Results used as the "result" metric label and log field.
const (
	ResultInjected        = "injected"
	ResultSkipped         = "skipped"
	ResultAlreadyInjected = "already_injected"
	ResultDenied          = "denied"
	ResultError           = "error"
)

// NamespaceGetter returns a namespace's labels. Production passes the
// manager's cached client (with a live fallback); tests pass anything.
type NamespaceGetter interface {
	GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error)
}

// MutateFunc is (*inject.Injector).Mutate's signature; the handler takes it
// as a value so that error branches the real mutation cannot produce can be
// tested.
type MutateFunc func(pod *corev1.Pod, ns inject.Namespace) (inject.Result, error)

// Observer records the outcome of each admission (metrics).
type Observer interface {
	Observe(namespace, result string, d time.Duration)
}

// Handler admits pods through an inject.Injector.
type Handler struct {
	decoder    admission.Decoder
	namespaces NamespaceGetter
	settings   inject.Settings
	mutate     MutateFunc
	observer   Observer
	log        logr.Logger
	now        func() time.Time
}

var _ admission.Handler = (*Handler)(nil)

// Options configure a Handler. Mutate defaults to an inject.Injector for
// Settings, made once here so that no admission repeats the work that
// depends on the Settings alone; Observer defaults to none, Now to time.Now.
type Options struct {
	Decoder    admission.Decoder
	Namespaces NamespaceGetter
	Settings   inject.Settings
	Mutate     MutateFunc
	Observer   Observer
	Log        logr.Logger
	Now        func() time.Time
}

// NewHandler returns a handler; Decoder and Namespaces are required.
func NewHandler(o Options) (*Handler, error) {
	if o.Decoder == nil {
		return nil, errors.New("webhook: a decoder is required")
	}
	if o.Namespaces == nil {
		return nil, errors.New("webhook: a namespace getter is required")
	}
	if o.Mutate == nil {
		o.Mutate = inject.New(o.Settings).Mutate
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{
		decoder: o.Decoder, namespaces: o.Namespaces, settings: o.Settings,
		mutate: o.Mutate, observer: o.Observer, log: o.Log, now: o.Now,
	}, nil
}

// Handle answers one admission review. dryRun admissions get the same patch:
// the mutation has no side effects.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := h.now()
	resp, result, pod := h.handle(ctx, req)
	if h.observer != nil {
		h.observer.Observe(req.Namespace, result, h.now().Sub(start))
	}
	// Only names and the outcome are logged: never env values or the spec.
	log := h.log.WithValues("namespace", req.Namespace, "pod", podName(req, pod),
		"uid", string(req.UID), "result", result, "dryRun", req.DryRun != nil && *req.DryRun)
	switch result {
	case ResultError:
		log.Error(errors.New(resp.Result.Message), "admission failed")
	case ResultDenied:
		log.Info("admission denied", "reason", resp.Result.Message)
	default:
		log.V(1).Info("admission")
	}
	return resp
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, string, *corev1.Pod) {
	pod := &corev1.Pod{}
	if err := h.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest,
			fmt.Errorf("mcp-oidc-injector: decoding the pod: %w", err)), ResultError, nil
	}
	// On CREATE the object often has no namespace yet; the request has it.
	nsName := req.Namespace
	if nsName == "" {
		nsName = pod.Namespace
	}
	// Pods that are not ours are allowed before the namespace lookup: when
	// the API server does not evaluate matchConditions, every pod reaches
	// this handler, and a lookup failure must not refuse pods that never
	// asked for protection.
	if reason := inject.Skip(pod, nsName, h.settings); reason != "" {
		return admission.Allowed(reason), ResultSkipped, pod
	}
	ns, err := h.namespaces.GetNamespace(ctx, nsName)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError,
			fmt.Errorf("mcp-oidc-injector: looking up namespace %q: %w", nsName, err)), ResultError, pod
	}
	res, err := h.mutate(pod, inject.Namespace{Name: nsName, Labels: ns.Labels})
	if err != nil {
		var d *inject.Denial
		if errors.As(err, &d) {
			return admission.Denied("mcp-oidc-proxy injection refused: " + err.Error()), ResultDenied, pod
		}
		return admission.Errored(http.StatusInternalServerError,
			fmt.Errorf("mcp-oidc-injector: mutating the pod: %w", err)), ResultError, pod
	}
	switch {
	case res.Skipped != "":
		return admission.Allowed(res.Skipped), ResultSkipped, pod
	case res.AlreadyInjected:
		return admission.Allowed("already injected"), ResultAlreadyInjected, pod
	case res.Pod == nil:
		return admission.Errored(http.StatusInternalServerError,
			errors.New("mcp-oidc-injector: the mutation returned no pod")), ResultError, pod
	}
	mutated, err := json.Marshal(res.Pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError,
			fmt.Errorf("mcp-oidc-injector: encoding the mutated pod: %w", err)), ResultError, pod
	}
	resp := admission.PatchResponseFromRaw(req.Object.Raw, mutated)
	if !resp.Allowed {
		return resp, ResultError, pod
	}
	return resp, ResultInjected, pod
}

// podName is the pod's name, or its generateName on CREATE before the API
// server has picked one.
func podName(req admission.Request, pod *corev1.Pod) string {
	switch {
	case req.Name != "":
		return req.Name
	case pod == nil:
		return ""
	case pod.Name != "":
		return pod.Name
	case pod.GenerateName != "":
		return pod.GenerateName + "*"
	}
	return ""
}
