// Package contract checks the contract between the injector and the
// sidecar: every golden injected pod (pkg/inject/testdata/*.injected.yaml,
// regenerated with `go test ./pkg/inject -update`) is resolved the way the
// kubelet would resolve it, with the ConfigMap and Secret in testdata, and
// handed to the sidecar's own code: its configuration loader (the one its
// main runs, flags + environment + file), its subcommands' flag parsing and
// its probe hand-over. A name the injector writes and the sidecar does not
// read fails here, before any cluster sees it.
package contract

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	proxyapp "github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-proxy/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/memlimit"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probereplay"
)

// goldens is where pkg/inject keeps its injected pods.
const goldens = "../../pkg/inject/testdata"

// podIP is the address the fixture kubelet gives every pod (the test
// cluster's pod range).
const podIP = "198.18.0.10"

// fixtures are the objects the injected pods reference.
type fixtures struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func loadFixtures(t *testing.T) fixtures {
	t.Helper()
	f := fixtures{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	var cm corev1.ConfigMap
	readYAML(t, "testdata/configmap.yaml", &cm)
	f.configMaps[cm.Namespace+"/"+cm.Name] = &cm
	files, err := filepath.Glob("testdata/secret*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Secret fixtures in testdata: %v", err)
	}
	for _, file := range files {
		var s corev1.Secret
		readYAML(t, file, &s)
		// The API server folds stringData into data.
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		f.secrets[s.Namespace+"/"+s.Name] = &s
	}
	return f
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func injectedPods(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(goldens, "*.injected.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("only %d golden injected pods in %s", len(files), goldens)
	}
	return files
}

// TestInjectedPodsLoadInTheSidecar is the contract: every injected sidecar,
// resolved by a kubelet, starts with a valid configuration, and every
// command line and probe the injector wrote is one the sidecar accepts.
func TestInjectedPodsLoadInTheSidecar(t *testing.T) {
	fx := loadFixtures(t)
	for _, file := range injectedPods(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".injected.yaml"), func(t *testing.T) {
			var pod corev1.Pod
			readYAML(t, file, &pod)
			checkInjectedPod(t, &pod, fx)
		})
	}
}

// TestTheSampleLoadsInTheSidecar injects the shipped sample
// (config/samples/mcp-server.yaml) and loads it with its own ConfigMap and
// Secret: what users copy works.
func TestTheSampleLoadsInTheSidecar(t *testing.T) {
	b, err := os.ReadFile("../../config/samples/mcp-server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const ns = "team-a"
	fx := fixtures{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	var template *corev1.PodTemplateSpec
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict([]byte(doc), &cm); err != nil {
				t.Fatal(err)
			}
			fx.configMaps[ns+"/"+cm.Name] = &cm
		case "Secret":
			var s corev1.Secret
			if err := yaml.UnmarshalStrict([]byte(doc), &s); err != nil {
				t.Fatal(err)
			}
			s.Data = map[string][]byte{}
			for k, v := range s.StringData {
				s.Data[k] = []byte(v)
			}
			fx.secrets[ns+"/"+s.Name] = &s
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			template = &d.Spec.Template
		}
	}
	if template == nil || len(fx.configMaps) == 0 || len(fx.secrets) == 0 {
		t.Fatal("the sample lacks its Deployment, ConfigMap or Secret")
	}
	for _, native := range []bool{true, false} {
		t.Run(fmt.Sprintf("native=%v", native), func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: template.ObjectMeta, Spec: template.Spec}
			pod.Namespace, pod.GenerateName = ns, "mcp-server-"
			res, err := inject.Mutate(pod, inject.Namespace{Name: ns}, inject.Settings{
				Image: "ghcr.io/mcp-oidc-proxy/mcp-oidc-proxy:test", NativeSidecars: native,
			})
			if err != nil || res.Pod == nil || res.Skipped != "" {
				t.Fatalf("the sample is not injected: %v %q", err, res.Skipped)
			}
			checkInjectedPod(t, res.Pod, fx)
		})
	}
}

