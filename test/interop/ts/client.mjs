// Runs the official MCP TypeScript SDK client through mcp-oidc-proxy's OAuth
// façade: discovery, dynamic client registration, the user's browser part
// (proxy authorize, provider login, consent; see browser.mjs), the code
// exchange, MCP calls, and refreshes.
//
// Usage: node client.mjs <proxy base URL> <provider base URL> [user] [password]
// Prints one line per step; the last line is "OK <e-mail whoami saw>". Exits 1 on
// any failure.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  UnauthorizedError,
  discoverOAuthProtectedResourceMetadata,
  discoverAuthorizationServerMetadata,
  refreshAuthorization,
  selectResourceURL,
} from '@modelcontextprotocol/sdk/client/auth.js';
import { checkResourceAllowed, resourceUrlFromServerUrl } from '@modelcontextprotocol/sdk/shared/auth-utils.js';
import { browse } from './browser.mjs';

const [proxyArg, providerArg, user = 'demo@example.com', password = 'demo-password'] = process.argv.slice(2);
if (!proxyArg || !providerArg) {
  console.error('usage: node client.mjs <proxy base URL> <provider base URL> [user] [password]');
  process.exit(2);
}
const proxy = new URL(proxyArg);
const endpoint = new URL('/mcp', proxy);
// Nothing listens there: the scripted browser stops at the redirect and reads
// the code, as a native app's loopback listener would.
const redirectUri = 'http://127.0.0.1:33418/callback';

// TS_INTEROP_CLIENT_METADATA (JSON) overrides registration metadata, to try
// what other clients register (a confidential client, a scope).
const extraMetadata = JSON.parse(process.env.TS_INTEROP_CLIENT_METADATA ?? '{}');
// TS_INTEROP_REPEAT_SCOPE=1 makes refreshes repeat the registered scope, as
// mcp-remote does (its addClientAuthentication hook, a workaround for Entra
// ID); public clients only.
const repeatScope = process.env.TS_INTEROP_REPEAT_SCOPE === '1';
const step = (msg) => console.log(`step: ${msg}`);
const fail = (msg) => {
  throw new Error(msg);
};

