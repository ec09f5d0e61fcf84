package inject

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
)

// plan is a validated request: everything patch needs, already resolved.
type plan struct {
	mode Mode
	// port is the protected pod port (P).
	port int32
	// appPort is where the app listens in rebind mode (Q).
	appPort int32
	// rebindEnv is the variable that tells the app Q; envTarget is the index
	// in Spec.Containers of the container that receives it.
	rebindEnv string
	envTarget int
	native    bool
	// unprivilegedPortStart, when set, is the value of the pod sysctl
	// UnprivilegedPortStartSysctl that lets the non-root proxy bind a
	// protected port below 1024 in rebind mode.
	unprivilegedPortStart *int32
	resources             corev1.ResourceRequirements
	logLevel              string
	// drainSeconds is the drain hook's duration for the app (and a classic
	// sidecar); 0 adds none.
	drainSeconds int64
	configMap    string
	secret       string
	// probes are the app's original network probes, keyed by their
	// rewritten path.
	probes probe.Set
}

// denials collects every problem so the user fixes them in one round.
type denials []error

func (d *denials) add(annotation, problem, fix string) {
	*d = append(*d, &Denial{Annotation: annotation, Problem: problem, Fix: fix})
}

func (d denials) err() error { return errors.Join(d...) }

// Pod Security levels that forbid NET_ADMIN.
const (
	levelBaseline   = "baseline"
	levelRestricted = "restricted"
)

// validate judges the request against the pod, the namespace and the cluster
// settings. It reports every problem, not just the first.
func (in *Injector) validate(r request, pod *corev1.Pod, ns Namespace) (plan, error) {
	s := in.s
	var d denials
	p := plan{appPort: DefaultRebindAppPort}

	if !strings.EqualFold(r.inject.v, "true") {
		d.add(AnnotationInject, fmt.Sprintf("value %q is neither \"true\" nor \"false\"", r.inject.v),
			`set it to "true" to protect the pod with the proxy, or to "false" to opt out`)
	}
	for _, k := range r.unknown {
		d.add(k, "is not an annotation the injector knows",
			"correct the spelling or remove it (known: "+strings.Join(knownAnnotations(), ", ")+")")
	}
	if len(pod.Spec.Containers) == 0 {
		d.add("", "the pod has no containers", "add the MCP server container")
	}
	checkReservedNames(&d, pod)

	mode, modeOK, explicit := resolveMode(&d, r, s)
	if r.rebindEnv.set {
		if msgs := validation.IsEnvVarName(r.rebindEnv.v); r.rebindEnv.v == "" || len(msgs) > 0 {
			d.add(AnnotationRebindEnv, fmt.Sprintf("%q is not a valid environment variable name (%s)", r.rebindEnv.v, strings.Join(msgs, "; ")),
				"set it to the variable your app reads its listen port from, e.g. PORT")
		}
	}
	if level := ns.Labels[PodSecurityEnforceLabel]; modeOK && mode == ModeRedirect && (level == levelBaseline || level == levelRestricted) {
		if !explicit && s.RebindWhenRestricted && r.rebindEnv.set {
			mode = ModeRebind
		} else {
			d.add(AnnotationMode, fmt.Sprintf("namespace %q enforces the Pod Security level %q, which forbids the NET_ADMIN capability that redirect mode needs", ns.Name, level),
				"set "+AnnotationMode+": rebind and "+AnnotationRebindEnv+": <the variable your app reads its listen port from>")
		}
	}
	p.mode = mode

	port, portContainer, portOK := resolvePort(&d, r.port, pod)
	p.port = port
	p.envTarget = max(portContainer, 0)
	checkPortUse(&d, pod, mode)

	if r.rebindAppPort.set {
		n, err := strconv.Atoi(r.rebindAppPort.v)
		if err != nil || n < 1 || n > 65535 {
			d.add(AnnotationRebindPort, fmt.Sprintf("%q is not a port number between 1 and 65535", r.rebindAppPort.v),
				fmt.Sprintf("set a free localhost port, or remove it to use %d", DefaultRebindAppPort))
		} else {
			p.appPort = int32(n)
		}
	}
	if modeOK && mode == ModeRebind {
		if !r.rebindEnv.set {
			d.add(AnnotationRebindEnv, "is required in rebind mode: the app must be told which localhost port to listen on",
				"set it to the variable your app reads its listen port from, e.g. PORT")
		}
		p.rebindEnv = r.rebindEnv.v
		switch {
		case portOK && p.appPort == p.port:
			d.add(AnnotationRebindPort, fmt.Sprintf("app port %d is the protected port, which the proxy binds in rebind mode", p.appPort),
				fmt.Sprintf("choose another port, or remove it to use %d", DefaultRebindAppPort))
		case p.appPort == ProxyPort || p.appPort == AdminPort:
			d.add(AnnotationRebindPort, fmt.Sprintf("app port %d is reserved for the proxy", p.appPort),
				fmt.Sprintf("choose another port, or remove it to use %d", DefaultRebindAppPort))
		}
	}

	if modeOK && mode == ModeRebind && portOK {
		p.unprivilegedPortStart = checkLowPort(&d, pod, p.port)
	}

	p.native = resolveNative(&d, r.nativeSidecar, s)
	p.resources = resolveResources(&d, r, s)

	if r.logLevel.set {
		lvl := strings.ToLower(r.logLevel.v)
		switch lvl {
		case "debug", "info", "warn", "error":
			p.logLevel = lvl
		default:
			d.add(AnnotationLogLevel, fmt.Sprintf("%q is not a log level", r.logLevel.v), "set it to debug, info, warn or error")
		}
	}
	p.drainSeconds = resolveDrainDelay(&d, r.drainDelay, s.DrainDelay, pod)
	p.configMap = objectName(&d, AnnotationConfig, "ConfigMap", r.config)
	p.secret = objectName(&d, AnnotationSecret, "Secret", r.secret)

	p.probes = collectProbes(&d, pod, mode, p.port, p.appPort)
	if !r.config.set {
		// A ConfigMap name, even an invalid one (denied above), is the
		// pod's configuration source.
		in.checkConfigSource(&d, p)
	}
	if len(d) > 0 {
		return plan{}, d.err()
	}
	return p, nil
}

