// Package e2e holds the end-to-end suite of the sidecar: real proxy replicas
// (pkg/server configured through pkg/config exactly as a user would), a real
// redis-server, a real OpenID provider (zitadel OP) and a real MCP server and
// client (official Go SDK). It has no non-test code; this file only gives the
// package its documentation.
package e2e