// checkInjectedPod resolves the injected pod's sidecar as a kubelet would
// and hands it to the sidecar's own code.
func checkInjectedPod(t *testing.T, pod *corev1.Pod, fx fixtures) {
	t.Helper()
	var st inject.Status
	if err := yamlJSON(pod.Annotations[inject.AnnotationStatus], &st); err != nil {
		t.Fatalf("status annotation: %v", err)
	}
	proxy := container(t, pod, inject.ProxyContainerName)
	k := newKubelet(t, pod, fx)

	env := k.env(proxy)
	files := k.mount(proxy)
	args := k.command(proxy, env)
	if args[0] != config.BinaryPath {
		t.Fatalf("the proxy runs %q, not the image's binary %s", args[0], config.BinaryPath)
	}
	src := config.Source{Args: args[1:], Env: environ(env), ReadFile: files.read}
	loaded, err := config.LoadValidated(src)
	if err != nil {
		t.Fatalf("the sidecar refuses its configuration:\n%v\nargs %q\nenv %q", err, args, names(env))
	}
	cfg := loaded.Config
	// The Go runtime's soft limit follows the container's memory limit
	// (pods injected before the injector passed it have none).
	wantLimit := nodeAllocatableMemory
	if l, ok := proxy.Resources.Limits[corev1.ResourceMemory]; ok {
		wantLimit = l
	}
	passed := slices.ContainsFunc(env, func(e envVar) bool { return e.name == "MCP_OIDC_PROXY_MEMORY_LIMIT" })
	if got, err := memlimit.Parse(cfg.MemoryLimit); passed && (err != nil || got != wantLimit.Value()) {
		t.Errorf("the sidecar's memory_limit is %q (%v), want the container's limit %s", cfg.MemoryLimit, err, wantLimit.String())
	}
	if hasVolumeMount(proxy) && loaded.File != config.PodConfigFile {
		t.Errorf("the sidecar read config file %q, want the mounted ConfigMap's %s", loaded.File, config.PodConfigFile)
	}
	if !hasVolumeMount(proxy) && loaded.File != "" {
		t.Errorf("the sidecar reads config file %q, but no ConfigMap is mounted", loaded.File)
	}
	if ok, _ := proxyapp.CheckSubcommand(args[1:]); ok {
		t.Errorf("the proxy's arguments %q start with a subcommand", args[1:])
	}

	// The wiring: the proxy listens where the traffic arrives and
	// forwards to where the app listens.
	listen, admin, upstream := port(t, cfg.Listen), port(t, cfg.AdminListen), urlPort(t, cfg.Upstream)
	switch st.Mode {
	case inject.ModeRedirect:
		redirect := container(t, pod, inject.RedirectContainerName)
		rargs := k.command(redirect, k.env(redirect))
		checkSubcommand(t, "init-redirect", rargs)
		if to := flagValue(t, rargs[2:], config.FlagRedirectTo); to != listen {
			t.Errorf("init-redirect sends traffic to port %d, the proxy listens on %d", to, listen)
		}
		if p := flagValue(t, rargs[2:], config.FlagRedirectPort); p != int(st.Port) || upstream != int(st.Port) {
			t.Errorf("init-redirect takes over port %d, the proxy forwards to %d, the protected port is %d", p, upstream, st.Port)
		}
	case inject.ModeRebind:
		if listen != int(st.Port) || upstream != int(st.AppPort) {
			t.Errorf("rebind: the proxy listens on %d and forwards to %d, want %d and %d", listen, upstream, st.Port, st.AppPort)
		}
	default:
		t.Fatalf("status mode %q", st.Mode)
	}

	// The classic sidecar's postStart hook.
	if proxy.Lifecycle != nil && proxy.Lifecycle.PostStart != nil {
		hook := proxy.Lifecycle.PostStart.Exec
		if hook == nil {
			t.Fatal("postStart is not an exec hook")
		}
		wargs := expandAll(hook.Command, env)
		checkSubcommand(t, "postStart", wargs)
		u, err := url.Parse(flagString(t, wargs[2:], config.FlagWaitURL))
		if err != nil || u.Path != config.HealthPath || urlPort(t, u.String()) != admin {
			t.Errorf("postStart waits for %q, want the admin port %d at %s", u, admin, config.HealthPath)
		}
	}

	// The preStop hooks the status records call the sidecar's drain
	// endpoint on its admin port for the recorded delay, one the sidecar
	// accepts; no other container got one from the injector.
	if (len(st.PreStop) > 0) != (st.DrainDelaySeconds > 0) {
		t.Errorf("status: preStop %v with a drain delay of %ds", st.PreStop, st.DrainDelaySeconds)
	}
	for _, name := range st.PreStop {
		c := container(t, pod, name)
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.HTTPGet == nil {
			t.Errorf("container %s: the status records a preStop hook, the pod has %+v", name, c.Lifecycle)
			continue
		}
		h := c.Lifecycle.PreStop.HTTPGet
		u, err := url.Parse(h.Path)
		secs, serr := strconv.Atoi(u.Query().Get("seconds"))
		if err != nil || h.Port.IntValue() != admin || u.Path != config.DrainPath || serr != nil ||
			int64(secs) != st.DrainDelaySeconds || secs < 1 || secs > config.DrainMaxSeconds {
			t.Errorf("container %s: preStop GET %s on port %s; want the admin port %d at %s for %ds (1..%d)",
				name, h.Path, h.Port.String(), admin, config.DrainPath, st.DrainDelaySeconds, config.DrainMaxSeconds)
		}
	}

	// The proxy's own probes reach its admin endpoints.
	for kind, pr := range map[string]*corev1.Probe{"liveness": proxy.LivenessProbe, "readiness": proxy.ReadinessProbe, "startup": proxy.StartupProbe} {
		if pr == nil {
			continue
		}
		if pr.HTTPGet == nil || pr.HTTPGet.Port.IntValue() != admin || !slices.Contains([]string{config.HealthPath, config.ReadyPath}, pr.HTTPGet.Path) {
			t.Errorf("the proxy's %s probe %+v does not reach its admin port %d", kind, pr.ProbeHandler, admin)
		}
	}

	// The app's rewritten probes are served by the sidecar's
	// replay from the hand-over it reads.
	set, err := proxyapp.AppProbes(environ(env))
	if err != nil {
		t.Fatalf("the sidecar refuses the probe hand-over: %v", err)
	}
	replay := probereplay.NewReplayer(set, probereplay.Options{})
	rewritten := 0
	for _, c := range pod.Spec.Containers {
		if c.Name == inject.ProxyContainerName {
			continue
		}
		for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if pr == nil || pr.HTTPGet == nil || !strings.HasPrefix(pr.HTTPGet.Path, probe.PathPrefix) {
				continue
			}
			rewritten++
			if pr.HTTPGet.Port.IntValue() != admin {
				t.Errorf("container %s: probe %s goes to port %s, the sidecar's admin port is %d", c.Name, pr.HTTPGet.Path, pr.HTTPGet.Port.String(), admin)
			}
			if code := get(replay, pr.HTTPGet.Path); code == http.StatusNotFound {
				t.Errorf("container %s: the sidecar serves no probe at %s (hand-over %v)", c.Name, pr.HTTPGet.Path, set)
			}
		}
	}
	if rewritten != len(set) {
		t.Errorf("%d probes rewritten, %d handed over", rewritten, len(set))
	}
}

