// Package attacks is the end-to-end attack table: one table-driven test
// (TestAttacks) that sends each known attack to real proxy replicas (test/stack)
// in front of the official-SDK MCP server, with the in-process OpenID
// provider and a real Redis, and asserts the exact rejection and that the
// MCP server never saw the request. The table lives in cases_test.go, its
// rows for the holes of issue 7 (one group per hole) in holes_test.go, the
// rows against the tool policy of issue 10 (replica P) in policy_test.go;
// the harness that runs it and the fixture it runs against in
// harness_test.go.
package attacks