// knownAnnotations lists the annotations users may set, for the fix of a
// misspelt one.
func knownAnnotations() []string {
	k := []string{AnnotationInject, AnnotationPort, AnnotationConfig, AnnotationSecret, AnnotationMode,
		AnnotationRebindEnv, AnnotationRebindPort, AnnotationNativeSidecar, AnnotationLogLevel, AnnotationDrainDelay}
	for _, ra := range resourceAnnotations() {
		k = append(k, ra.annotation)
	}
	sort.Strings(k)
	return k
}

// checkReservedNames refuses a pod that already uses the names of what the
// injector adds: patching it would duplicate or shadow them.
func checkReservedNames(d *denials, pod *corev1.Pod) {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == ProxyContainerName || c.Name == RedirectContainerName {
				d.add("", fmt.Sprintf("container name %q is reserved for the injected sidecar", c.Name), "rename the container")
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == ConfigVolumeName {
			d.add("", fmt.Sprintf("volume name %q is reserved for the injected sidecar", v.Name), "rename the volume")
		}
	}
}

// resolveMode returns the takeover mode, whether it is valid, and whether
// the pod chose it explicitly (an explicit redirect is never silently turned
// into rebind).
func resolveMode(d *denials, r request, s Settings) (Mode, bool, bool) {
	if r.mode.set {
		m := Mode(strings.ToLower(r.mode.v))
		if m == ModeRedirect || m == ModeRebind {
			return m, true, true
		}
		d.add(AnnotationMode, fmt.Sprintf("%q is not a port takeover mode", r.mode.v), `set it to "redirect" or "rebind"`)
		return "", false, true
	}
	switch s.DefaultMode {
	case "":
		return ModeRedirect, true, false
	case ModeRedirect, ModeRebind:
		return s.DefaultMode, true, false
	}
	d.add("", fmt.Sprintf("the injector's default mode %q is not a port takeover mode", s.DefaultMode),
		`set `+AnnotationMode+` on the pod, or fix the injector's default mode ("redirect" or "rebind")`)
	return "", false, false
}

