package injector

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/test/kube"
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
		in  kube.Install
		pdb map[string]any
		ns  corev1.Namespace
	)
	decodeAll(t, "../../config/manager/deployment.yaml", &in.Deployment, &pdb)
	decodeAll(t, "../../config/manager/service.yaml", &in.Service)
	decodeAll(t, "../../config/manager/namespace.yaml", &ns)
	decodeAll(t, "../../config/rbac/service_account.yaml", &in.ServiceAccount)
	decodeAll(t, "../../config/rbac/cluster_role.yaml", &in.ClusterRole, &in.ClusterRoleBinding)
	decodeAll(t, "../../config/rbac/role.yaml", &in.Role, &in.RoleBinding)
	decodeAll(t, manifest, &in.Webhook)

	kube.CheckInstall(t, in)
	for what, got := range map[string]string{"namespace": in.Deployment.Namespace, "Service namespace": in.Service.Namespace} {
		if got != ns.Name {
			t.Errorf("%s is %q, want %q", what, got, ns.Name)
		}
	}
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
