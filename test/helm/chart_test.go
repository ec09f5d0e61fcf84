package helm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-injector/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/kube"
)

const shippedWebhook = "../../config/webhook/mutatingwebhookconfiguration.yaml"

func newNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

func TestLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"cert-manager", []string{"--set", "certificates.mode=cert-manager"}},
		{"options", []string{"--set", "serviceMonitor.enabled=true", "--set", "podDisruptionBudget.enabled=false",
			"--set", "sidecar.defaults.oidc.discovery_url=https://login.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", "--kube-version", env.kubeVersion, chartDir}, tc.args...)
			if _, err := runHelm(args...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDefaultRenderApplies installs the default render on the API server:
// every object must be valid for this Kubernetes version.
func TestDefaultRenderApplies(t *testing.T) {
	const ns = "apply-default"
	objs := mustTemplate(t, "mcp-oidc-proxy", ns)
	newNamespace(t, ns)
	objs.apply(t, false, nil)
	// Nothing in the default render needs a CRD.
	for _, u := range objs {
		if strings.Contains(u.GetAPIVersion(), "cert-manager.io") || strings.Contains(u.GetAPIVersion(), "monitoring.coreos.com") {
			t.Errorf("default render has %s %s", u.GetAPIVersion(), u.GetKind())
		}
	}
}

// TestCertManagerMode renders the cert-manager mode: the injector runs with
// external certificates from the Certificate's Secret, cert-manager injects
// the CA, and the injector gets no rights it no longer needs. Everything but
// the cert-manager kinds (whose CRDs are not installed) must be valid.
func TestCertManagerMode(t *testing.T) {
	const ns = "apply-cert-manager"
	objs := mustTemplate(t, "cm", ns, "--set", "certificates.mode=cert-manager")
	newNamespace(t, ns)
	objs.apply(t, true, func(u *unstructured.Unstructured) bool {
		return u.GroupVersionKind().Group == "cert-manager.io"
	})

	var (
		dep  appsv1.Deployment
		svc  corev1.Service
		mwc  admissionregistrationv1.MutatingWebhookConfiguration
		cr   rbacv1.ClusterRole
		cert struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				SecretName string            `json:"secretName"`
				DNSNames   []string          `json:"dnsNames"`
				IssuerRef  map[string]string `json:"issuerRef"`
			} `json:"spec"`
		}
	)
	objs.into(t, "Deployment", &dep)
	objs.into(t, "Service", &svc)
	objs.into(t, "MutatingWebhookConfiguration", &mwc)
	objs.into(t, "ClusterRole", &cr)
	data, err := yaml.Marshal(objs.find(t, "Certificate").Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cert); err != nil {
		t.Fatal(err)
	}
	issuer := objs.find(t, "Issuer")
	if cert.Spec.IssuerRef["name"] != issuer.GetName() || cert.Spec.IssuerRef["kind"] != "Issuer" {
		t.Errorf("Certificate issuerRef %v, want the rendered Issuer %s", cert.Spec.IssuerRef, issuer.GetName())
	}
	if want := svc.Name + "." + ns + ".svc"; !slices.Contains(cert.Spec.DNSNames, want) {
		t.Errorf("Certificate dnsNames %v lack the Service name %s", cert.Spec.DNSNames, want)
	}
	if got, want := mwc.Annotations["cert-manager.io/inject-ca-from"], ns+"/"+cert.Metadata.Name; got != want {
		t.Errorf("inject-ca-from = %q, want %q", got, want)
	}

	c := dep.Spec.Template.Spec.Containers[0]
	o := kube.InjectorOptions(t, c.Args, ns)
	if o.CertMode != app.CertModeExternal {
		t.Errorf("--cert-mode = %q, want %q", o.CertMode, app.CertModeExternal)
	}
	if v := volumeAt(t, dep, c, o.CertDir); v.Secret == nil || v.Secret.SecretName != cert.Spec.SecretName {
		t.Errorf("--cert-dir %s is volume %+v, want the Certificate's Secret %s", o.CertDir, v.VolumeSource, cert.Spec.SecretName)
	}
	if objs.count("Role") != 0 || objs.count("RoleBinding") != 0 {
		t.Error("cert-manager mode still grants access to Secrets")
	}
	for _, r := range cr.Rules {
		if slices.Contains(r.Resources, "mutatingwebhookconfigurations") {
			t.Errorf("cert-manager mode still grants %v on the webhook configuration", r.Verbs)
		}
	}

	// An issuer of the user's replaces the self-signed one.
	own := mustTemplate(t, "cm", ns, "--set", "certificates.mode=cert-manager",
		"--set", "certificates.certManager.issuerRef.name=corp-ca", "--set", "certificates.certManager.issuerRef.kind=ClusterIssuer")
	if own.count("Issuer") != 0 {
		t.Error("a self-signed Issuer is rendered although issuerRef names one")
	}
	ref, _, _ := unstructured.NestedStringMap(own.find(t, "Certificate").Object, "spec", "issuerRef")
	if ref["name"] != "corp-ca" || ref["kind"] != "ClusterIssuer" {
		t.Errorf("Certificate issuerRef %v, want ClusterIssuer corp-ca", ref)
	}
}