// resolvePort finds the protected port and the index of the container that
// declares it (-1 when no container declares a numeric port).
func resolvePort(d *denials, v value, pod *corev1.Pod) (int32, int, bool) {
	const fix = "set " + AnnotationPort + " to the port number or port name the MCP server listens on"
	cs := pod.Spec.Containers
	if !v.set {
		if len(cs) == 0 || len(cs[0].Ports) == 0 {
			if len(cs) > 0 {
				d.add(AnnotationPort, fmt.Sprintf("is not set and container %q declares no ports", cs[0].Name), fix)
			}
			return 0, -1, false
		}
		cp := cs[0].Ports[0]
		if !checkProtocol(d, cs[0].Name, cp) || !checkNotReserved(d, cp.ContainerPort) {
			return 0, -1, false
		}
		return cp.ContainerPort, 0, true
	}
	if n, err := strconv.Atoi(v.v); err == nil {
		if n < 1 || n > 65535 {
			d.add(AnnotationPort, fmt.Sprintf("port %d is out of range 1-65535", n), fix)
			return 0, -1, false
		}
		if !checkNotReserved(d, int32(n)) {
			return 0, -1, false
		}
		for i, c := range cs {
			for _, cp := range c.Ports {
				if cp.ContainerPort == int32(n) && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
					return int32(n), i, true
				}
			}
		}
		// Apps do not always declare their ports; an undeclared number is
		// still a port the proxy can take over.
		return int32(n), -1, true
	}
	var names []string
	for i, c := range cs {
		for _, cp := range c.Ports {
			if cp.Name == "" {
				continue
			}
			if cp.Name == v.v {
				if !checkProtocol(d, c.Name, cp) || !checkNotReserved(d, cp.ContainerPort) {
					return 0, -1, false
				}
				return cp.ContainerPort, i, true
			}
			names = append(names, cp.Name)
		}
	}
	if msgs := validation.IsValidPortName(v.v); len(msgs) > 0 {
		d.add(AnnotationPort, fmt.Sprintf("%q is neither a port number nor a valid port name", v.v), fix)
		return 0, -1, false
	}
	declared := "no container declares a named port"
	if len(names) > 0 {
		declared = "declared names: " + strings.Join(names, ", ")
	}
	d.add(AnnotationPort, fmt.Sprintf("no container declares a port named %q (%s)", v.v, declared), fix)
	return 0, -1, false
}

func checkProtocol(d *denials, container string, cp corev1.ContainerPort) bool {
	if cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP {
		return true
	}
	d.add(AnnotationPort, fmt.Sprintf("port %d of container %q is %s; the proxy protects TCP ports only", cp.ContainerPort, container, cp.Protocol),
		"set "+AnnotationPort+" to the MCP server's TCP port")
	return false
}

func checkNotReserved(d *denials, port int32) bool {
	if port != ProxyPort && port != AdminPort {
		return true
	}
	d.add(AnnotationPort, fmt.Sprintf("port %d is reserved for the proxy (%d and %d)", port, ProxyPort, AdminPort),
		"move the MCP server to another port")
	return false
}

// checkPortUse refuses app containers that declare the ports the proxy
// listens on: both would fail to bind in the shared network namespace.
func checkPortUse(d *denials, pod *corev1.Pod, mode Mode) {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.ContainerPort == AdminPort || (mode == ModeRedirect && cp.ContainerPort == ProxyPort) {
					d.add("", fmt.Sprintf("container %q declares port %d, which the proxy listens on", c.Name, cp.ContainerPort),
						"move that container to another port")
				}
			}
		}
	}
}

// UnprivilegedPortStartSysctl is the namespaced, "safe" sysctl (allowed by
// every Pod Security level) below which binding a port needs a capability.
const UnprivilegedPortStartSysctl = "net.ipv4.ip_unprivileged_port_start"

// checkLowPort handles rebind of a port below 1024: the proxy runs as
// non-root with every capability dropped (and no_new_privs, so even file
// capabilities do not help), so it can bind the port only when the pod's
// ip_unprivileged_port_start is at most the port. It returns the value to
// set, or nil when nothing needs setting; a pod that already sets the sysctl
// higher is refused.
func checkLowPort(d *denials, pod *corev1.Pod, port int32) *int32 {
	if port >= 1024 {
		return nil
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		for _, sy := range sc.Sysctls {
			if sy.Name != UnprivilegedPortStartSysctl {
				continue
			}
			if n, err := strconv.Atoi(strings.TrimSpace(sy.Value)); err == nil && n <= int(port) {
				return nil
			}
			d.add(AnnotationMode, fmt.Sprintf("in rebind mode the non-root proxy binds port %d, but the pod sets the sysctl %s to %q, which keeps that port privileged", port, UnprivilegedPortStartSysctl, sy.Value),
				fmt.Sprintf("set the sysctl to %d or less, remove it, or use %s: redirect", port, AnnotationMode))
			return nil
		}
	}
	return ptr(port)
}

func resolveNative(d *denials, v value, s Settings) bool {
	if !v.set {
		return s.NativeSidecars
	}
	switch strings.ToLower(v.v) {
	case "true":
		if !s.NativeSidecars {
			d.add(AnnotationNativeSidecar, "is \"true\" but the API server does not support native sidecar containers (Kubernetes 1.29 or later)",
				`remove it or set it to "false"`)
		}
		return true
	case "false":
		return false
	}
	d.add(AnnotationNativeSidecar, fmt.Sprintf("%q is neither \"true\" nor \"false\"", v.v), `set it to "true" or "false", or remove it`)
	return s.NativeSidecars
}

