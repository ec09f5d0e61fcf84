// The user's part of the authorization code flow, scripted: a browser that
// follows redirects with a cookie jar, logs in at the test OpenID provider's
// username/password form and approves mcp-oidc-proxy's consent page, until
// the authorization server redirects to the client's redirect URI.
import http from 'node:http';

const fail = (msg) => {
  throw new Error(`browser: ${msg}`);
};

// A browser-like cookie jar: cookies belong to a host name (not a port, as in
// browsers) and a path.
class CookieJar {
  constructor() {
    this.cookies = new Map();
  }
  store(url, setCookies) {
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let expired = false;
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        const key = k.toLowerCase();
        if (key === 'path') path = v || '/';
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) < Date.now()) expired = true;
      }
      const id = `${url.hostname}|${path}|${name}`;
      if (expired || value === '') this.cookies.delete(id);
      else this.cookies.set(id, { host: url.hostname, path, name, value });
    }
  }
  header(url) {
    const out = [];
    for (const c of this.cookies.values()) {
      const p = c.path.endsWith('/') ? c.path : c.path + '/';
      if (c.host === url.hostname && (url.pathname === c.path || url.pathname.startsWith(p))) {
        out.push(`${c.name}=${c.value}`);
      }
    }
    return out.join('; ');
  }
}

const attr = (tag, name) => {
  const m = tag.match(new RegExp(`\\b${name}="([^"]*)"`, 'i'));
  return m ? decodeHtml(m[1]) : undefined;
};
const decodeHtml = (s) =>
  s
    .replace(/&#43;/g, '+')
    .replace(/&#39;/g, "'")
    .replace(/&#34;/g, '"')
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');

// parseForm returns the first form's action, method and hidden inputs.
function parseForm(page, html) {
  const form = html.match(/<form\b[^>]*>/i);
  if (!form) return undefined;
  const fields = new URLSearchParams();
  for (const input of html.match(/<input\b[^>]*>/gi) ?? []) {
    if ((attr(input, 'type') ?? '').toLowerCase() === 'hidden') {
      fields.set(attr(input, 'name'), attr(input, 'value') ?? '');
    }
  }
  return {
    action: new URL(attr(form[0], 'action') ?? page.href, page),
    method: (attr(form[0], 'method') ?? 'GET').toUpperCase(),
    fields,
    html,
  };
}

// navigate sends one browser request with node:http: Node's fetch replaces
// Sec-Fetch-Mode with "cors", so it cannot look like a page navigation.
function navigate(url, method, headers, body) {
  if (url.protocol !== 'http:') fail(`only http URLs are supported, got ${url.href}`);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: body ? { ...headers, 'Content-Length': Buffer.byteLength(body) } : headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          location: res.headers.location,
          setCookies: res.headers['set-cookie'] ?? [],
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error(`${method} ${url.href} timed out`)));
    req.end(body);
  });
}

// browse plays the user's browser from the authorization URL to the redirect
// back to the client and returns the authorization response parameters.
//
// It returns the redirect's query parameters and whether it logged in at the
// provider (provider is the provider's base URL, for the log and that check).
export async function browse(authorizationUrl, { redirectUri, provider, user, password, log = () => {} }) {
  const step = (msg) => log(`browser: ${msg}`);
  const jar = new CookieJar();
  let loggedIn = false;
  const start = new URL(authorizationUrl);
  const target = new URL(redirectUri);
  let req = { url: new URL(authorizationUrl), method: 'GET', body: undefined };
  for (let hop = 0; hop < 25; hop++) {
    const { url } = req;
    if (url.origin === target.origin && url.pathname === target.pathname) {
      step(`redirected to the client's redirect URI`);
      return { params: url.searchParams, loggedIn };
    }
    const headers = {
      Accept: 'text/html,application/xhtml+xml',
      'Sec-Fetch-Mode': 'navigate',
      'Sec-Fetch-Dest': 'document',
    };
    const cookie = jar.header(url);
    if (cookie) headers.Cookie = cookie;
    if (req.body) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      headers.Origin = url.origin;
    }
    const res = await navigate(url, req.method, headers, req.body);
    jar.store(url, res.setCookies);
    const who = url.origin === start.origin ? 'proxy' : provider && url.origin === new URL(provider).origin ? 'provider' : url.origin;
    const where = `${req.method} ${who}${url.pathname}`;
    if (res.status >= 300 && res.status < 400) {
      const loc = res.location;
      if (!loc) fail(`${where}: redirect without Location`);
      const next = new URL(loc, url);
      step(`${where} -> ${res.status} ${next.origin}${next.pathname}`);
      req = { url: next, method: 'GET', body: undefined };
      continue;
    }
    const html = res.body;
    if (res.status !== 200) fail(`${where}: status ${res.status}: ${html.slice(0, 300)}`);
    const form = parseForm(url, html);
    if (!form) fail(`${where}: page without a form: ${html.slice(0, 300)}`);
    if (/name="password"/i.test(html)) {
      form.fields.set('username', user);
      form.fields.set('password', password);
      loggedIn = who === 'provider';
      step(`${where} login form, posting credentials`);
    } else if (/value="approve"/i.test(html)) {
      form.fields.set('action', 'approve');
      step(`${where} consent page, approving`);
    } else {
      fail(`${where}: unknown form: ${html.slice(0, 300)}`);
    }
    req = form.method === 'POST'
      ? { url: form.action, method: 'POST', body: form.fields.toString() }
      : { url: new URL(`${form.action.origin}${form.action.pathname}?${form.fields}`), method: 'GET' };
  }
  fail('too many steps in the browser');
}
