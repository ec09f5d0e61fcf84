// Package kube holds what the suites that run against a real kube-apiserver
// (test/injector, test/helm) share: starting the API server, waiting on a
// condition, and checking that the objects of an injector install name one
// another correctly, whichever way (kustomize or Helm) produced them.
package kube

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/cmd/mcp-oidc-injector/app"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/webhook"
)

// StartAPIServer starts kube-apiserver and etcd through envtest from the
// binaries hack/envtest-bins.sh builds. stop shuts both down.
func StartAPIServer() (cfg *rest.Config, stop func(), err error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, nil, errors.New(`KUBEBUILDER_ASSETS is not set: export KUBEBUILDER_ASSETS="$(hack/envtest-bins.sh)"`)
	}
	te := &envtest.Environment{}
	cfg, err = te.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting envtest: %w", err)
	}
	return cfg, func() { _ = te.Stop() }, nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// InjectorOptions parses the injector's arguments as the binary does in
// a pod of namespace (POD_NAMESPACE from the downward API), failing the test
// if they do not parse.
func InjectorOptions(t testing.TB, args []string, namespace string) app.Options {
	t.Helper()
	o, err := app.ParseOptions(args, func(k string) string {
		if k == "POD_NAMESPACE" {
			return namespace
		}
		return ""
	})
	if err != nil {
		t.Fatalf("injector args %v: %v", args, err)
	}
	return o
}

// Install is the set of objects an injector install consists of.
type Install struct {
	Deployment         appsv1.Deployment
	Service            corev1.Service
	ServiceAccount     corev1.ServiceAccount
	ClusterRole        rbacv1.ClusterRole
	ClusterRoleBinding rbacv1.ClusterRoleBinding
	Role               rbacv1.Role
	RoleBinding        rbacv1.RoleBinding
	Webhook            admissionregistrationv1.MutatingWebhookConfiguration
}

// CheckInstall checks that the objects of in find one another: the
// injector's arguments parse and name the Service and webhook configuration,
// RBAC is granted on exactly those names to the injector's ServiceAccount,
// the webhook reaches the injector's port through the Service, the Service
// selects the injector's pods, and the injector's own pods never reach its
// webhook. It returns the parsed injector options for further checks.
func CheckInstall(t testing.TB, in Install) app.Options {
	t.Helper()
	dep, svc, sa := in.Deployment, in.Service, in.ServiceAccount
	c := dep.Spec.Template.Spec.Containers[0]
	o := InjectorOptions(t, c.Args, dep.Namespace)
	named := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s is %q, want %q", what, got, want)
		}
	}
	named("ServiceAccount", dep.Spec.Template.Spec.ServiceAccountName, sa.Name)
	named("--webhook-service-name", o.WebhookServiceName, svc.Name)
	named("--webhook-config-name", o.WebhookConfigName, in.Webhook.Name)
	if dep.Spec.Template.Labels[inject.InjectorComponentLabel] != inject.InjectorComponentValue {
		t.Errorf("injector pods lack %s=%s", inject.InjectorComponentLabel, inject.InjectorComponentValue)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s, the injector pods have %q", k, v, dep.Spec.Template.Labels[k])
		}
	}

	for _, r := range in.ClusterRole.Rules {
		if slices.Contains(r.Resources, "mutatingwebhookconfigurations") && !slices.Equal(r.ResourceNames, []string{in.Webhook.Name}) {
			t.Errorf("ClusterRole grants webhook configurations %v, want [%s]", r.ResourceNames, in.Webhook.Name)
		}
	}
	for _, r := range in.Role.Rules {
		if len(r.ResourceNames) > 0 && !slices.Equal(r.ResourceNames, []string{o.CertSecretName}) {
			t.Errorf("Role grants secrets %v, want [%s]", r.ResourceNames, o.CertSecretName)
		}
	}
	for what, subj := range map[string][]rbacv1.Subject{"ClusterRoleBinding": in.ClusterRoleBinding.Subjects, "RoleBinding": in.RoleBinding.Subjects} {
		if len(subj) != 1 || subj[0].Name != sa.Name || subj[0].Namespace != sa.Namespace {
			t.Errorf("%s subjects %+v, want the ServiceAccount %s/%s", what, subj, sa.Namespace, sa.Name)
		}
	}
	named("ClusterRoleBinding role", in.ClusterRoleBinding.RoleRef.Name, in.ClusterRole.Name)
	named("RoleBinding role", in.RoleBinding.RoleRef.Name, in.Role.Name)

	for _, wh := range in.Webhook.Webhooks {
		s := wh.ClientConfig.Service
		if s == nil {
			t.Fatalf("webhook %s has no service reference", wh.Name)
		}
		named("webhook service", s.Name, svc.Name)
		named("webhook service namespace", s.Namespace, svc.Namespace)
		if s.Path == nil || *s.Path != webhook.Path {
			t.Errorf("webhook path %v, want %s", s.Path, webhook.Path)
		}
		i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return s.Port != nil && p.Port == *s.Port })
		if i < 0 {
			t.Fatalf("Service %s has no port %v for the webhook", svc.Name, s.Port)
		}
		target := svc.Spec.Ports[i].TargetPort
		j := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool {
			return (target.Type == intstr.String && p.Name == target.StrVal) || (target.Type == intstr.Int && p.ContainerPort == target.IntVal)
		})
		if j < 0 || int(c.Ports[j].ContainerPort) != o.WebhookPort {
			t.Errorf("Service targetPort %s does not reach the webhook port %d", target.String(), o.WebhookPort)
		}
		// The injector's own pods must never reach its webhook.
		sel := wh.ObjectSelector
		if sel == nil || len(sel.MatchExpressions) != 1 || !slices.Contains(sel.MatchExpressions[0].Values, dep.Spec.Template.Labels[sel.MatchExpressions[0].Key]) {
			t.Errorf("objectSelector %+v does not exclude the injector's pods (labels %v)", sel, dep.Spec.Template.Labels)
		}
	}
	return o
}
