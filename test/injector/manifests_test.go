package injector

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-injector/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/webhook"
)

// decodeAll reads the YAML documents of a manifest into the given objects,
// in order.
func decodeAll(t *testing.T, path string, into ...any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	if len(docs) != len(into) {
		t.Fatalf("%s has %d documents, want %d", path, len(docs), len(into))
	}
	for i, d := range docs {
		if err := yaml.UnmarshalStrict(d, into[i]); err != nil {
			t.Fatalf("%s document %d: %v", path, i+1, err)
		}
	}
}

// TestShippedManifestsAgree checks that the names the kustomize manifests
// (config/) use for one another match, and that the Deployment's arguments
// parse: what `kubectl apply -k config/default` installs must find itself.
func TestShippedManifestsAgree(t *testing.T) {
	var (
		dep  appsv1.Deployment
		pdb  map[string]any
		svc  corev1.Service
		sa   corev1.ServiceAccount
		cr   rbacv1.ClusterRole
		crb  rbacv1.ClusterRoleBinding
		role rbacv1.Role
		rb   rbacv1.RoleBinding
		mwc  admissionregistrationv1.MutatingWebhookConfiguration
		ns   corev1.Namespace
	)
	decodeAll(t, "../../config/manager/deployment.yaml", &dep, &pdb)
	decodeAll(t, "../../config/manager/service.yaml", &svc)
	decodeAll(t, "../../config/manager/namespace.yaml", &ns)
	decodeAll(t, "../../config/rbac/service_account.yaml", &sa)
	decodeAll(t, "../../config/rbac/cluster_role.yaml", &cr, &crb)
	decodeAll(t, "../../config/rbac/role.yaml", &role, &rb)
	decodeAll(t, manifest, &mwc)

	c := dep.Spec.Template.Spec.Containers[0]
	getenv := func(k string) string {
		if k == "POD_NAMESPACE" {
			return dep.Namespace
		}
		return ""
	}
	o, err := app.ParseOptions(c.Args, getenv)
	if err != nil {
		t.Fatalf("Deployment args %v: %v", c.Args, err)
	}
	named := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s is %q, want %q", what, got, want)
		}
	}
	named("namespace", dep.Namespace, ns.Name)
	named("Service namespace", svc.Namespace, ns.Name)
	named("ServiceAccount", dep.Spec.Template.Spec.ServiceAccountName, sa.Name)
	named("--webhook-service-name", o.WebhookServiceName, svc.Name)
	named("--webhook-config-name", o.WebhookConfigName, mwc.Name)
	for _, wh := range mwc.Webhooks {
		s := wh.ClientConfig.Service
		if s == nil {
			t.Fatalf("webhook %s has no service reference", wh.Name)
		}
		named("webhook service", s.Name, svc.Name)
		named("webhook service namespace", s.Namespace, svc.Namespace)
		if s.Path == nil || *s.Path != webhook.Path {
			t.Errorf("webhook path %v, want %s", s.Path, webhook.Path)
		}
		var port *corev1.ServicePort
		for i := range svc.Spec.Ports {
			if s.Port != nil && svc.Spec.Ports[i].Port == *s.Port {
				port = &svc.Spec.Ports[i]
			}
		}
		if port == nil {
			t.Fatalf("Service %s has no port %v for the webhook", svc.Name, s.Port)
		}
		target := port.TargetPort
		idx := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool {
			return (target.Type == intstr.String && p.Name == target.StrVal) || (target.Type == intstr.Int && p.ContainerPort == target.IntVal)
		})
		if idx < 0 || int(c.Ports[idx].ContainerPort) != o.WebhookPort {
			t.Errorf("Service targetPort %s does not reach the webhook port %d", target.String(), o.WebhookPort)
		}
		// The injector's own pods must never reach its webhook.
		sel := wh.ObjectSelector
		if sel == nil || len(sel.MatchExpressions) != 1 || !slices.Contains(sel.MatchExpressions[0].Values, dep.Spec.Template.Labels[sel.MatchExpressions[0].Key]) {
			t.Errorf("objectSelector %+v does not exclude the injector's pods (labels %v)", sel, dep.Spec.Template.Labels)
		}
	}
	if dep.Spec.Template.Labels[inject.InjectorComponentLabel] != inject.InjectorComponentValue {
		t.Errorf("injector pods lack %s=%s", inject.InjectorComponentLabel, inject.InjectorComponentValue)
	}
	for _, r := range cr.Rules {
		if slices.Contains(r.Resources, "mutatingwebhookconfigurations") && !slices.Equal(r.ResourceNames, []string{mwc.Name}) {
			t.Errorf("ClusterRole grants webhook configurations %v, want [%s]", r.ResourceNames, mwc.Name)
		}
	}
	for _, r := range role.Rules {
		if len(r.ResourceNames) > 0 && !slices.Equal(r.ResourceNames, []string{o.CertSecretName}) {
			t.Errorf("Role grants secrets %v, want [%s]", r.ResourceNames, o.CertSecretName)
		}
	}
	for what, subj := range map[string][]rbacv1.Subject{"ClusterRoleBinding": crb.Subjects, "RoleBinding": rb.Subjects} {
		if len(subj) != 1 || subj[0].Name != sa.Name || subj[0].Namespace != sa.Namespace {
			t.Errorf("%s subjects %+v, want the ServiceAccount %s/%s", what, subj, sa.Namespace, sa.Name)
		}
	}
	named("ClusterRoleBinding role", crb.RoleRef.Name, cr.Name)
	named("RoleBinding role", rb.RoleRef.Name, role.Name)
}

// TestInjectorRunsWithTheShippedRBAC installs config/rbac and runs the
// injector as its ServiceAccount: the granted rights must be enough to
// manage the certificates, publish the caBundle and admit pods.
func TestInjectorRunsWithTheShippedRBAC(t *testing.T) {
	ctx := context.Background()
	var (
		sa   corev1.ServiceAccount
		cr   rbacv1.ClusterRole
		crb  rbacv1.ClusterRoleBinding
		role rbacv1.Role
		rb   rbacv1.RoleBinding
	)
	decodeAll(t, "../../config/rbac/service_account.yaml", &sa)
	decodeAll(t, "../../config/rbac/cluster_role.yaml", &cr, &crb)
	decodeAll(t, "../../config/rbac/role.yaml", &role, &rb)
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, rbacv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := client.New(env.cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{&sa, &cr, &crb, &role, &rb} {
		if err := admin.Create(ctx, obj); err != nil {
			t.Fatalf("installing %T %s: %v", obj, obj.GetName(), err)
		}
		t.Cleanup(func() { _ = admin.Delete(context.Background(), obj) })
	}
	cfg := rest.CopyConfig(env.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + sa.Namespace + ":" + sa.Name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + sa.Namespace, "system:authenticated"},
	}
	// Sanity: the impersonated identity is really limited.
	limited, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := limited.List(ctx, &corev1.PodList{}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("listing pods as the ServiceAccount: err = %v, want forbidden", err)
	}

	inj := startInjectorAs(t, cfg, "mcp-oidc-injector-certs")
	ns := newNamespace(t, map[string]string{"team": "a"})
	pod := annotatedPod(ns, nil)
	if err := env.client.Create(ctx, pod); err != nil {
		t.Fatalf("annotated pod: %v\ninjector logs:\n%s", err, inj.logs.String())
	}
	if _, err := proxyContainer(pod); err != nil {
		t.Error(err)
	}
	if strings.Contains(inj.logs.String(), "forbidden") {
		t.Errorf("the injector hit a permission error:\n%s", inj.logs.String())
	}
}
