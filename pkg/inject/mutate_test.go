package inject

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
)

// basePod is a minimal opted-in pod for table tests.
func basePod(annotations map[string]string) *corev1.Pod {
	a := map[string]string{AnnotationInject: "true"}
	for k, v := range annotations {
		a[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team-a", Annotations: a},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "server", Image: "example.com/server:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
}

func mustInject(t *testing.T, pod *corev1.Pod, ns Namespace, s Settings) *corev1.Pod {
	t.Helper()
	res, err := Mutate(pod, ns, s)
	if err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	if res.Skipped != "" || res.AlreadyInjected {
		t.Fatalf("not injected: %+v", res)
	}
	return res.Pod
}

// denialsOf unpacks Mutate's joined error; every element must be a *Denial.
func denialsOf(t *testing.T, err error) []*Denial {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*Denial
	for _, e := range errs {
		var d *Denial
		if !errors.As(e, &d) {
			t.Fatalf("error %v is not a *Denial", e)
		}
		out = append(out, d)
	}
	return out
}

func findContainer(t *testing.T, pod *corev1.Pod, name string) *corev1.Container {
	t.Helper()
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func envValue(c *corev1.Container, name string) (corev1.EnvVar, int) {
	n := 0
	var v corev1.EnvVar
	for _, e := range c.Env {
		if e.Name == name {
			v = e
			n++
		}
	}
	return v, n
}

// TestReapplyIsNoop feeds every injected golden output back to Mutate, both
// as the same object and after a JSON round trip (as the API server would
// store it): nothing changes, nothing is duplicated.
func TestReapplyIsNoop(t *testing.T) {
	for _, name := range caseNames(t) {
		if expectedOutcome(name) != outInjected {
			continue
		}
		t.Run(name, func(t *testing.T) {
			pod, ns, s := loadCase(t, name)
			out := mustInject(t, pod, ns, s)
			b, err := json.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			var stored corev1.Pod
			if err := json.Unmarshal(b, &stored); err != nil {
				t.Fatal(err)
			}
			for _, in := range []*corev1.Pod{out, &stored} {
				res, err := Mutate(in, ns, s)
				if err != nil || !res.AlreadyInjected {
					t.Fatalf("reapply: err=%v result=%+v", err, res)
				}
				if !equality.Semantic.DeepEqual(res.Pod, out) {
					t.Fatal("reapply changed the pod")
				}
			}
			n := 0
			for _, cs := range [][]corev1.Container{out.Spec.InitContainers, out.Spec.Containers} {
				for _, c := range cs {
					if c.Name == ProxyContainerName {
						n++
					}
					seen := map[string]bool{}
					for _, e := range c.Env {
						if seen[e.Name] {
							t.Errorf("container %s: duplicate env %s", c.Name, e.Name)
						}
						seen[e.Name] = true
					}
				}
			}
			if n != 1 {
				t.Errorf("%d proxy containers, want 1", n)
			}
		})
	}
}

// TestDeterministic: the same input always yields byte-identical output,
// despite map iteration (annotations, probe sets).
func TestDeterministic(t *testing.T) {
	for _, name := range []string{"overrides", "multi-container", "rebind"} {
		pod, ns, s := loadCase(t, name)
		first := toYAML(t, mustInject(t, pod, ns, s))
		for range 20 {
			if got := toYAML(t, mustInject(t, pod, ns, s)); string(got) != string(first) {
				t.Fatalf("%s: output differs between runs", name)
			}
		}
	}
}

// TestProxyPassesRestricted checks the proxy container field by field
// against the "restricted" Pod Security Standard, in every shape it takes.
func TestProxyPassesRestricted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ann    map[string]string
		native bool
	}{
		{"native redirect", nil, true},
		{"classic redirect", nil, false},
		{"native rebind", map[string]string{AnnotationMode: "rebind", AnnotationRebindEnv: "PORT"}, true},
		{"classic rebind with config", map[string]string{AnnotationMode: "rebind", AnnotationRebindEnv: "PORT", AnnotationConfig: "c", AnnotationSecret: "s"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings()
			s.NativeSidecars = tc.native
			out := mustInject(t, basePod(tc.ann), Namespace{}, s)
			c := findContainer(t, out, ProxyContainerName)
			sc := c.SecurityContext
			if sc == nil {
				t.Fatal("no securityContext")
			}
			checks := []struct {
				field string
				ok    bool
			}{
				{"runAsNonRoot=true", sc.RunAsNonRoot != nil && *sc.RunAsNonRoot},
				{"runAsUser!=0", sc.RunAsUser != nil && *sc.RunAsUser == ProxyUID},
				{"runAsGroup set", sc.RunAsGroup != nil && *sc.RunAsGroup == ProxyUID},
				{"allowPrivilegeEscalation=false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
				{"privileged unset or false", sc.Privileged == nil || !*sc.Privileged},
				{"readOnlyRootFilesystem=true", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
				{"capabilities drop ALL", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"})},
				{"no capabilities added", sc.Capabilities != nil && len(sc.Capabilities.Add) == 0},
				{"seccomp RuntimeDefault", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
				{"procMount default", sc.ProcMount == nil || *sc.ProcMount == corev1.DefaultProcMount},
				{"no windows/selinux overrides", sc.SELinuxOptions == nil && sc.WindowsOptions == nil},
				{"no hostPort", !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.HostPort != 0 })},
				{"resources requests set", len(c.Resources.Requests) > 0},
				{"native sidecar shape", !tc.native || (c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways && c.StartupProbe != nil)},
				{"classic postStart wait", tc.native || (c.Lifecycle != nil && c.Lifecycle.PostStart != nil && c.Lifecycle.PostStart.Exec != nil && c.Lifecycle.PostStart.Exec.Command[1] == "wait")},
			}
			for _, ch := range checks {
				if !ch.ok {
					t.Errorf("proxy container fails: %s", ch.field)
				}
			}
			// Volumes the injector adds are of restricted-allowed types.
			for _, v := range out.Spec.Volumes {
				if v.Name == ConfigVolumeName && v.ConfigMap == nil {
					t.Errorf("config volume is not a ConfigMap: %+v", v.VolumeSource)
				}
			}
			// Rebind adds no privileged container at all.
			if out.Annotations[AnnotationMode] == "rebind" && hasContainer(out.Spec.InitContainers, RedirectContainerName) {
				t.Error("rebind mode added the init-redirect container")
			}
		})
	}
}

// TestRedirectContainer checks the only privileged container: root, exactly
// NET_ADMIN and NET_RAW, nothing else, and that it runs before the proxy.
func TestRedirectContainer(t *testing.T) {
	for _, native := range []bool{true, false} {
		s := testSettings()
		s.NativeSidecars = native
		pod := basePod(nil)
		pod.Spec.InitContainers = []corev1.Container{{Name: "user-init", Image: "x"}}
		out := mustInject(t, pod, Namespace{}, s)
		var names []string
		for _, c := range out.Spec.InitContainers {
			names = append(names, c.Name)
		}
		want := []string{RedirectContainerName, "user-init"}
		if native {
			want = []string{RedirectContainerName, ProxyContainerName, "user-init"}
		}
		if !slices.Equal(names, want) {
			t.Errorf("native=%v: init containers %v, want %v", native, names, want)
		}
		c := out.Spec.InitContainers[0]
		sc := c.SecurityContext
		if *sc.RunAsUser != 0 || *sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("init-redirect securityContext: %+v", sc)
		}
		if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("init-redirect capabilities: %+v", sc.Capabilities)
		}
		if c.RestartPolicy != nil {
			t.Error("init-redirect must run to completion, not as a sidecar")
		}
		wantCmd := []string{config.BinaryPath, "init-redirect", "--port", "8080", "--to", "15080"}
		if got := append(slices.Clone(c.Command), c.Args...); !slices.Equal(got, wantCmd) {
			t.Errorf("init-redirect command %v, want %v", got, wantCmd)
		}
	}
}

// TestSecretsOnlyByReference: every secret variable comes from the named
// Secret through an optional secretKeyRef, never as a literal value.
func TestSecretsOnlyByReference(t *testing.T) {
	out := mustInject(t, basePod(map[string]string{AnnotationSecret: "mcp-secrets"}), Namespace{}, testSettings())
	c := findContainer(t, out, ProxyContainerName)
	for _, k := range config.PodSecretKeys() {
		key, name := k.Key, k.Setting.EnvName()
		e, n := envValue(c, name)
		if n != 1 {
			t.Fatalf("%s defined %d times", name, n)
		}
		ref := e.ValueFrom
		if e.Value != "" || ref == nil || ref.SecretKeyRef == nil {
			t.Fatalf("%s is not a secretKeyRef: %+v", name, e)
		}
		if ref.SecretKeyRef.Name != "mcp-secrets" || ref.SecretKeyRef.Key != key || ref.SecretKeyRef.Optional == nil || !*ref.SecretKeyRef.Optional {
			t.Errorf("%s: secretKeyRef %+v", name, ref.SecretKeyRef)
		}
	}
	// The downward-API variables first (later values reference them), then
	// the rest sorted.
	if len(c.Env) < 3 || c.Env[0].Name != "POD_NAME" || c.Env[1].Name != "POD_NAMESPACE" || c.Env[2].Name != "POD_IP" {
		t.Fatalf("proxy env does not start with the downward-API variables: %+v", c.Env)
	}
	if !slices.IsSortedFunc(c.Env[3:], func(a, b corev1.EnvVar) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("proxy env is not sorted")
	}
}

// kubeletExpand expands $(VAR) in env the way the kubelet does: only
// variables defined earlier in the list, others left as they are.
func kubeletExpand(env []corev1.EnvVar, fields map[string]string) map[string]string {
	out := map[string]string{}
	for _, e := range env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			v = fields[e.ValueFrom.FieldRef.FieldPath]
		}
		for name, val := range out {
			v = strings.ReplaceAll(v, "$("+name+")", val)
		}
		out[e.Name] = v
	}
	return out
}

