package proxy

import (
	"net/http"
	"strings"
)

// websocketToken is the only protocol upgrade the proxy tunnels (RFC 6455).
const websocketToken = "websocket"

// onlyWebSocketUpgrade restricts the protocol upgrade ReverseProxy kept in h
// (it keeps whatever "Upgrade" the client asked for alongside "Connection:
// upgrade") to WebSocket. After a 101 the proxy only copies bytes, so any
// other protocol would hand the client a raw tunnel to the upstream: an
// h2c or custom-protocol upstream would then read further requests, with
// whatever identity headers the client writes into them, that the proxy
// never sees. A request offering WebSocket (in any case, also inside a list)
// is forwarded with exactly "Upgrade: websocket". Any other upgrade offer is
// dropped and the request forwarded as plain HTTP/1.1, so clients that offer
// h2c opportunistically (curl --http2 over http://) keep working; an
// upstream that switches protocols anyway gets a 502 from ReverseProxy,
// which checks the 101 against the (now absent) offer.
func onlyWebSocketUpgrade(h http.Header) {
	up, ok := h["Upgrade"]
	if !ok {
		return
	}
	if len(up) == 1 && offersWebSocket(up[0]) {
		if up[0] != websocketToken {
			h["Upgrade"] = []string{websocketToken}
		}
		return
	}
	// Connection carries nothing but "Upgrade" at this point: ReverseProxy
	// removed every hop-by-hop header and re-added just that token.
	delete(h, "Upgrade")
	delete(h, "Connection")
}

// offersWebSocket reports whether the Upgrade field value v (RFC 9110
// §7.8: a comma-separated list of protocol[/version], empty elements
// allowed) lists the websocket protocol without a version.
func offersWebSocket(v string) bool {
	for elem := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.Trim(elem, " \t"), websocketToken) {
			return true
		}
	}
	return false
}
