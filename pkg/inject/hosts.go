package inject

import (
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/config"
)

// DefaultAllowedHosts are the host names an injected sidecar accepts when
// the cluster defaults name neither external_url nor allowed_hosts: the
// names of the pod's Services ("<svc>.<namespace>.svc",
// "<svc>.<namespace>.svc.cluster.local") and the pod IP, which is how a pod
// without a public URL is reached. Any other Host gets 421, the DNS
// rebinding protection of the MCP transport spec. The kubelet expands
// $(POD_NAMESPACE) and $(POD_IP) from the downward-API variables the
// injector defines before the defaults. A pod ConfigMap that sets
// allowed_hosts replaces this list; one that sets external_url adds its host
// to it. Bare and short service names ("svc", "svc.<namespace>") and other
// cluster domains need an allowed_hosts entry: "*.<namespace>" is not a
// default because a namespace named like a public top-level domain ("dev",
// "app") would then admit every domain under it, which is exactly what a
// DNS rebinding page uses.
var DefaultAllowedHosts = []string{
	"*.$(" + config.PodNamespaceEnv + ").svc",
	"*.$(" + config.PodNamespaceEnv + ").svc.cluster.local",
	"$(" + config.PodIPEnv + ")",
}

// clusterDefaults returns the sidecar's cluster defaults: the operator's
// (--proxy-defaults-file), plus DefaultAllowedHosts unless they set
// allowed_hosts or external_url themselves.
func clusterDefaults(operator string) (string, error) {
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(operator), &doc); err != nil {
		return "", fmt.Errorf("parsing the proxy defaults: %w", err)
	}
	for _, key := range []string{allowedHostsSetting().Path, externalURLSetting().Path} {
		if v, ok := doc[key]; ok && v != nil && v != "" {
			return operator, nil
		}
	}
	if doc == nil {
		doc = map[string]any{}
	}
	doc[allowedHostsSetting().Path] = DefaultAllowedHosts
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("encoding the proxy defaults: %w", err)
	}
	return string(out), nil
}
