// Package probe carries the app's kubelet probes from the injector to the
// sidecar. The injector rewrites each app probe to an HTTP GET on the
// sidecar's admin port at Path(container, kind) and passes the original in
// the EnvVar environment variable; the sidecar (pkg/probereplay) replays it
// against localhost and answers with the app's result. Only those exact
// paths bypass authentication, and they are served on the admin port, never
// on the protected one. This package is only the encoding both sides share,
// so the injector links no replay code.
package probe

import (
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// EnvVar holds the JSON-encoded Set on the proxy container.
const EnvVar = "MCP_OIDC_PROXY_APP_PROBES"

// PathPrefix is the admin-port path prefix of rewritten probes.
const PathPrefix = "/app-probes/"

// Kind is which probe of a container.
type Kind string

const (
	Liveness  Kind = "liveness"
	Readiness Kind = "readiness"
	Startup   Kind = "startup"
)

// Path is the admin-port path that replays container's probe of kind.
func Path(container string, kind Kind) string {
	return PathPrefix + container + "/" + string(kind)
}

// Set maps Path(container, kind) to the original probe handler, with named
// ports already resolved to numbers and, in rebind mode, the protected port
// already replaced by the app's new localhost port. Only the handler and
// timeout matter to the replay; thresholds and periods stay on the
// rewritten probe, where the kubelet applies them.
type Set map[string]Probe

// Probe is one original probe.
type Probe struct {
	HTTPGet        *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *corev1.GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32                   `json:"timeoutSeconds,omitempty"`
}

// Encode renders s for EnvVar (deterministic: map keys are sorted by
// encoding/json).
func Encode(s Set) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encoding app probes: %w", err)
	}
	return string(b), nil
}

// Decode parses EnvVar's value and checks that every entry is well formed.
func Decode(v string) (Set, error) {
	var s Set
	if strings.TrimSpace(v) == "" {
		return Set{}, nil
	}
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", EnvVar, err)
	}
	for path, p := range s {
		if !strings.HasPrefix(path, PathPrefix) {
			return nil, fmt.Errorf("%s: path %q does not start with %s", EnvVar, path, PathPrefix)
		}
		n := 0
		for _, set := range []bool{p.HTTPGet != nil, p.TCPSocket != nil, p.GRPC != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return nil, fmt.Errorf("%s: probe %q must have exactly one of httpGet, tcpSocket, grpc", EnvVar, path)
		}
	}
	return s, nil
}
