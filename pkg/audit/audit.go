// Package audit writes the audit trail: one structured line for every MCP
// JSON-RPC request that passes the proxy, on its own logger so operators
// can route it apart from the operational log.
package audit

import "time"

// Decisions, as logged and as the decision label of
// mcp_oidc_proxy_mcp_requests_total.
const (
	// DecisionAllowed: a governed request a rule (or the default) allowed.
	DecisionAllowed = "allowed"
	// DecisionDenied: a governed request the policy denied.
	DecisionDenied = "denied"
	// DecisionUngoverned: a method the policy does not govern (initialize,
	// tools/list, ping, ...), forwarded.
	DecisionUngoverned = "ungoverned"
	// DecisionInvalid: refused before any decision (body too large,
	// unparsable, Mcp-Method/Mcp-Name disagreeing with the body).
	DecisionInvalid = "invalid"
)

// Entry is one JSON-RPC request as audited.
type Entry struct {
	Time      time.Time
	RequestID string
	// SessionID is the request's Mcp-Session-Id ("" for 2026-07-28
	// requests, which carry none).
	SessionID string
	Subject   string
	Email     string
	ClientID  string
	Method    string
	// Name is the tool or prompt name, or the resource URI.
	Name     string
	Decision string
	// Rule names the policy rule that decided ("" when none did).
	Rule string
	// ErrorCode is the JSON-RPC error code of the answer, if it was an
	// error (from the policy or the MCP server); nil on success.
	ErrorCode *int
	Duration  time.Duration
	// Arguments are the request's arguments; written only when the
	// operator turned arguments on, and then redacted.
	Arguments map[string]any
}
