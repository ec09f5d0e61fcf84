package inject

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
)

// StatusVersion is the format version of the status annotation.
const StatusVersion = 1

// proxyStartTimeout bounds how long the classic sidecar's postStart hook
// holds the app back waiting for the proxy (the native sidecar's startup
// probe allows the same: 120 periods of 1s).
const proxyStartTimeout = 120 * time.Second

// ProxyUID is the non-root user (and group) the proxy runs as.
const ProxyUID = 65532

// Status is the JSON value of AnnotationStatus: what the injector added, so
// that re-admission is a no-op and an operator can see (or undo) it.
type Status struct {
	Version int    `json:"version"`
	Mode    Mode   `json:"mode"`
	Port    int32  `json:"port"`
	AppPort int32  `json:"appPort,omitempty"`
	Native  bool   `json:"nativeSidecar"`
	Image   string `json:"image,omitempty"`
	// RebindEnv records the variable set on the app in rebind mode and the
	// definition it replaced, if any.
	RebindEnv      *RebindEnvStatus `json:"rebindEnv,omitempty"`
	Containers     []string         `json:"containers"`
	InitContainers []string         `json:"initContainers"`
	Volumes        []string         `json:"volumes"`
	// Sysctls lists the pod sysctls the injector added (rebind of a port
	// below 1024).
	Sysctls []string `json:"sysctls,omitempty"`
	// Probes are the rewritten probe paths.
	Probes []string `json:"probes,omitempty"`
	// DrainDelaySeconds is the drain preStop hook (pkg/drain) added to the containers in
	// PreStop (the app serving the protected port, unless it had a
	// preStop hook of its own, and a classic sidecar).
	DrainDelaySeconds int64    `json:"drainDelaySeconds,omitempty"`
	PreStop           []string `json:"preStop,omitempty"`
}

// RebindEnvStatus is the app variable rebind mode set.
type RebindEnvStatus struct {
	Container string         `json:"container"`
	Name      string         `json:"name"`
	Replaced  *corev1.EnvVar `json:"replaced,omitempty"`
}

// patch applies a validated plan to a deep copy of pod.
func (in *Injector) patch(pod *corev1.Pod, p plan) (*corev1.Pod, error) {
	s := in.s
	out := pod.DeepCopy()
	app := out.Spec.Containers[0].Name
	st := Status{Version: StatusVersion, Mode: p.mode, Port: p.port, Native: p.native, Image: s.Image,
		Containers: []string{}, InitContainers: []string{}, Volumes: []string{}}

	for i := range out.Spec.Containers {
		rewriteProbes(&out.Spec.Containers[i])
	}
	for path := range p.probes {
		st.Probes = append(st.Probes, path)
	}
	sort.Strings(st.Probes)

	if p.mode == ModeRebind {
		st.AppPort = p.appPort
		c := &out.Spec.Containers[p.envTarget]
		st.RebindEnv = &RebindEnvStatus{Container: c.Name, Name: p.rebindEnv,
			Replaced: setEnv(c, p.rebindEnv, strconv.Itoa(int(p.appPort)))}
	}
	if p.drainSeconds > 0 {
		if c := &out.Spec.Containers[p.envTarget]; addDrainDelay(c, p.drainSeconds) {
			st.DrainDelaySeconds = p.drainSeconds
			st.PreStop = append(st.PreStop, c.Name)
		}
	}
	if p.unprivilegedPortStart != nil {
		// The proxy binds the pod's privileged port itself.
		if out.Spec.SecurityContext == nil {
			out.Spec.SecurityContext = &corev1.PodSecurityContext{}
		}
		out.Spec.SecurityContext.Sysctls = append(out.Spec.SecurityContext.Sysctls, corev1.Sysctl{
			Name: UnprivilegedPortStartSysctl, Value: strconv.Itoa(int(*p.unprivilegedPortStart)),
		})
		st.Sysctls = append(st.Sysctls, UnprivilegedPortStartSysctl)
	}
	if p.configMap != "" {
		out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{
			Name: ConfigVolumeName,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: p.configMap},
				Items:                []corev1.KeyToPath{{Key: config.ConfigFileKey, Path: config.ConfigFileKey}},
			}},
		})
		st.Volumes = append(st.Volumes, ConfigVolumeName)
	}

	proxy, err := in.proxyContainer(p)
	if err != nil {
		return nil, err
	}
	var inits []corev1.Container
	if p.mode == ModeRedirect {
		inits = append(inits, redirectContainer(p, s))
		st.InitContainers = append(st.InitContainers, RedirectContainerName)
	}
	if p.native {
		inits = append(inits, proxy)
		st.InitContainers = append(st.InitContainers, ProxyContainerName)
	} else {
		// A classic sidecar is sent SIGTERM with the app: it keeps
		// serving for the same delay. (A native one is stopped only
		// after the app has exited.)
		if p.drainSeconds > 0 && addDrainDelay(&proxy, p.drainSeconds) {
			st.DrainDelaySeconds = p.drainSeconds
			st.PreStop = append(st.PreStop, ProxyContainerName)
		}
		out.Spec.Containers = append([]corev1.Container{proxy}, out.Spec.Containers...)
		st.Containers = append(st.Containers, ProxyContainerName)
	}
	if len(inits) > 0 {
		out.Spec.InitContainers = append(inits, out.Spec.InitContainers...)
	}

	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", AnnotationStatus, err)
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationStatus] = string(b)
	if _, ok := out.Annotations[DefaultContainerAnnotation]; !ok {
		out.Annotations[DefaultContainerAnnotation] = app
	}
	return out, nil
}

