// Package fault proves the failure promises of DESIGN.md ("Failure
// behaviour") against real processes on loopback: redis-server paused,
// killed and restarted, a live Sentinel failover, concurrent refreshes on
// three replicas, the OpenID provider going away, SIGTERM to the built
// sidecar with open streams, and slow or oversized input. Each test states
// the bound it promises in a comment and in its assertion messages, and
// logs the value it measured.
package fault
