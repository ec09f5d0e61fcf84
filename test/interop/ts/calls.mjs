// Makes many tool calls in one MCP session with the official MCP TypeScript
// SDK client (Streamable HTTP, the protocol version the SDK prefers, which
// keeps an Mcp-Session-Id session in the server's memory). test/cluster runs
// it against two replicas behind a plain Service: every call must succeed,
// wherever it lands.
//
// Usage: MCP_ACCESS_TOKEN=<token> node calls.mjs <MCP endpoint URL> [calls]
//   MCP_ACCESS_TOKEN  the bearer token sent with every request (read from the
//                     environment so that it never shows in a process list;
//                     never printed)
//   calls             how many echo tool calls to make (default 50)
// Every request goes on a new connection (Connection: close), as a load
// balancer that picks a replica per request would spread them, so the calls
// of the session land on every replica.
//
// Prints one JSON line: {"protocolVersion", "server", "session" (whether the
// server gave a session id), "calls", "ok", "errors" (at most 5 messages)}.
// Exits 0 when every call succeeded with its own text echoed back, 1
// otherwise, 2 on a usage error.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [endpointArg, callsArg = '50'] = process.argv.slice(2);
const token = process.env.MCP_ACCESS_TOKEN;
const calls = Number.parseInt(callsArg, 10);
if (!endpointArg || !token || !Number.isInteger(calls) || calls < 1 || calls > 10000) {
  console.error('usage: MCP_ACCESS_TOKEN=<token> node calls.mjs <MCP endpoint URL> [calls (1-10000)]');
  process.exit(2);
}

// newConnectionEachRequest is fetch with Connection: close, so no request
// reuses the connection (and the replica) of an earlier one.
const newConnectionEachRequest = (url, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('connection', 'close');
  return fetch(url, { ...init, headers });
};

async function main() {
  const summary = { protocolVersion: '', server: '', session: false, calls, ok: 0, errors: [] };
  const client = new Client({ name: 'test-cluster-ts', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(endpointArg), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
    fetch: newConnectionEachRequest,
    // A broken standalone stream is retried a few times, then given up.
    reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 2000, reconnectionDelayGrowFactor: 2, maxRetries: 3 },
  });
  // Errors of the transport (such as a broken standalone stream) count
  // until the session is ended on purpose.
  let ending = false;
  client.onerror = (err) => {
    if (!ending && summary.errors.length < 5) summary.errors.push(`transport: ${err?.message ?? err}`);
  };
  try {
    await client.connect(transport);
    summary.protocolVersion = transport.protocolVersion ?? '';
    summary.server = client.getServerVersion()?.name ?? '';
    summary.session = Boolean(transport.sessionId);
    for (let i = 0; i < calls; i++) {
      const text = `ts call ${i}`;
      try {
        const res = await client.callTool({ name: 'echo', arguments: { text } });
        if (res.isError) throw new Error(`tool error: ${JSON.stringify(res.content)}`);
        if (res.structuredContent?.text !== text) throw new Error(`echoed ${JSON.stringify(res.structuredContent)}, want ${JSON.stringify(text)}`);
        summary.ok++;
      } catch (err) {
        if (summary.errors.length < 5) summary.errors.push(`call ${i}: ${err?.message ?? err}`);
      }
    }
    // DELETE ends the session on the server that owns it.
    ending = true;
    await transport.terminateSession();
  } catch (err) {
    if (summary.errors.length < 5) summary.errors.push(`session: ${err?.message ?? err}`);
  } finally {
    await client.close().catch(() => {});
  }
  console.log(JSON.stringify(summary));
  return summary.ok === calls && summary.errors.length === 0;
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (err) => {
    console.error(`FAIL: ${err?.stack ?? err}`);
    process.exit(1);
  },
);