// Without external_url or allowed_hosts in the cluster defaults, the sidecar
// accepts the pod's Service names and pod IP (and nothing else): what the
// kubelet hands it loads and validates in the sidecar's own configuration.
func TestDefaultAllowedHostsReachTheSidecar(t *testing.T) {
	for _, tc := range []struct {
		name, defaults string
		want           []string
	}{
		{"no defaults", "", []string{"*.team-a.svc", "*.team-a.svc.cluster.local", "10.1.2.3"}},
		{"other defaults kept", "oidc:\n  discovery_url: https://login.example.com\n", []string{"*.team-a.svc", "*.team-a.svc.cluster.local", "10.1.2.3"}},
		{"operator's allowed_hosts win", "allowed_hosts: [mcp.internal.example]\n", []string{"mcp.internal.example"}},
		{"operator's external_url: only its host", "external_url: https://mcp.example.com\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings()
			s.ProxyDefaults = tc.defaults
			// The pod's ConfigMap is its configuration source, whatever
			// the defaults hold.
			c := findContainer(t, mustInject(t, basePod(map[string]string{AnnotationConfig: "mcp-config"}), Namespace{}, s), ProxyContainerName)
			env := kubeletExpand(c.Env, map[string]string{"metadata.name": "p", "metadata.namespace": "team-a", "status.podIP": "10.1.2.3"})
			loaded, err := config.Load(config.Source{Env: []string{config.ClusterDefaultsEnv + "=" + env[config.ClusterDefaultsEnv]}})
			if err != nil {
				t.Fatalf("the sidecar cannot load its cluster defaults %q: %v", env[config.ClusterDefaultsEnv], err)
			}
			if !slices.Equal(loaded.Config.AllowedHosts, tc.want) {
				t.Errorf("allowed_hosts = %q, want %q", loaded.Config.AllowedHosts, tc.want)
			}
			var fe *config.FieldError
			for _, err := range flatten(loaded.Config.Validate()) {
				if errors.As(err, &fe) && fe.Path == "allowed_hosts" {
					t.Errorf("the sidecar refuses its allowed_hosts: %v", err)
				}
			}
			if strings.Contains(env[config.ClusterDefaultsEnv], "https://login.example.com") != strings.Contains(tc.defaults, "https://login.example.com") {
				t.Errorf("the operator's defaults were not kept: %q", env[config.ClusterDefaultsEnv])
			}
		})
	}
}