// TestTheInjectedBinaryIsTheImageEntrypoint: the path the injector runs is
// the one the sidecar image puts its binary at.
func TestTheInjectedBinaryIsTheImageEntrypoint(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile.sidecar")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("ENTRYPOINT [%q]", config.BinaryPath)
	if !strings.Contains(string(b), want) {
		t.Errorf("Dockerfile.sidecar has no %s", want)
	}
}

// kubelet resolves a pod's containers as the kubelet does, from the
// fixtures.
type kubelet struct {
	t      *testing.T
	pod    *corev1.Pod
	fx     fixtures
	fields map[string]string
}

func newKubelet(t *testing.T, pod *corev1.Pod, fx fixtures) *kubelet {
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "x7k2q"
	}
	return &kubelet{t: t, pod: pod, fx: fx, fields: map[string]string{
		"metadata.name": name, "metadata.namespace": pod.Namespace, "status.podIP": podIP,
	}}
}

// envVar is one resolved variable, in the container's order.
type envVar struct{ name, value string }

// env resolves c's environment: literal values with $(VAR) expanded from
// the variables before them, downward-API fields, and ConfigMap and Secret
// keys (an optional key that is missing leaves the variable unset; anything
// else missing keeps the container from starting).
func (k *kubelet) env(c *corev1.Container) []envVar {
	k.t.Helper()
	var out []envVar
	for _, from := range c.EnvFrom {
		k.t.Fatalf("container %s: envFrom %+v is not part of the contract", c.Name, from)
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			out = append(out, envVar{e.Name, expand(e.Value, out)})
			continue
		}
		v, ok := k.valueFrom(c.Name, e)
		if ok {
			out = append(out, envVar{e.Name, v})
		}
	}
	return out
}