// volumeAt is the volume mounted at dir in container c.
func volumeAt(t *testing.T, dep appsv1.Deployment, c corev1.Container, dir string) corev1.Volume {
	t.Helper()
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
	if i < 0 {
		t.Fatalf("nothing is mounted at %s (mounts %+v)", dir, c.VolumeMounts)
	}
	vols := dep.Spec.Template.Spec.Volumes
	j := slices.IndexFunc(vols, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
	if j < 0 {
		t.Fatalf("volume %s is mounted but not defined", c.VolumeMounts[i].Name)
	}
	return vols[j]
}

// TestRenderedObjectsAgree checks that the names the rendered objects use
// for one another match, and that the webhook is the tested one of
// config/webhook: what helm install creates must find itself.
func TestRenderedObjectsAgree(t *testing.T) {
	for _, release := range []string{"mcp-oidc-proxy", "other"} {
		t.Run(release, func(t *testing.T) {
			const ns = "agree"
			objs := mustTemplate(t, release, ns)
			var (
				in      kube.Install
				shipped admissionregistrationv1.MutatingWebhookConfiguration
			)
			objs.into(t, "Deployment", &in.Deployment)
			objs.into(t, "Service", &in.Service)
			objs.into(t, "ServiceAccount", &in.ServiceAccount)
			objs.into(t, "ClusterRole", &in.ClusterRole)
			objs.into(t, "ClusterRoleBinding", &in.ClusterRoleBinding)
			objs.into(t, "Role", &in.Role)
			objs.into(t, "RoleBinding", &in.RoleBinding)
			objs.into(t, "MutatingWebhookConfiguration", &in.Webhook)
			data, err := os.ReadFile(shippedWebhook)
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalStrict(data, &shipped); err != nil {
				t.Fatalf("%s: %v", shippedWebhook, err)
			}

			o := kube.CheckInstall(t, in)
			dep, mwc := in.Deployment, in.Webhook
			c := dep.Spec.Template.Spec.Containers[0]
			if dep.Namespace != ns {
				t.Errorf("Deployment namespace is %q, want %q", dep.Namespace, ns)
			}
			if o.CertMode != app.CertModeSelfManaged {
				t.Errorf("--cert-mode is %q, want %q", o.CertMode, app.CertModeSelfManaged)
			}
			if !strings.HasPrefix(mwc.Name, release) {
				t.Errorf("webhook configuration %q does not derive from the release %q", mwc.Name, release)
			}
			if v := volumeAt(t, dep, c, o.CertDir); v.EmptyDir == nil {
				t.Errorf("--cert-dir %s is %+v, want an emptyDir the injector writes", o.CertDir, v.VolumeSource)
			}

			if len(mwc.Webhooks) != len(shipped.Webhooks) {
				t.Fatalf("%d webhooks, config/webhook has %d", len(mwc.Webhooks), len(shipped.Webhooks))
			}
			for i, wh := range mwc.Webhooks {
				want := shipped.Webhooks[i]
				same := func(field string, got, want any) {
					t.Helper()
					if !reflect.DeepEqual(got, want) {
						t.Errorf("webhook %s %s = %+v, config/webhook has %+v", wh.Name, field, got, want)
					}
				}
				same("name", wh.Name, want.Name)
				same("matchConditions", wh.MatchConditions, want.MatchConditions)
				same("objectSelector", wh.ObjectSelector, want.ObjectSelector)
				same("namespaceSelector", wh.NamespaceSelector, want.NamespaceSelector)
				same("rules", wh.Rules, want.Rules)
				same("failurePolicy", wh.FailurePolicy, want.FailurePolicy)
				same("sideEffects", wh.SideEffects, want.SideEffects)
				same("reinvocationPolicy", wh.ReinvocationPolicy, want.ReinvocationPolicy)
				same("admissionReviewVersions", wh.AdmissionReviewVersions, want.AdmissionReviewVersions)
				same("timeoutSeconds", wh.TimeoutSeconds, want.TimeoutSeconds)
				same("clientConfig.service.path", wh.ClientConfig.Service.Path, want.ClientConfig.Service.Path)
			}
		})
	}
}

// TestValuesReachTheInjector checks that each value turns into the injector
// option or object it documents.
func TestValuesReachTheInjector(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   []string
		check func(t *testing.T, objs rendered, o app.Options)
	}{
		{"defaults", nil, func(t *testing.T, objs rendered, o app.Options) {
			var dep appsv1.Deployment
			objs.into(t, "Deployment", &dep)
			if o.DefaultMode != "redirect" || o.RebindWhenRestricted || o.NativeSidecars != "auto" || o.ProxyDefaultsFile != "" {
				t.Errorf("options %+v, want the injector's defaults", o)
			}
			if *dep.Spec.Replicas != 2 || objs.count("PodDisruptionBudget") != 1 || objs.count("ServiceMonitor") != 0 {
				t.Errorf("replicas %d, %d PDBs, %d ServiceMonitors; want 2, 1, 0", *dep.Spec.Replicas,
					objs.count("PodDisruptionBudget"), objs.count("ServiceMonitor"))
			}
			sc := dep.Spec.Template.Spec.Containers[0].SecurityContext
			psc := dep.Spec.Template.Spec.SecurityContext
			if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
				psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("security context %+v / %+v is not restricted", psc, sc)
			}
		}},
		{"sidecar", []string{"sidecar.image.repository=example.com/proxy", "sidecar.image.tag=v9", "sidecar.image.pullPolicy=Always",
			"sidecar.defaultMode=rebind", "sidecar.rebindWhenRestricted=true", "sidecar.nativeSidecars=false",
			"sidecar.resources.requests.cpu=10m", "sidecar.resources.requests.memory=", "sidecar.resources.limits.cpu=1", "sidecar.resources.limits.memory=1Gi"},
			func(t *testing.T, _ rendered, o app.Options) {
				got := []any{o.SidecarImage, o.ImagePullPolicy, o.DefaultMode, o.RebindWhenRestricted, o.NativeSidecars,
					o.ProxyCPURequest, o.ProxyMemoryRequest, o.ProxyCPULimit, o.ProxyMemoryLimit}
				want := []any{"example.com/proxy:v9", "Always", "rebind", true, "false", "10m", "", "1", "1Gi"}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("options %v, want %v", got, want)
				}
			}},
		{"injector", []string{"injector.image.repository=example.com/injector", "injector.image.tag=v8", "injector.replicas=3",
			"failurePolicy=Ignore", "podDisruptionBudget.enabled=false", "serviceMonitor.enabled=true", "injector.logLevel=debug"},
			func(t *testing.T, objs rendered, o app.Options) {
				var (
					dep appsv1.Deployment
					mwc admissionregistrationv1.MutatingWebhookConfiguration
				)
				objs.into(t, "Deployment", &dep)
				objs.into(t, "MutatingWebhookConfiguration", &mwc)
				if img := dep.Spec.Template.Spec.Containers[0].Image; img != "example.com/injector:v8" {
					t.Errorf("injector image %q", img)
				}
				if *dep.Spec.Replicas != 3 || o.LogLevel != "debug" {
					t.Errorf("replicas %d, log level %q", *dep.Spec.Replicas, o.LogLevel)
				}
				if fp := mwc.Webhooks[0].FailurePolicy; fp == nil || *fp != admissionregistrationv1.Ignore {
					t.Errorf("failurePolicy %v, want Ignore", fp)
				}
				if objs.count("PodDisruptionBudget") != 0 || objs.count("ServiceMonitor") != 1 {
					t.Errorf("%d PDBs, %d ServiceMonitors; want 0, 1", objs.count("PodDisruptionBudget"), objs.count("ServiceMonitor"))
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			objs := mustTemplate(t, "values", "values", args...)
			var dep appsv1.Deployment
			objs.into(t, "Deployment", &dep)
			tc.check(t, objs, kube.InjectorOptions(t, dep.Spec.Template.Spec.Containers[0].Args, "values"))
		})
	}
	// Values the injector would refuse fail at helm time.
	for _, set := range []string{"certificates.mode=vault", "failurePolicy=Retry"} {
		if _, err := template("values", "values", "--set", set); err == nil {
			t.Errorf("--set %s rendered", set)
		}
	}
}

