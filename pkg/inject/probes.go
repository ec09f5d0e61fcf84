package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/probe"
)

// kindProbe is one of a container's probes, addressed so it can be replaced.
type kindProbe struct {
	kind  probe.Kind
	probe **corev1.Probe
}

func probesOf(c *corev1.Container) []kindProbe {
	return []kindProbe{
		{probe.Liveness, &c.LivenessProbe},
		{probe.Readiness, &c.ReadinessProbe},
		{probe.Startup, &c.StartupProbe},
	}
}

// network is true for the probes the kubelet sends over the pod network,
// which authentication (rebind) or the redirect would intercept. Exec probes
// run inside the container and are left alone.
func network(p *corev1.Probe) bool {
	return p != nil && (p.HTTPGet != nil || p.TCPSocket != nil || p.GRPC != nil)
}

// collectProbes records the original network probes of every app container,
// ready for the sidecar to replay against localhost: named ports resolved,
// hosts cleared, and in rebind mode the protected port moved to the app's
// new port.
func collectProbes(d *denials, pod *corev1.Pod, mode Mode, port, appPort int32) probe.Set {
	set := probe.Set{}
	remap := func(n int32) int32 {
		if mode == ModeRebind && n == port {
			return appPort
		}
		return n
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, kp := range probesOf(c) {
			pr := *kp.probe
			if !network(pr) {
				continue
			}
			orig := probe.Probe{TimeoutSeconds: pr.TimeoutSeconds}
			switch {
			case pr.HTTPGet != nil:
				n, ok := probePort(d, c, kp.kind, pr.HTTPGet.Port)
				if !ok {
					continue
				}
				orig.HTTPGet = httpGetOf(pr.HTTPGet, remap(n))
			case pr.TCPSocket != nil:
				n, ok := probePort(d, c, kp.kind, pr.TCPSocket.Port)
				if !ok {
					continue
				}
				orig.TCPSocket = &probe.TCPSocketAction{Port: probe.PortNumber(remap(n))}
			default:
				orig.GRPC = grpcOf(pr.GRPC, remap(pr.GRPC.Port))
			}
			set[probe.Path(c.Name, kp.kind)] = orig
		}
	}
	return set
}

// httpGetOf converts h to the hand-over encoding with the resolved port and
// no host (the replay always targets the app on loopback).
func httpGetOf(h *corev1.HTTPGetAction, port int32) *probe.HTTPGetAction {
	out := &probe.HTTPGetAction{Path: h.Path, Port: probe.PortNumber(port), Scheme: string(h.Scheme)}
	for _, hh := range h.HTTPHeaders {
		out.HTTPHeaders = append(out.HTTPHeaders, probe.HTTPHeader{Name: hh.Name, Value: hh.Value})
	}
	if h.Protocol != nil {
		p := string(*h.Protocol)
		out.Protocol = &p
	}
	return out
}

// grpcOf converts g to the hand-over encoding with port.
func grpcOf(g *corev1.GRPCAction, port int32) *probe.GRPCAction {
	out := &probe.GRPCAction{Port: port}
	if g.Service != nil {
		svc := *g.Service
		out.Service = &svc
	}
	return out
}

// probePort resolves a probe's port against the container's own ports, as
// the kubelet does.
func probePort(d *denials, c *corev1.Container, kind probe.Kind, p intstr.IntOrString) (int32, bool) {
	if p.Type == intstr.Int {
		return p.IntVal, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
	}
	d.add("", fmt.Sprintf("the %s probe of container %q uses port %q, which the container does not declare", kind, c.Name, p.StrVal),
		"declare the named port in the container's ports, or use the port number in the probe")
	return 0, false
}

// rewriteProbes points the container's network probes at the sidecar's
// admin port, keeping the kubelet's timing and thresholds.
func rewriteProbes(c *corev1.Container) {
	for _, kp := range probesOf(c) {
		pr := *kp.probe
		if !network(pr) {
			continue
		}
		n := pr.DeepCopy()
		n.ProbeHandler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path:   probe.Path(c.Name, kp.kind),
			Port:   intstr.FromInt32(AdminPort),
			Scheme: corev1.URISchemeHTTP,
		}}
		*kp.probe = n
	}
}