func (k *kubelet) valueFrom(container string, e corev1.EnvVar) (string, bool) {
	k.t.Helper()
	src := e.ValueFrom
	switch {
	case src.FieldRef != nil:
		v, ok := k.fields[src.FieldRef.FieldPath]
		if !ok {
			k.t.Fatalf("container %s: %s uses field %s, which this kubelet does not know", container, e.Name, src.FieldRef.FieldPath)
		}
		return v, true
	case src.ResourceFieldRef != nil:
		return k.resource(container, e.Name, src.ResourceFieldRef), true
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, ok := k.fx.secrets[k.pod.Namespace+"/"+ref.Name]
		if !ok {
			k.optional(container, e.Name, "Secret "+ref.Name, ref.Optional)
			return "", false
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			k.optional(container, e.Name, "key "+ref.Key+" of Secret "+ref.Name, ref.Optional)
		}
		return string(v), ok
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, ok := k.fx.configMaps[k.pod.Namespace+"/"+ref.Name]
		if !ok {
			k.optional(container, e.Name, "ConfigMap "+ref.Name, ref.Optional)
			return "", false
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			k.optional(container, e.Name, "key "+ref.Key+" of ConfigMap "+ref.Name, ref.Optional)
		}
		return v, ok
	}
	k.t.Fatalf("container %s: %s has a source this kubelet does not resolve: %+v", container, e.Name, src)
	return "", false
}

// nodeAllocatableMemory is what this kubelet's node offers: a container
// without a memory limit sees it as limits.memory, as on a real node.
var nodeAllocatableMemory = resource.MustParse("8Gi")

// resource resolves a resourceFieldRef the way the kubelet does: the named
// container's request or limit divided by the divisor (1 when unset),
// rounded up; a missing memory or CPU limit is the node's allocatable.
func (k *kubelet) resource(own, name string, ref *corev1.ResourceFieldSelector) string {
	k.t.Helper()
	ctr := own
	if ref.ContainerName != "" {
		ctr = ref.ContainerName
	}
	c := container(k.t, k.pod, ctr)
	kind, res, _ := strings.Cut(ref.Resource, ".")
	list := c.Resources.Requests
	if kind == "limits" {
		list = c.Resources.Limits
	}
	q, ok := list[corev1.ResourceName(res)]
	switch {
	case ok:
	case ref.Resource == "limits.memory":
		q = nodeAllocatableMemory
	default:
		k.t.Fatalf("%s: resourceFieldRef %s, which this kubelet does not resolve without a value", name, ref.Resource)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	return strconv.FormatInt((q.Value()+divisor.Value()-1)/divisor.Value(), 10)
}

func (k *kubelet) optional(container, name, what string, optional *bool) {
	k.t.Helper()
	if optional == nil || !*optional {
		k.t.Fatalf("container %s: %s needs %s, which does not exist: the kubelet would not start it", container, name, what)
	}
}

// mount writes the ConfigMap and Secret volumes c mounts into a temporary
// directory, file by file as the kubelet projects them, and returns their
// view from inside the container.
func (k *kubelet) mount(c *corev1.Container) mounts {
	k.t.Helper()
	m := mounts{}
	for _, vm := range c.VolumeMounts {
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			k.t.Fatalf("container %s: subPath mounts are never updated by the kubelet; the sidecar's reload needs a directory mount (%+v)", c.Name, vm)
		}
		var vol *corev1.Volume
		for i := range k.pod.Spec.Volumes {
			if k.pod.Spec.Volumes[i].Name == vm.Name {
				vol = &k.pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			k.t.Fatalf("container %s mounts volume %s, which the pod does not have", c.Name, vm.Name)
		}
		dir := k.t.TempDir()
		var data map[string][]byte
		var items []corev1.KeyToPath
		switch {
		case vol.ConfigMap != nil:
			cm, ok := k.fx.configMaps[k.pod.Namespace+"/"+vol.ConfigMap.Name]
			if !ok {
				k.t.Fatalf("volume %s: ConfigMap %s is not in the fixtures", vol.Name, vol.ConfigMap.Name)
			}
			data = map[string][]byte{}
			for key, v := range cm.Data {
				data[key] = []byte(v)
			}
			items = vol.ConfigMap.Items
		case vol.Secret != nil:
			s, ok := k.fx.secrets[k.pod.Namespace+"/"+vol.Secret.SecretName]
			if !ok {
				k.t.Fatalf("volume %s: Secret %s is not in the fixtures", vol.Name, vol.Secret.SecretName)
			}
			data, items = s.Data, vol.Secret.Items
		default:
			k.t.Fatalf("volume %s: only ConfigMap and Secret volumes are part of the contract: %+v", vol.Name, vol.VolumeSource)
		}
		if len(items) == 0 {
			for key := range data {
				items = append(items, corev1.KeyToPath{Key: key, Path: key})
			}
		}
		for _, it := range items {
			v, ok := data[it.Key]
			if !ok {
				k.t.Fatalf("volume %s: key %s does not exist; the kubelet would not start the pod", vol.Name, it.Key)
			}
			p := filepath.Join(dir, filepath.FromSlash(it.Path))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				k.t.Fatal(err)
			}
			if err := os.WriteFile(p, v, 0o644); err != nil {
				k.t.Fatal(err)
			}
		}
		m[strings.TrimSuffix(vm.MountPath, "/")] = dir
	}
	return m
}

