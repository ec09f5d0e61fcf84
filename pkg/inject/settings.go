package inject

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

// Mode is the port takeover mode.
type Mode string

const (
	// ModeRedirect installs an nftables redirect from an init container; the
	// app is unchanged. Needs NET_ADMIN for that init container.
	ModeRedirect Mode = "redirect"
	// ModeRebind moves the app to a localhost port (told through an
	// environment variable) and lets the proxy bind the pod port. No
	// privileges.
	ModeRebind Mode = "rebind"
)

// Settings are the cluster-wide defaults set at install time (injector flags
// / Helm values) plus facts about the API server.
type Settings struct {
	// Image is the sidecar image (also used for init-redirect).
	Image string
	// ImagePullPolicy of the injected containers.
	ImagePullPolicy corev1.PullPolicy
	// DefaultMode applies when the pod has no mode annotation.
	DefaultMode Mode
	// RebindWhenRestricted applies rebind instead of refusing when redirect
	// is impossible because the namespace enforces the baseline or restricted
	// Pod Security level (the pod must still name its rebind env variable).
	RebindWhenRestricted bool
	// NativeSidecars is true when the API server supports sidecar containers
	// (init containers with restartPolicy Always; Kubernetes >= 1.29).
	NativeSidecars bool
	// Resources are the proxy container's default requests and limits.
	Resources corev1.ResourceRequirements
	// DrainDelay is how long a pod keeps serving after its deletion began,
	// before its app (and a classic sidecar) is sent SIGTERM: the pod
	// leaves its Service's endpoints at once, but kube-proxy, ingresses
	// and load balancers stop sending it new connections only a moment
	// later, and an app that stops at once fails those (a rollout then
	// drops requests). It becomes a preStop hook on the sidecar's drain
	// endpoint (pkg/drain), which also moves clients off; zero adds none. A pod's
	// own preStop hook is left alone.
	DrainDelay time.Duration
	// ProxyDefaults is cluster-wide, non-secret sidecar configuration in the
	// sidecar's YAML format. It reaches the sidecar through the
	// config.ClusterDefaultsEnv variable and ranks below the pod's own
	// ConfigMap, environment and flags. A pod without a ConfigMap
	// (AnnotationConfig) is admitted only when these defaults, with what the
	// pod's Secret can add, give the sidecar a valid configuration.
	ProxyDefaults string
	// InjectorNamespace is where the injector runs; its pods are skipped.
	InjectorNamespace string
	// RedisSecret is a Secret the platform already has (from its Redis
	// chart or operator) holding the Redis URL or password for every
	// sidecar. Pods read Secrets of their own namespace only, so it is
	// referenced by name in each pod's namespace.
	RedisSecret RedisSecret
}

// RedisSecret names a Secret and its keys for the sidecar's Redis URL
// (REDIS_URL) and password (REDIS_PASSWORD). A key it names replaces the
// same setting from the pod's own Secret (mcp-oidc-proxy.io/secret), so one
// Redis serves the cluster; the reference is not optional, so a namespace
// without the Secret gets CreateContainerConfigError naming it rather than
// a sidecar that starts without Redis credentials.
type RedisSecret struct {
	Name        string
	URLKey      string
	PasswordKey string
}

// keys maps the environment variable of each sidecar setting the
// RedisSecret supplies to the RedisSecret's own key; the pod Secret's key for
// the same setting is then not referenced, so no variable is set twice.
func (r RedisSecret) keys() map[string]string {
	if r.Name == "" {
		return nil
	}
	keys := map[string]string{}
	if r.URLKey != "" {
		keys[config.FieldOf(func(c *config.Config) any { return &c.Redis.URL }).EnvName()] = r.URLKey
	}
	if r.PasswordKey != "" {
		keys[config.FieldOf(func(c *config.Config) any { return &c.Redis.Password }).EnvName()] = r.PasswordKey
	}
	return keys
}

// Namespace is what the mutation needs to know about the pod's namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Result is the outcome of Mutate.
type Result struct {
	// Pod is the mutated pod (a deep copy), or the input when Skipped.
	Pod *corev1.Pod
	// Skipped says why the pod was left untouched ("" when injected or
	// already injected).
	Skipped string
	// AlreadyInjected is true when the status annotation showed a previous
	// injection and nothing was changed.
	AlreadyInjected bool
}

// Denial is a refusal that names the annotation and the fix. Mutate returns
// every denial at once, joined with errors.Join.
type Denial struct {
	Annotation string
	Problem    string
	Fix        string
}

func (d *Denial) Error() string {
	var b strings.Builder
	if d.Annotation != "" {
		fmt.Fprintf(&b, "annotation %s: ", d.Annotation)
	}
	b.WriteString(d.Problem)
	if d.Fix != "" {
		b.WriteString("; fix: ")
		b.WriteString(d.Fix)
	}
	return b.String()
}
