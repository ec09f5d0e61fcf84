package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/inject"
)

// appSelector selects the README's MCP server pods.
const appSelector = "app.kubernetes.io/name=mcp-server"

// appDeployment is what step 2 deployed: where the Service and the pods
// answer.
type appDeployment struct {
	ns      string
	service string // ClusterIP:port
	podPort int    // the protected pod port
	pods    []corev1.Pod
	appPort int // rebind: the app's localhost port
	rebind  bool
}

// podAddrs are the pods' protected addresses, podIP:port.
func (a appDeployment) podAddrs() []string {
	var out []string
	for _, p := range a.pods {
		out = append(out, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(a.podPort)))
	}
	return out
}

// Step 1: the README's helm install into a restricted namespace; the
// injector becomes Ready through the kubelet's probes and publishes a
// caBundle that trusts the certificate it serves.
func (s *suite) stepInstall(t *testing.T) {
	s.diagnoseOnFailure(t, s.injectorNS)
	s.readmeStep(t, "install-injector")
	s.readmeStep(t, "wait-injector")

	ctx, cancel := apiCtx()
	defer cancel()
	ns, err := s.kube.CoreV1().Namespaces().Get(ctx, s.injectorNS, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace %s enforces Pod Security %q, want restricted", s.injectorNS, got)
	}
	dep, err := s.kube.AppsV1().Deployments(s.injectorNS).Get(ctx, release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := s.waitPodsReady(t, s.injectorNS, "app.kubernetes.io/name=mcp-oidc-injector,app.kubernetes.io/instance="+release, int(*dep.Spec.Replicas))
	for _, p := range pods {
		for _, c := range p.Spec.Containers {
			// Ready came from the kubelet running these probes.
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil {
				t.Errorf("injector pod %s container %s has no HTTP readiness probe; Ready would not prove the webhook serves", p.Name, c.Name)
			}
		}
	}
	t.Logf("injector: %d pods Ready through the kubelet's probes", len(pods))

	mwc, err := s.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) == 0 {
		t.Fatalf("MutatingWebhookConfiguration %s has no webhooks", release)
	}
	for _, wh := range mwc.Webhooks {
		pool := x509.NewCertPool()
		if len(wh.ClientConfig.CABundle) == 0 || !pool.AppendCertsFromPEM(wh.ClientConfig.CABundle) {
			t.Fatalf("webhook %s: caBundle is empty or holds no PEM certificate; the self-managed mode must publish it", wh.Name)
		}
		ref := wh.ClientConfig.Service
		if ref == nil {
			t.Fatalf("webhook %s calls a URL, not the injector's Service", wh.Name)
		}
		svc, err := s.kube.CoreV1().Services(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		port := int32(443)
		if ref.Port != nil {
			port = *ref.Port
		}
		// What the API server does: TLS to the Service, verified with the
		// published bundle for the Service's DNS name.
		// kube-proxy may take a moment to program a new Service.
		addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(port)))
		eventually(t, serviceTimeout, fmt.Sprintf("webhook %s: TLS to the Service %s verified with the published caBundle", wh.Name, addr), func() error {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: apiTimeout}, "tcp", addr, &tls.Config{
				RootCAs:    pool,
				ServerName: ref.Name + "." + ref.Namespace + ".svc",
				MinVersion: tls.VersionTLS12,
			})
			if err != nil {
				return err
			}
			return conn.Close()
		})
		if wh.FailurePolicy == nil || *wh.FailurePolicy != "Fail" {
			t.Errorf("webhook %s failurePolicy = %v, want Fail", wh.Name, wh.FailurePolicy)
		}
	}
}

// Step 2: the README's Secret, ConfigMap and Deployment; after the
// annotation both pods carry the sidecar and become Ready, so the kubelet
// ran the rewritten probes through it.
func (s *suite) stepDeploy(t *testing.T) {
	s.diagnoseOnFailure(t, s.appNS)
	s.readmeStep(t, "app-namespace")
	s.namespaces = append(s.namespaces, s.appNS)
	for _, name := range []string{"app-secret", "app-config", "app-deploy", "annotate", "wait-app"} {
		s.readmeStep(t, name)
	}
	pods := s.waitPodsReady(t, s.appNS, appSelector, 2)
	s.readmeStep(t, "troubleshoot")

	a := appDeployment{ns: s.appNS, pods: pods}
	for _, p := range pods {
		checkInjected(t, &p)
		if restarts(&p) != 0 {
			t.Errorf("pod %s: %s; want no restarts", p.Name, podState(&p))
		}
		port, rebind, appPort := protectedPort(t, &p)
		a.podPort, a.rebind, a.appPort = port, rebind, appPort
	}
	ctx, cancel := apiCtx()
	defer cancel()
	svc, err := s.kube.CoreV1().Services(s.appNS).Get(ctx, "mcp-server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.service = net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
	s.app = a
	s.ingress.setTarget(a.service)
	s.waitServiceServes(t)
	t.Logf("MCP server: Service %s (%s), external URL %s, pods %v, rebind=%v", a.service, s.clusterURL, s.externalURL, a.podAddrs(), a.rebind)
}

// checkInjected asserts that the pod runs the sidecar and that the app's
// probes were rewritten to the sidecar's admin port, so the pod's Ready
// means the kubelet ran them through the sidecar.
func checkInjected(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if p.Annotations[inject.AnnotationStatus] == "" {
		t.Errorf("pod %s has no %s annotation: not injected", p.Name, inject.AnnotationStatus)
	}
	var sidecar *corev1.Container
	for i, c := range p.Spec.InitContainers {
		if c.Name == inject.ProxyContainerName {
			sidecar = &p.Spec.InitContainers[i]
		}
	}
	for i, c := range p.Spec.Containers {
		if c.Name == inject.ProxyContainerName {
			sidecar = &p.Spec.Containers[i]
		}
	}
	if sidecar == nil {
		t.Fatalf("pod %s has no %s container", p.Name, inject.ProxyContainerName)
	}
	for _, c := range p.Spec.Containers {
		if c.Name == inject.ProxyContainerName {
			continue
		}
		for kind, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
			if probe == nil {
				continue
			}
			want := fmt.Sprintf("/app-probes/%s/%s", c.Name, kind)
			if probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.IntValue() != inject.AdminPort {
				t.Errorf("pod %s container %s %s probe = %+v, want GET %s on port %d (rewritten to the sidecar)", p.Name, c.Name, kind, probe.ProbeHandler, want, inject.AdminPort)
			}
		}
	}
}

// protectedPort reads from the pod which port the sidecar protects and
// whether it runs in rebind mode (the app then listens on appPort on
// localhost).
func protectedPort(t *testing.T, p *corev1.Pod) (port int, rebind bool, appPort int) {
	t.Helper()
	mode := p.Annotations[inject.Prefix+"mode"]
	rebind = mode == "rebind"
	want := p.Annotations[inject.Prefix+"port"]
	for _, c := range p.Spec.Containers {
		if c.Name == inject.ProxyContainerName || port != 0 {
			continue
		}
		for _, cp := range c.Ports {
			if want == "" || want == cp.Name || want == strconv.Itoa(int(cp.ContainerPort)) {
				port = int(cp.ContainerPort)
				break
			}
		}
	}
	if port == 0 {
		t.Fatalf("pod %s: cannot tell the protected port from its containers' ports", p.Name)
	}
	appPort = inject.DefaultRebindAppPort
	if v := p.Annotations[inject.Prefix+"rebind-app-port"]; v != "" {
		appPort, _ = strconv.Atoi(v)
	}
	return port, rebind, appPort
}
