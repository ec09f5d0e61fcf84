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
package mcpsession