// resolveResources applies the overrides to the cluster defaults and checks
// that no request exceeds its limit.
func resolveResources(d *denials, r request, s Settings) corev1.ResourceRequirements {
	res := *s.Resources.DeepCopy()
	for _, ra := range resourceAnnotations() {
		v, ok := r.resources[ra.annotation]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			d.add(ra.annotation, fmt.Sprintf("%q is not a non-negative Kubernetes quantity", v), `use a quantity such as "100m" for CPU or "128Mi" for memory`)
			continue
		}
		list := &res.Requests
		if ra.limit {
			list = &res.Limits
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[ra.name] = q
	}
	for _, pair := range []struct {
		name           corev1.ResourceName
		reqAnn, limAnn string
	}{
		{corev1.ResourceCPU, AnnotationCPURequest, AnnotationCPULimit},
		{corev1.ResourceMemory, AnnotationMemoryRequest, AnnotationMemoryLimit},
	} {
		req, okR := res.Requests[pair.name]
		lim, okL := res.Limits[pair.name]
		if !okR || !okL || req.Cmp(lim) <= 0 {
			continue
		}
		annotation := ""
		if _, ok := r.resources[pair.reqAnn]; ok {
			annotation = pair.reqAnn
		} else if _, ok := r.resources[pair.limAnn]; ok {
			annotation = pair.limAnn
		}
		d.add(annotation, fmt.Sprintf("the proxy's %s request %s exceeds its limit %s", pair.name, req.String(), lim.String()),
			fmt.Sprintf("lower %s or raise %s", pair.reqAnn, pair.limAnn))
	}
	return res
}

// objectName validates the name of a ConfigMap or Secret in the pod's
// namespace.
func objectName(d *denials, annotation, kind string, v value) string {
	if !v.set {
		return ""
	}
	if msgs := validation.IsDNS1123Subdomain(v.v); len(msgs) > 0 {
		d.add(annotation, fmt.Sprintf("%q is not a valid %s name (%s)", v.v, kind, strings.Join(msgs, "; ")),
			fmt.Sprintf("set it to the name of a %s in the pod's namespace", kind))
		return ""
	}
	return v.v
}

// defaultGracePeriod is the terminationGracePeriodSeconds of a pod that
// sets none.
const defaultGracePeriod = 30

// resolveDrainDelay returns the pod's drain delay in whole seconds
// (rounded up): the annotation ("5s", "10", "0"), else the cluster
// default. The delay counts against the pod's termination grace period, so
// an annotation that leaves no time for the app to stop is refused, and
// the cluster default never takes more than half of it.
func resolveDrainDelay(d *denials, v value, def time.Duration, pod *corev1.Pod) int64 {
	grace := int64(defaultGracePeriod)
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	if !v.set {
		return min(ceilSeconds(def), grace/2, config.DrainMaxSeconds)
	}
	delay, err := parseDelay(v.v)
	if err != nil || delay < 0 {
		d.add(AnnotationDrainDelay, fmt.Sprintf("%q is not a duration of zero or more", v.v),
			`set a duration such as "5s" or a number of seconds, or "0" for none`)
		return 0
	}
	secs := ceilSeconds(delay)
	if secs > config.DrainMaxSeconds {
		d.add(AnnotationDrainDelay, fmt.Sprintf("a drain delay of %ds is longer than the %ds the sidecar accepts", secs, config.DrainMaxSeconds),
			fmt.Sprintf("set at most %ds", config.DrainMaxSeconds))
		return 0
	}
	if secs > 0 && secs >= grace {
		d.add(AnnotationDrainDelay, fmt.Sprintf("a drain delay of %ds is not shorter than the pod's terminationGracePeriodSeconds (%d): the app would be killed before it could stop by itself", secs, grace),
			"lower the delay, or raise spec.terminationGracePeriodSeconds")
		return 0
	}
	return secs
}

// parseDelay reads a Go duration ("5s", "1m30s") or a whole number of
// seconds, as the hook itself is written ("5").
func parseDelay(v string) (time.Duration, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("%d seconds is out of range", n)
		}
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// ceilSeconds rounds a non-negative duration up to whole seconds (without
// the overflow of adding a second to the longest durations).
func ceilSeconds(d time.Duration) int64 {
	secs := int64(d / time.Second)
	if d%time.Second != 0 {
		secs++
	}
	return secs
}
