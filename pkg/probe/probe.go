// Package probe carries the app's kubelet probes from the injector to the
// sidecar. The injector rewrites each app probe to an HTTP GET on the
// sidecar's admin port at Path(container, kind) and passes the original in
// the EnvVar environment variable; the sidecar (pkg/probereplay) replays it
// against localhost and answers with the app's result. Only those exact
// paths bypass authentication, and they are served on the admin port, never
// on the protected one. This package is only the encoding both sides share,
// so the injector links no replay code; and it declares its own types,
// which encode exactly as the Kubernetes API's probe handlers do, so the
// sidecar links no Kubernetes API packages (pkg/inject converts).
package probe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
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
	HTTPGet        *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32            `json:"timeoutSeconds,omitempty"`
}

// The handler types below mirror k8s.io/api/core/v1's field for field,
// with the same JSON names, so the encoding is the one earlier injectors
// wrote with the Kubernetes types themselves (pkg/inject tests that the two
// encode alike).

// HTTPGetAction is core/v1 HTTPGetAction.
type HTTPGetAction struct {
	Path        string       `json:"path,omitempty"`
	Port        Port         `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
	// Protocol is carried for completeness; the replay speaks HTTP/1.1.
	Protocol *string `json:"protocol,omitempty"`
}

// HTTPHeader is core/v1 HTTPHeader.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TCPSocketAction is core/v1 TCPSocketAction.
type TCPSocketAction struct {
	Port Port   `json:"port"`
	Host string `json:"host,omitempty"`
}

// GRPCAction is core/v1 GRPCAction.
type GRPCAction struct {
	Port    int32   `json:"port"`
	Service *string `json:"service"`
}

// Port is a probe's port as the Kubernetes API writes it (an IntOrString):
// a JSON number, or a JSON string naming a container port. The injector
// resolves names to numbers before encoding, so a Name reaching the sidecar
// is a bug the replay reports.
type Port struct {
	Number int32
	Name   string
}

// PortNumber is the port numbered n.
func PortNumber(n int32) Port { return Port{Number: n} }

// MarshalJSON writes a named port as a string and any other as a number.
func (p Port) MarshalJSON() ([]byte, error) {
	if p.Name != "" {
		return json.Marshal(p.Name)
	}
	return strconv.AppendInt(nil, int64(p.Number), 10), nil
}

// UnmarshalJSON reads a string as a name and anything else as a number, as
// the Kubernetes IntOrString does.
func (p *Port) UnmarshalJSON(b []byte) error {
	*p = Port{}
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &p.Name)
	}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	return json.Unmarshal(b, &p.Number)
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
