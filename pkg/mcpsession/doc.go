// Package mcpsession lets MCP sessions of the protocol versions that keep
// one (2025-11-25 and earlier: Mcp-Session-Id, state in the MCP server's
// memory) work behind a plain Service with several replicas and no session
// affinity.
//
// The MCP server's session id never reaches the client. The sidecar seals
// it (AES-GCM, with a key derived once from the shared cookie secret) into
// the id the client sees, together with the address of the replica that
// owns the session, the user's issuer and subject and an expiry. Any
// replica can open any id without a store lookup:
//   - an id that does not open, has expired or belongs to another user is
//     an unknown session (404, as the MCP transport specifies), so a
//     forged, tampered or stolen id is useless;
//   - an id this replica owns is served here with the MCP server's own id;
//   - an id another replica owns is forwarded there, once (never a second
//     hop, never to itself), to that replica's protected port with the
//     caller's own credentials, so that replica authenticates the caller
//     again and no trust between replicas is needed;
//   - when the owner is gone, the client gets 404 and starts a new
//     session, or, with initialize replay on, this replica starts the
//     session again on its own MCP server and the client does not notice.
//
// Requests of the stateless protocol (2026-07-28) carry no session and are
// served where they land.
//
// In the request chain, Router.KeepCredentials goes before authentication
// (it remembers the Authorization and Cookie headers a hop must carry) and
// Router.Wrap after it (it needs the caller's identity). A hop is bounded:
// connecting to the owner (TCP and TLS) must succeed within the hop
// timeout, after which the owner gets as long as a local request would (a
// tool may take minutes before its first byte). An owner that cannot be
// reached is skipped for 30 seconds. Only a request that never reached the
// owner whole is served another way (replayed or answered 404); one the
// owner may have acted on when the connection broke gets 404, so it is
// never run twice.
//
// Initialize replay keeps each session's initialize request in the
// session store, under a hash of the client's id, for the id's lifetime.
// When the owner is gone, the replica that gets the next request sends it
// and notifications/initialized to its own MCP server (once per session on
// that replica, however many requests arrive at the same time), stores a
// rebinding of the client's id to the new session, and serves the request;
// the client keeps its id. What the gone MCP server kept in memory for the
// session (subscriptions, resumable streams, tool state) is not carried
// over: only the handshake is replayed. Two replicas replaying the same
// session at the same instant each start one; the last rebinding wins.
package mcpsession
