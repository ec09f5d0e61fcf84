package metrics

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/audit"
)

// Option configures New.
type Option func(*options)

type options struct {
	mcpToolLabel bool
}

// WithMCPToolLabel adds the tool label to mcp_oidc_proxy_mcp_requests_total
// (audit.tool_name_label). It is a constructor option because a metric's
// labels cannot change while it is served: the setting is restart-only.
func WithMCPToolLabel(on bool) Option {
	return func(o *options) { o.mcpToolLabel = on }
}

// Label values that stand for many.
const (
	// mcpOther is the method label of a method that is not a known MCP
	// client request, and the tool label of a tool name that is not a
	// valid MCP tool name or came after the cap on distinct tools.
	mcpOther = "other"
	// mcpNotification is the method label of every notifications/* message.
	mcpNotification = "notification"
)

// mcpMethods are the client-to-server requests of the MCP specification
// (2025-06-18, 2025-11-25 with tasks, 2026-07-28): their method label is
// the method itself. The list is closed so a client cannot create series
// by inventing methods.
var mcpMethods = []string{
	"initialize", "ping",
	"tools/list", "tools/call",
	"prompts/list", "prompts/get",
	"resources/list", "resources/read", "resources/templates/list",
	"resources/subscribe", "resources/unsubscribe",
	"completion/complete", "logging/setLevel",
	"server/discover", "subscriptions/listen",
	"tasks/get", "tasks/list", "tasks/result", "tasks/cancel",
}

// mcpDecisions are the decision label values (audit's decisions); any
// other value is counted as "other".
var mcpDecisions = []string{audit.DecisionAllowed, audit.DecisionDenied, audit.DecisionUngoverned, audit.DecisionInvalid}

// Bounds on the tool label.
const (
	// maxToolNameBytes is the longest tool name the MCP specification
	// allows (2025-11-25: 1 to 128 characters of A-Z a-z 0-9 _ - .).
	maxToolNameBytes = 128
	// maxToolLabels caps the distinct tool label values: tool names come
	// from requests, so without a cap a client could create a series per
	// name it invents. The first maxToolLabels valid names seen get their
	// own series for the life of the process; later ones count as "other".
	maxToolLabels = 256
)

// MCPRequests counts MCP JSON-RPC requests by method and decision (and
// tool, when the operator opted in); it implements audit.Counter.
type MCPRequests struct {
	vec      *prometheus.CounterVec
	withTool bool
	// series[method index][decision index] are resolved once, so the
	// count without the tool label does no label lookup.
	series [][]prometheus.Counter

	mu    sync.RWMutex
	tools map[string]struct{} // distinct tool label values, up to maxToolLabels
}

var _ audit.Counter = (*MCPRequests)(nil)

func newMCPRequests(withTool bool) *MCPRequests {
	labels := []string{"method", "decision"}
	help := "MCP JSON-RPC requests by method (known MCP methods; notification for notifications/*; other for the rest) and decision (allowed, denied, ungoverned, invalid)."
	if withTool {
		labels = append(labels, "tool")
		help += " The tool label (audit.tool_name_label) is the tools/call tool name, empty for other methods, other past the first 256 distinct names."
	}
	r := &MCPRequests{
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "mcp_requests_total", Help: help,
		}, labels),
		withTool: withTool,
		tools:    map[string]struct{}{},
	}
	if !withTool {
		// Resolved lazily (a series appears when first counted), cached
		// here; the slots are filled under mu.
		r.series = make([][]prometheus.Counter, len(mcpMethods)+2)
		for i := range r.series {
			r.series[i] = make([]prometheus.Counter, len(mcpDecisions)+1)
		}
	}
	return r
}

// MCPRequests returns the counter of MCP requests (for audit.Options).
func (m *Metrics) MCPRequests() *MCPRequests { return m.mcpRequests }

// Count counts one request. method and decision are folded onto their
// bounded sets; tool (a tools/call's tool name, "" otherwise) is a label
// only when the tool label is on, and bounded then too.
func (r *MCPRequests) Count(method, decision, tool string) {
	mi, ml := methodLabel(method)
	di, dl := decisionLabel(decision)
	if r.withTool {
		r.vec.WithLabelValues(ml, dl, r.toolLabel(tool)).Inc()
		return
	}
	r.mu.RLock()
	c := r.series[mi][di]
	r.mu.RUnlock()
	if c == nil {
		r.mu.Lock()
		if c = r.series[mi][di]; c == nil {
			c = r.vec.WithLabelValues(ml, dl)
			r.series[mi][di] = c
		}
		r.mu.Unlock()
	}
	c.Inc()
}

// methodLabel returns the method's label and its index in series.
func methodLabel(method string) (int, string) {
	for i, m := range mcpMethods {
		if m == method {
			return i, m
		}
	}
	if strings.HasPrefix(method, "notifications/") {
		return len(mcpMethods), mcpNotification
	}
	return len(mcpMethods) + 1, mcpOther
}

// decisionLabel returns the decision's label and its index in series.
func decisionLabel(decision string) (int, string) {
	for i, d := range mcpDecisions {
		if d == decision {
			return i, d
		}
	}
	return len(mcpDecisions), mcpOther
}

// toolLabel bounds a tool name: "" stays "" (not a tools/call), a name
// that is not a valid MCP tool name is "other", and so is any new name once
// maxToolLabels distinct names have been seen.
func (r *MCPRequests) toolLabel(tool string) string {
	if tool == "" {
		return ""
	}
	if !validToolName(tool) {
		return mcpOther
	}
	r.mu.RLock()
	_, seen := r.tools[tool]
	r.mu.RUnlock()
	if seen {
		return tool
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, seen := r.tools[tool]; seen {
		return tool
	}
	if len(r.tools) >= maxToolLabels {
		return mcpOther
	}
	r.tools[tool] = struct{}{}
	return tool
}

// validToolName reports whether name is 1 to 128 bytes of the characters
// the MCP specification allows in tool names.
func validToolName(name string) bool {
	if len(name) == 0 || len(name) > maxToolNameBytes {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}