// addDrainDelay gives c a preStop hook that calls the sidecar's drain
// endpoint for secs seconds (pkg/drain): the kubelet sends c SIGTERM only
// when it returns, and meanwhile the sidecar moves client connections to
// pods that stay. An HTTP hook needs nothing in the app's image and works
// on every Kubernetes version. A container with a preStop hook of its own
// keeps it (the app's own way of draining).
func addDrainDelay(c *corev1.Container, secs int64) bool {
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		return false
	}
	if c.Lifecycle == nil {
		c.Lifecycle = &corev1.Lifecycle{}
	}
	c.Lifecycle.PreStop = &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: config.DrainHookPath(secs), Port: intstr.FromInt32(AdminPort), Scheme: corev1.URISchemeHTTP,
	}}
	return true
}

// setEnv sets name=val on c, replacing every existing definition in place
// (so $(VAR) references keep their order) or appending one. It returns the
// first definition it replaced.
func setEnv(c *corev1.Container, name, val string) *corev1.EnvVar {
	var replaced *corev1.EnvVar
	found := false
	for i := range c.Env {
		if c.Env[i].Name != name {
			continue
		}
		if !found {
			replaced = c.Env[i].DeepCopy()
		}
		found = true
		c.Env[i] = corev1.EnvVar{Name: name, Value: val}
	}
	if !found {
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: val})
	}
	return replaced
}

// adminProbe is an HTTP GET on the sidecar's admin port.
func adminProbe(path string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(AdminPort), Scheme: corev1.URISchemeHTTP,
		}},
		TimeoutSeconds:   1,
		PeriodSeconds:    period,
		SuccessThreshold: 1,
		FailureThreshold: failures,
	}
}