// command is the container's command line with $(VAR) expanded.
func (k *kubelet) command(c *corev1.Container, env []envVar) []string {
	k.t.Helper()
	if len(c.Command) == 0 {
		k.t.Fatalf("container %s has no command; the injector must not depend on the image's entrypoint", c.Name)
	}
	return expandAll(append(slices.Clone(c.Command), c.Args...), env)
}

// mounts maps a mount path inside the container to its directory here.
type mounts map[string]string

// read is the container's view of the file system: only mounted files
// exist.
func (m mounts) read(name string) ([]byte, error) {
	for mountPath, dir := range m {
		if rest, ok := strings.CutPrefix(name, mountPath+"/"); ok {
			return os.ReadFile(filepath.Join(dir, filepath.FromSlash(rest)))
		}
	}
	return nil, fmt.Errorf("open %s: %w (not on a volume the sidecar mounts)", name, os.ErrNotExist)
}

// expand follows the kubelet's $(VAR) syntax: $(NAME) is replaced by an
// earlier variable's value and left as it is when there is none; $$ is a
// literal $.
func expand(s string, defined []envVar) string {
	lookup := func(name string) (string, bool) {
		v, ok := "", false
		for _, e := range defined {
			if e.name == name {
				v, ok = e.value, true
			}
		}
		return v, ok
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func expandAll(args []string, env []envVar) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expand(a, env)
	}
	return out
}

func environ(env []envVar) []string {
	out := make([]string, len(env))
	for i, e := range env {
		out[i] = e.name + "=" + e.value
	}
	return out
}

// names lists the variables without their values, which may be secret.
func names(env []envVar) []string {
	out := make([]string, len(env))
	for i, e := range env {
		out[i] = e.name
	}
	return out
}

// checkSubcommand runs an injected command line (binary first) through the
// sidecar's own flag parsing.
func checkSubcommand(t *testing.T, what string, args []string) {
	t.Helper()
	if len(args) < 2 || args[0] != config.BinaryPath {
		t.Fatalf("%s runs %q, not the sidecar binary %s", what, args, config.BinaryPath)
	}
	ok, err := proxyapp.CheckSubcommand(args[1:])
	if !ok {
		t.Fatalf("%s: %q is not a sidecar subcommand", what, args[1])
	}
	if err != nil {
		t.Fatalf("%s: the sidecar refuses %q: %v", what, args[1:], err)
	}
}

// flagString reads one flag from a command line the sidecar accepted.
func flagString(t *testing.T, args []string, name string) string {
	t.Helper()
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	values := map[string]*string{}
	for _, a := range args {
		if n, ok := strings.CutPrefix(a, "--"); ok {
			n, _, _ = strings.Cut(n, "=")
			if _, seen := values[n]; !seen {
				values[n] = fs.String(n, "", "")
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	v, ok := values[name]
	if !ok {
		t.Fatalf("%q has no --%s", args, name)
	}
	return *v
}

func flagValue(t *testing.T, args []string, name string) int {
	t.Helper()
	n, err := strconv.Atoi(flagString(t, args, name))
	if err != nil {
		t.Fatalf("--%s in %q: %v", name, args, err)
	}
	return n
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func urlPort(t *testing.T, raw string) int {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("URL %q: %v", raw, err)
	}
	return port(t, u.Host)
}

func container(t *testing.T, pod *corev1.Pod, name string) *corev1.Container {
	t.Helper()
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	t.Fatalf("the pod has no container %s", name)
	return nil
}

func hasVolumeMount(c *corev1.Container) bool { return len(c.VolumeMounts) > 0 }

// get asks the replay for path and returns the status.
func get(h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

func yamlJSON(s string, into any) error {
	if s == "" {
		return errors.New("missing")
	}
	return yaml.UnmarshalStrict([]byte(s), into)
}
