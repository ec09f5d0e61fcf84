// Package interop runs MCP clients other than the Go SDK against the proxy.
// Claude Code, mcp-remote and the MCP Inspector all authorize through the
// official TypeScript SDK's OAuth client, so the suite drives that client
// (test/interop/ts, pinned by its package-lock.json) through the façade's
// whole flow: metadata discovery, dynamic registration, login, consent, code
// exchange, MCP calls and refresh. It needs node and npm on PATH and the npm
// registry (or a warm npm cache). ts/calls.mjs, many tool calls in one
// session with a given token, is run by test/cluster against two replicas
// behind a Service. It has no non-test code; this file only gives the
// package its documentation.
package interop