// TestSidecarDefaultsRefuseEverySecretSetting keeps the chart's copy of the
// secret rule (helm cannot call Go) in step with the configuration's own
// secret markers: every setting marked secret is refused by helm and by the
// injector alike.
func TestSidecarDefaultsRefuseEverySecretSetting(t *testing.T) {
	for _, path := range config.SecretFields() {
		t.Run(path, func(t *testing.T) {
			value := "s3cret"
			if strings.HasSuffix(path, "url") { // secret for its password
				value = "redis://u:s3cret@redis:6379"
			}
			keys := strings.Split(path, ".")
			var defaults any = value
			for i := len(keys) - 1; i >= 0; i-- {
				defaults = map[string]any{keys[i]: defaults}
			}
			doc, err := yaml.Marshal(defaults)
			if err != nil {
				t.Fatal(err)
			}
			if err := app.CheckProxyDefaults(doc); !errors.Is(err, app.ErrSecretInDefaults) {
				t.Errorf("the injector accepts %s: %v", path, err)
			}
			values, err := yaml.Marshal(map[string]any{"sidecar": map[string]any{"defaults": defaults}})
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, values, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = template("defaults", "defaults", "--values", file)
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("helm renders %s into sidecar.defaults (err = %v)", path, err)
			}
		})
	}
}

