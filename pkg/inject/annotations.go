// Package inject is the injector's pure mutation: given a pod, its
// namespace's labels and the cluster defaults, it returns the pod with the
// proxy sidecar added, the serving port taken over and the probes rewritten,
// or a denial that names the annotation and the fix. It has no Kubernetes
// client and no I/O, so every case is a golden-file test.
//
// The flow follows vault-k8s: parse the annotations into a request, validate
// it, then patch the pod; the status annotation makes it idempotent.
package inject

// Prefix is the annotation prefix users type.
const Prefix = "mcp-oidc-proxy.io/"

// Annotations users set on the pod template. Keep these names stable.
const (
	// AnnotationInject opts a pod in: "true".
	AnnotationInject = Prefix + "inject"
	// AnnotationStatus is written by the injector (never by users): it
	// records what was injected, making re-admission a no-op.
	AnnotationStatus = Prefix + "status"
	// AnnotationPort is the pod port to protect: a number or a container
	// port name. Default: the first container port of the first container.
	AnnotationPort = Prefix + "port"
	// AnnotationConfig names a ConfigMap in the pod's namespace whose
	// config.ConfigFileKey key is the sidecar's configuration file.
	AnnotationConfig = Prefix + "config"
	// AnnotationSecret names a Secret in the pod's namespace holding the
	// sidecar's secrets (keys listed in config.PodSecretKeys).
	AnnotationSecret = Prefix + "secret"
	// AnnotationMode is the port takeover mode: "redirect" or "rebind".
	AnnotationMode = Prefix + "mode"
	// AnnotationRebindEnv names the environment variable through which the
	// app learns the localhost port to listen on in rebind mode.
	AnnotationRebindEnv = Prefix + "rebind-port-env"
	// AnnotationRebindPort is the localhost port the app moves to in
	// rebind mode (default DefaultRebindAppPort).
	AnnotationRebindPort = Prefix + "rebind-app-port"
	// AnnotationNativeSidecar overrides the cluster default: "true" puts the
	// proxy in initContainers with restartPolicy Always, "false" first in
	// containers.
	AnnotationNativeSidecar = Prefix + "native-sidecar"
	// Resource overrides for the proxy container (Kubernetes quantities).
	AnnotationCPURequest    = Prefix + "proxy-cpu-request"
	AnnotationMemoryRequest = Prefix + "proxy-memory-request"
	AnnotationCPULimit      = Prefix + "proxy-cpu-limit"
	AnnotationMemoryLimit   = Prefix + "proxy-memory-limit"
	// AnnotationLogLevel overrides the proxy's log level.
	AnnotationLogLevel = Prefix + "log-level"
	// AnnotationDrainDelay overrides Settings.DrainDelay for the pod: how
	// long it keeps serving once told to stop ("5s", "10", "0" for none).
	AnnotationDrainDelay = Prefix + "drain-delay"
)

// Names of what the injector adds.
const (
	ProxyContainerName    = "mcp-oidc-proxy"
	RedirectContainerName = "mcp-oidc-proxy-init-redirect"
	ConfigVolumeName      = "mcp-oidc-proxy-config"
	// ProxyPort is where the proxy listens in redirect mode.
	ProxyPort = 15080
	// AdminPort serves health, metrics and the rewritten app probes.
	AdminPort = 15090
	// DefaultRebindAppPort is where the app listens in rebind mode.
	DefaultRebindAppPort = 15081
	// InjectorComponentLabel marks the injector's own pods, which are never
	// injected.
	InjectorComponentLabel = "app.kubernetes.io/name"
	InjectorComponentValue = "mcp-oidc-injector"
)