// flatten lists the errors joined in err.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// TestProbeHandOver decodes what the sidecar will read, with the probe
// package's own decoder, and checks the rewritten probes keep the kubelet's
// timing.
func TestProbeHandOver(t *testing.T) {
	app := corev1.Container{
		Name: "server", Image: "x",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "grpc", ContainerPort: 9000}},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/h", Port: intstr.FromString("http"), Host: "1.2.3.4"}},
			PeriodSeconds:    7,
			FailureThreshold: 9,
			TimeoutSeconds:   4,
		},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http"), Host: "example.com"}}},
		StartupProbe:   &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}}, InitialDelaySeconds: 3},
	}
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		appPort int32
	}{
		{"redirect keeps ports", nil, 8080},
		{"rebind moves the protected port", map[string]string{AnnotationMode: "rebind", AnnotationRebindEnv: "PORT", AnnotationRebindPort: "7000"}, 7000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := basePod(tc.ann)
			pod.Spec.Containers = []corev1.Container{*app.DeepCopy()}
			out := mustInject(t, pod, Namespace{}, testSettings())
			e, n := envValue(findContainer(t, out, ProxyContainerName), probe.EnvVar)
			if n != 1 {
				t.Fatalf("%s defined %d times", probe.EnvVar, n)
			}
			set, err := probe.Decode(e.Value)
			if err != nil {
				t.Fatal(err)
			}
			live := set[probe.Path("server", probe.Liveness)]
			if live.HTTPGet == nil || live.HTTPGet.Port != probe.PortNumber(tc.appPort) || live.HTTPGet.Host != "" || live.HTTPGet.Path != "/h" || live.TimeoutSeconds != 4 {
				t.Errorf("liveness original: %+v", live.HTTPGet)
			}
			ready := set[probe.Path("server", probe.Readiness)]
			if ready.TCPSocket == nil || ready.TCPSocket.Port != probe.PortNumber(tc.appPort) || ready.TCPSocket.Host != "" {
				t.Errorf("readiness original: %+v", ready.TCPSocket)
			}
			start := set[probe.Path("server", probe.Startup)]
			if start.GRPC == nil || start.GRPC.Port != 9000 {
				t.Errorf("startup original: %+v", start.GRPC)
			}
			c := findContainer(t, out, "server")
			for _, kp := range probesOf(c) {
				h := (*kp.probe).HTTPGet
				if h == nil || h.Port != intstr.FromInt32(AdminPort) || h.Path != probe.Path("server", kp.kind) || h.Scheme != corev1.URISchemeHTTP || h.Host != "" {
					t.Errorf("%s probe not rewritten: %+v", kp.kind, *kp.probe)
				}
			}
			if c.LivenessProbe.PeriodSeconds != 7 || c.LivenessProbe.FailureThreshold != 9 || c.LivenessProbe.TimeoutSeconds != 4 || c.StartupProbe.InitialDelaySeconds != 3 {
				t.Error("rewritten probes lost their timing")
			}
		})
	}
}