// memoryProvider is an OAuthClientProvider that keeps everything in memory
// and runs the browser part in redirectToAuthorization.
class MemoryProvider {
  constructor() {
    this.pendingCode = undefined;
    this.info = undefined;
    this.toks = undefined;
    this.verifier = undefined;
    this.stateValue = undefined;
    this.authorizations = 0;
  }
  get redirectUrl() {
    return redirectUri;
  }
  get clientMetadata() {
    return {
      client_name: 'ts-sdk-interop',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...extraMetadata,
    };
  }
  state() {
    this.stateValue = Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
    return this.stateValue;
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    step(`registered client (client_id ${info.client_id.length} chars, auth method ${info.token_endpoint_auth_method ?? 'unset'})`);
    this.info = info;
  }
  tokens() {
    return this.toks;
  }
  saveTokens(tokens) {
    step(`saved tokens (type ${tokens.token_type}, expires_in ${tokens.expires_in}, refresh token ${tokens.refresh_token ? 'yes' : 'no'}, scope ${JSON.stringify(tokens.scope ?? '')})`);
    this.toks = tokens;
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  async redirectToAuthorization(url) {
    step(`redirectToAuthorization ${url.origin}${url.pathname} resource=${url.searchParams.get('resource')} scope=${JSON.stringify(url.searchParams.get('scope') ?? '')}`);
    const { params, loggedIn } = await browse(url, { redirectUri, provider: providerArg, user, password, log: step });
    if (!loggedIn) fail('the browser did not log in at the provider');
    if (params.get('error')) fail(`authorization refused: ${params.get('error')}: ${params.get('error_description')}`);
    if (params.get('state') !== this.stateValue) fail('state mismatch');
    if (params.get('iss') && new URL(params.get('iss')).origin !== proxy.origin) fail(`unexpected iss ${params.get('iss')}`);
    if (!params.get('code')) fail('no code');
    this.pendingCode = params.get('code');
    this.authorizations++;
  }
  get addClientAuthentication() {
    if (!repeatScope) return undefined;
    return (headers, params) => {
      params.set('client_id', this.info.client_id);
      if (params.get('grant_type') === 'refresh_token' && this.clientMetadata.scope) {
        params.set('scope', this.clientMetadata.scope);
        step(`refresh repeats scope ${JSON.stringify(this.clientMetadata.scope)}`);
      }
    };
  }
  invalidateCredentials(scope) {
    step(`invalidateCredentials(${scope})`);
    if (scope === 'all' || scope === 'client') this.info = undefined;
    if (scope === 'all' || scope === 'tokens') this.toks = undefined;
    if (scope === 'all' || scope === 'verifier') this.verifier = undefined;
  }
}

async function discovery() {
  for (const typed of [`${proxy.origin}/mcp`, `${proxy.origin}/mcp/`]) {
    const prm = await discoverOAuthProtectedResourceMetadata(new URL(typed));
    step(`discovery(${typed}): protected resource ${prm.resource}, authorization servers ${prm.authorization_servers}`);
    const requested = resourceUrlFromServerUrl(new URL(typed));
    if (!checkResourceAllowed({ requestedResource: requested, configuredResource: prm.resource })) {
      fail(`checkResourceAllowed(${requested.href}, ${prm.resource}) = false`);
    }
    const selected = await selectResourceURL(new URL(typed), {}, prm);
    step(`discovery(${typed}): resource check ok (selected ${selected.href})`);
    const asm = await discoverAuthorizationServerMetadata(prm.authorization_servers[0]);
    if (!asm) fail(`no authorization server metadata at ${prm.authorization_servers[0]}`);
    step(`discovery(${typed}): authorization server ${asm.issuer}, registration ${asm.registration_endpoint}`);
  }
}

async function connect(authProvider, url = endpoint) {
  const client = new Client({ name: 'ts-sdk-interop', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(url, { authProvider });
  await client.connect(transport);
  return { client, transport };
}

async function whoami(client) {
  const res = await client.callTool({ name: 'whoami' });
  if (res.isError) fail(`whoami failed: ${JSON.stringify(res.content)}`);
  const out = res.structuredContent;
  if (!out?.headers) fail(`whoami without structured headers: ${JSON.stringify(res)}`);
  if (out.leaked?.length) fail(`credentials leaked to the MCP server: ${out.leaked}`);
  return out.headers['X-Forwarded-Email'] ?? out.headers['X-User-Email'] ?? JSON.stringify(out.headers);
}

async function main() {
  step(`TS SDK against ${endpoint.href}`);
  await discovery();

  const authProvider = new MemoryProvider();
  const first = new Client({ name: 'ts-sdk-interop', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(endpoint, { authProvider });
  try {
    await first.connect(transport);
    fail('connected without authorization');
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
    step('first connect: 401, authorization ran (UnauthorizedError as expected)');
  }
  if (!authProvider.pendingCode) fail('no authorization code captured');
  await transport.finishAuth(authProvider.pendingCode);
  step('finishAuth: code exchanged');
  await transport.close();

  const { client } = await connect(authProvider);
  step(`connected: server ${client.getServerVersion()?.name} ${client.getServerVersion()?.version}`);
  const tools = await client.listTools();
  step(`listTools: ${tools.tools.map((t) => t.name).join(', ')}`);
  if (!tools.tools.some((t) => t.name === 'whoami')) fail('no whoami tool');
  const who = await whoami(client);
  step(`whoami: ${who}`);
  await client.close();

  // Refresh with the TS SDK's refreshAuthorization (rotation), then use the
  // new access token.
  const prm = await discoverOAuthProtectedResourceMetadata(endpoint);
  const asm = await discoverAuthorizationServerMetadata(prm.authorization_servers[0]);
  const old = authProvider.toks;
  const refreshed = await refreshAuthorization(prm.authorization_servers[0], {
    metadata: asm,
    clientInformation: authProvider.info,
    refreshToken: old.refresh_token,
    resource: new URL(prm.resource),
  });
  if (refreshed.access_token === old.access_token) fail('refresh returned the same access token');
  step(`refreshAuthorization: new access token, refresh token rotated: ${refreshed.refresh_token !== old.refresh_token}`);
  authProvider.saveTokens({ ...refreshed, issuer: old.issuer });
  const again = await connect(authProvider);
  const who2 = await whoami(again.client);
  if (who2 !== who) fail(`whoami after refresh differs: ${who2}`);
  step('whoami after refresh: same identity');
  await again.client.close();

  // An access token the server no longer accepts: the transport gets 401
  // and auth() refreshes on its own (refresh_token grant with resource).
  authProvider.toks = { ...authProvider.toks, access_token: 'revoked-or-expired' };
  const auto = await connect(authProvider);
  const who3 = await whoami(auto.client);
  if (who3 !== who) fail(`whoami after automatic refresh differs: ${who3}`);
  step('401 with a bad access token: auth() refreshed silently, same identity');
  await auto.client.close();

  if (authProvider.authorizations !== 1) fail(`expected one authorization, got ${authProvider.authorizations}`);
  console.log(`OK ${who}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`FAIL: ${err?.stack ?? err}`);
    process.exit(1);
  },
);