// restrictedSecurityContext passes the "restricted" Pod Security Standard.
func restrictedSecurityContext() *corev1.SecurityContext {
	uid := int64(ProxyUID)
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr(true),
		RunAsUser:                &uid,
		RunAsGroup:               ptr(uid),
		AllowPrivilegeEscalation: ptr(false),
		ReadOnlyRootFilesystem:   ptr(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// proxyArgs are the proxy's flags: where it listens, the app it protects
// and where the other replicas reach it (its own listener on the pod IP,
// which the sidecar fills in from the downward API) to forward the MCP
// sessions it owns.
func (f *sidecarFields) proxyArgs(p plan) []string {
	listen, upstream := ProxyPort, p.port
	if p.mode == ModeRebind {
		listen, upstream = int(p.port), p.appPort
	}
	return []string{
		f.listen.Arg(fmt.Sprintf(":%d", listen)),
		f.adminListen.Arg(fmt.Sprintf(":%d", AdminPort)),
		f.upstream.Arg(fmt.Sprintf("http://127.0.0.1:%d", upstream)),
		f.advertise.Arg(fmt.Sprintf(":%d", listen)),
	}
}

func (in *Injector) proxyContainer(p plan) (corev1.Container, error) {
	s := in.s
	c := corev1.Container{
		Name:                     ProxyContainerName,
		Image:                    s.Image,
		ImagePullPolicy:          s.ImagePullPolicy,
		Command:                  []string{config.BinaryPath},
		Args:                     in.f.proxyArgs(p),
		Ports:                    []corev1.ContainerPort{{Name: "mcp-oidc-admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP}},
		Resources:                p.resources,
		ReadinessProbe:           adminProbe(config.ReadyPath, 5, 3),
		LivenessProbe:            adminProbe(config.HealthPath, 10, 3),
		SecurityContext:          restrictedSecurityContext(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if p.mode == ModeRedirect {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: "mcp-oidc-proxy", ContainerPort: ProxyPort, Protocol: corev1.ProtocolTCP})
	}
	if p.native {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
		// The kubelet starts the next init container, and then the app,
		// only once this probe passes.
		c.StartupProbe = adminProbe(config.HealthPath, 1, 120)
	} else {
		// The kubelet starts the next container only after postStart
		// returns, so the app comes up behind a running proxy.
		c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: append([]string{config.BinaryPath}, config.WaitArgs(fmt.Sprintf("http://127.0.0.1:%d%s", AdminPort, config.HealthPath), proxyStartTimeout)...),
		}}}
	}

	// The downward-API variables come first: the kubelet expands $(VAR) in
	// later values only (the cluster defaults' allowed hosts use them).
	downward := []corev1.EnvVar{
		{Name: config.PodNameEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		{Name: config.PodNamespaceEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}},
		{Name: config.PodIPEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
	}
	env := []corev1.EnvVar{
		// The container's memory limit in bytes (the node's allocatable
		// memory when it has none): the sidecar gives the Go runtime 90% of
		// it as its soft limit, so garbage is collected before it counts
		// against the container (pkg/memlimit).
		{Name: in.f.memoryLimit.EnvName(), ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			ContainerName: ProxyContainerName, Resource: "limits.memory", Divisor: resource.MustParse("1"),
		}}},
	}
	if p.logLevel != "" {
		env = append(env, corev1.EnvVar{Name: in.f.logLevel.EnvName(), Value: p.logLevel})
	}
	if len(p.probes) > 0 {
		v, err := probe.Encode(p.probes)
		if err != nil {
			return corev1.Container{}, fmt.Errorf("injecting %s: %w", probe.EnvVar, err)
		}
		env = append(env, corev1.EnvVar{Name: probe.EnvVar, Value: v})
	}
	if in.defaultsErr != nil {
		return corev1.Container{}, in.defaultsErr
	}
	env = append(env, corev1.EnvVar{Name: config.ClusterDefaultsEnv, Value: in.defaults})
	if p.configMap != "" {
		env = append(env, corev1.EnvVar{Name: config.ConfigFileEnv, Value: config.PodConfigFile})
		c.VolumeMounts = []corev1.VolumeMount{{Name: ConfigVolumeName, MountPath: config.PodConfigDir, ReadOnly: true}}
	}
	redisKeys := in.f.redisKeys
	if p.secret != "" {
		for _, k := range in.f.podSecretKeys {
			if _, replaced := redisKeys[k.Setting.EnvName()]; replaced {
				continue
			}
			env = append(env, corev1.EnvVar{Name: k.Setting.EnvName(), ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: p.secret},
				Key:                  k.Key,
				Optional:             ptr(true),
			}}})
		}
	}
	for name, clusterKey := range redisKeys {
		env = append(env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: s.RedisSecret.Name},
			Key:                  clusterKey,
		}}})
	}
	sort.Slice(env, func(i, j int) bool { return env[i].Name < env[j].Name })
	c.Env = append(downward, env...)
	return c, nil
}

// redirectContainer installs the nftables redirect of the protected port to
// the proxy and exits. It is the only injected container with privileges:
// root and NET_ADMIN/NET_RAW, nothing else.
func redirectContainer(p plan, s Settings) corev1.Container {
	return corev1.Container{
		Name:            RedirectContainerName,
		Image:           s.Image,
		ImagePullPolicy: s.ImagePullPolicy,
		Command:         []string{config.BinaryPath},
		Args:            config.InitRedirectArgs(int(p.port), ProxyPort),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities: &corev1.Capabilities{
				Drop: []corev1.Capability{"ALL"},
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
			},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func ptr[T any](v T) *T { return &v }