// TestModeSelection covers how mode, Pod Security and cluster defaults
// combine, beyond the golden cases.
func TestModeSelection(t *testing.T) {
	withEnv := map[string]string{AnnotationRebindEnv: "PORT"}
	for _, tc := range []struct {
		name      string
		ann       map[string]string
		level     string
		rebindPSS bool
		defMode   Mode
		want      Mode
		denied    string // annotation of the expected denial
	}{
		{"default is redirect", nil, "", false, "", ModeRedirect, ""},
		{"privileged namespace allows redirect", nil, "privileged", false, "", ModeRedirect, ""},
		{"restricted refuses default redirect", nil, "restricted", false, "", "", AnnotationMode},
		{"restricted + rebindWhenRestricted without env refuses", nil, "restricted", true, "", "", AnnotationMode},
		{"restricted + rebindWhenRestricted with env rebinds", withEnv, "restricted", true, "", ModeRebind, ""},
		{"baseline with explicit rebind", map[string]string{AnnotationMode: "Rebind", AnnotationRebindEnv: "PORT"}, "baseline", false, "", ModeRebind, ""},
		{"rebind default needs env", nil, "", false, ModeRebind, "", AnnotationRebindEnv},
		{"bad cluster default", nil, "", false, "sideways", "", ""},
		{"env set in redirect is ignored", withEnv, "", false, "", ModeRedirect, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings()
			s.RebindWhenRestricted = tc.rebindPSS
			s.DefaultMode = tc.defMode
			ns := Namespace{Name: "team-a", Labels: map[string]string{}}
			if tc.level != "" {
				ns.Labels[PodSecurityEnforceLabel] = tc.level
			}
			res, err := Mutate(basePod(tc.ann), ns, s)
			if tc.want == "" {
				if err == nil {
					t.Fatal("want a denial")
				}
				ds := denialsOf(t, err)
				if len(ds) != 1 || ds[0].Annotation != tc.denied {
					t.Fatalf("denials %v, want one on %q", err, tc.denied)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var st Status
			if err := json.Unmarshal([]byte(res.Pod.Annotations[AnnotationStatus]), &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode != tc.want {
				t.Errorf("mode %s, want %s", st.Mode, tc.want)
			}
			if got := hasContainer(res.Pod.Spec.InitContainers, RedirectContainerName); got != (tc.want == ModeRedirect) {
				t.Errorf("init-redirect present = %v in mode %s", got, tc.want)
			}
		})
	}
}

// TestDenialsNameTheFix: every denial of every golden case is a *Denial
// with a fix, and the multi-problem case reports each problem.
func TestDenialsNameTheFix(t *testing.T) {
	for _, name := range caseNames(t) {
		if expectedOutcome(name) != outDenied {
			continue
		}
		pod, ns, s := loadCase(t, name)
		_, err := Mutate(pod, ns, s)
		for _, d := range denialsOf(t, err) {
			if d.Fix == "" || d.Problem == "" {
				t.Errorf("%s: denial without problem or fix: %+v", name, d)
			}
		}
	}
	pod, ns, s := loadCase(t, "deny-multiple")
	_, err := Mutate(pod, ns, s)
	var got []string
	for _, d := range denialsOf(t, err) {
		got = append(got, d.Annotation)
	}
	want := []string{AnnotationInject, AnnotationRebindEnv, AnnotationPort, AnnotationNativeSidecar, AnnotationCPULimit, AnnotationLogLevel, AnnotationConfig}
	if !slices.Equal(got, want) {
		t.Errorf("denied annotations %v, want %v", got, want)
	}
}

// TestRebindEnvTarget: the variable goes to the container that declares the
// protected port, or to the first container when none does.
func TestRebindEnvTarget(t *testing.T) {
	two := func() *corev1.Pod {
		p := basePod(map[string]string{AnnotationMode: "rebind", AnnotationRebindEnv: "PORT"})
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "second", Image: "x",
			Ports: []corev1.ContainerPort{{Name: "mcp", ContainerPort: 3000}}})
		return p
	}
	for _, tc := range []struct{ port, target string }{
		{"mcp", "second"}, {"3000", "second"}, {"8080", "server"}, {"4444", "server"}, {"", "server"},
	} {
		p := two()
		if tc.port != "" {
			p.Annotations[AnnotationPort] = tc.port
		}
		out := mustInject(t, p, Namespace{}, testSettings())
		for _, c := range []string{"server", "second"} {
			_, n := envValue(findContainer(t, out, c), "PORT")
			if want := b2i(c == tc.target); n != want {
				t.Errorf("port %q: container %s has PORT %d times, want %d", tc.port, c, n, want)
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestNilPod(t *testing.T) {
	if _, err := Mutate(nil, Namespace{}, testSettings()); err == nil {
		t.Fatal("nil pod accepted")
	}
}

// TestNamespaceFallback: an empty Namespace.Name falls back to the pod's
// namespace, so kube-system is still skipped.
func TestNamespaceFallback(t *testing.T) {
	p := basePod(nil)
	p.Namespace = "kube-system"
	res, err := Mutate(p, Namespace{}, testSettings())
	if err != nil || res.Skipped != SkipKubeSystem {
		t.Fatalf("res=%+v err=%v", res, err)
	}
}

// TestConfigSource: a pod without a ConfigMap is admitted exactly when the
// cluster defaults, with what the injector writes and what the pod's Secret
// or mounted files can add, make a configuration the sidecar accepts.
func TestConfigSource(t *testing.T) {
	const provider = "oidc:\n  discovery_url: https://login.example.com\n  client_id: mcp-proxy\n"
	for _, tc := range []struct {
		name, defaults string
		ann            map[string]string
		// want lists what the denial must say; nil means admitted.
		want []string
	}{
		{"ConfigMap, no defaults", "", map[string]string{AnnotationConfig: "mcp-config"}, nil},
		{"invalid ConfigMap name is its own denial", "", map[string]string{AnnotationConfig: "Bad_Name"}, []string{"not a valid ConfigMap name"}},
		{"nothing", "", nil, []string{"no configuration source", "oidc.discovery_url", "oidc.client_id", "sidecar.defaults", AnnotationConfig}},
		{"an empty document is no defaults", "{}\n", nil, []string{"no configuration source"}},
		{"Secret alone", "", map[string]string{AnnotationSecret: "s"}, []string{"no configuration source"}},
		{"provider in the defaults", provider, nil, nil},
		{"provider and redis store, secrets from the Secret", provider + "session:\n  store: redis\n", map[string]string{AnnotationSecret: "s"}, nil},
		{"provider and redis store, no Secret", provider + "session:\n  store: redis\n", nil,
			[]string{"redis.url", "session.cookie_secret", "key redis-url", "key cookie-secret", AnnotationSecret}},
		// Nothing but the ConfigMap is mounted in the sidecar.
		{"secret files cannot be read", provider + "redis:\n  url_file: /s/u\n", map[string]string{AnnotationSecret: "s"}, []string{"redis.url_file", "no such file"}},
		{"unknown key in the defaults", provider + "oidc_typo: x\n", nil, []string{"oidc_typo"}},
		{"invalid value in the defaults", provider + "session:\n  store: disk\n", nil, []string{"session.store", `"disk"`}},
		{"bypass needs no provider", "auth_mode: bypass\nallow_insecure_bypass: true\n", nil, nil},
		{"the log-level annotation is checked as the sidecar sees it", provider, map[string]string{AnnotationLogLevel: "debug"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings()
			s.ProxyDefaults = tc.defaults
			res, err := Mutate(basePod(tc.ann), Namespace{Name: "team-a"}, s)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if res.Pod == nil || !hasContainer(res.Pod.Spec.InitContainers, ProxyContainerName) {
					t.Fatal("admitted without the proxy")
				}
				return
			}
			if err == nil {
				t.Fatal("admitted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("denial %q lacks %q", err, w)
				}
			}
			for _, d := range denialsOf(t, err) {
				if d.Fix == "" {
					t.Errorf("denial without a fix: %v", d)
				}
			}
		})
	}
}