// TestSidecarDefaults checks that sidecar.defaults reaches the injector's
// --proxy-defaults-file through a ConfigMap, and that helm refuses exactly
// what the injector refuses: secrets there would be copied into every pod
// spec.
func TestSidecarDefaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		defaults string
		refused  []string // paths helm names; empty: accepted
	}{
		{"non-secret", "oidc:\n  discovery_url: https://login.example.com\n  client_id: mcp\nsession:\n  store: redis\nredis:\n  url: redis://redis:6379/0\n", nil},
		{"empty secrets", "oidc:\n  client_secret: \"\"\nsession:\n  cookie_secret: \"\"\n", nil},
		{"client secret", "oidc:\n  discovery_url: https://login.example.com\n  client_secret: s3cret\n", []string{"oidc.client_secret"}},
		{"cookie secret", "session:\n  cookie_secret: abc\n", []string{"session.cookie_secret"}},
		{"nested password", "upstreams:\n  - name: a\n    password: pw\n", []string{"upstreams[0].password"}},
		{"redis url with password", "redis:\n  url: redis://:pw@redis:6379/0\n", []string{"redis.url"}},
		{"several", "oidc:\n  client_secret: a\nredis:\n  password: b\n", []string{"oidc.client_secret", "redis.password"}},
		{"facade signing keys", "oauth: {signing_keys: s3cret}\n", []string{"oauth.signing_keys"}},
		{"introspection secret", "oauth:\n  introspection_secret: s3cret\n", []string{"oauth.introspection_secret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var defaults map[string]any
			if err := yaml.Unmarshal([]byte(tc.defaults), &defaults); err != nil {
				t.Fatal(err)
			}
			values, err := yaml.Marshal(map[string]any{"sidecar": map[string]any{"defaults": defaults}})
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, values, 0o600); err != nil {
				t.Fatal(err)
			}
			// The injector's own verdict on the same document.
			injErr := app.CheckProxyDefaults([]byte(tc.defaults))
			objs, err := template("defaults", "defaults", "--values", file)
			if len(tc.refused) > 0 {
				if !errors.Is(injErr, app.ErrSecretInDefaults) {
					t.Errorf("the injector accepts what the chart must refuse: %v", injErr)
				}
				if err == nil {
					t.Fatal("helm template rendered secrets into sidecar.defaults")
				}
				msg := err.Error()
				for _, want := range append([]string{"sidecar.defaults holds secrets", "mcp-oidc-proxy.io/secret"}, tc.refused...) {
					if !strings.Contains(msg, want) {
						t.Errorf("helm's error lacks %q:\n%s", want, msg)
					}
				}
				return
			}
			if injErr != nil {
				t.Fatalf("the injector refuses what the chart accepts: %v", injErr)
			}
			if err != nil {
				t.Fatal(err)
			}
			rendered := objs
			var (
				dep appsv1.Deployment
				cm  corev1.ConfigMap
			)
			rendered.into(t, "Deployment", &dep)
			rendered.into(t, "ConfigMap", &cm)
			c := dep.Spec.Template.Spec.Containers[0]
			o := kube.InjectorOptions(t, c.Args, "defaults")
			v := volumeAt(t, dep, c, filepath.Dir(o.ProxyDefaultsFile))
			if v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
				t.Fatalf("--proxy-defaults-file %s is on volume %+v, want ConfigMap %s", o.ProxyDefaultsFile, v.VolumeSource, cm.Name)
			}
			data, ok := cm.Data[filepath.Base(o.ProxyDefaultsFile)]
			if !ok {
				t.Fatalf("ConfigMap %s has no key %s (keys %v)", cm.Name, filepath.Base(o.ProxyDefaultsFile), cm.Data)
			}
			if err := app.CheckProxyDefaults([]byte(data)); err != nil {
				t.Errorf("the injector refuses the rendered defaults: %v", err)
			}
			var got map[string]any
			if err := yaml.Unmarshal([]byte(data), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, defaults) {
				t.Errorf("rendered defaults %v, want %v", got, defaults)
			}
		})
	}
}
