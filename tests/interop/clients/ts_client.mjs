// The official TypeScript MCP SDK (@modelcontextprotocol/sdk) as a client of
// mcp-auth-server, for the interop matrix.
//
// Usage:
//   node ts_client.mjs headers URL [Name=value ...]   credentials in headers
//   node ts_client.mjs oauth URL                      the SDK's OAuth flow (discovery, dynamic
//                                                     registration, PKCE, resource), then
//                                                     admin_status, which needs a 403 step-up
//                                                     (its failure is reported as step_up_error)
//
// Prints one JSON line like py_client.py; exits 1 with the error on stderr.
// The "browser" follows the authorization URL through the authorization
// server's auto-approving login and consent (keeping cookies) and stops at
// the redirect to the callback, whose code goes to transport.finishAuth().
// TS_SDK=v2 runs the same script on the SDK's next major, whose client is
// the @modelcontextprotocol/client package (same names for what is used here).
const v2 = process.env.TS_SDK === 'v2';
const { Client } = await import(v2 ? '@modelcontextprotocol/client' : '@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = await import(
  v2 ? '@modelcontextprotocol/client' : '@modelcontextprotocol/sdk/client/streamableHttp.js'
);
const { UnauthorizedError } = await import(v2 ? '@modelcontextprotocol/client' : '@modelcontextprotocol/sdk/client/auth.js');

const CALLBACK = 'http://127.0.0.1:3030/callback';

class HeadlessBrowser {
  constructor() {
    this.authorizeUrls = [];
    this.codes = [];
  }

  async open(start) {
    this.authorizeUrls.push(start.toString());
    const jar = new Map();
    let url = start.toString();
    for (let i = 0; i < 20; i += 1) {
      if (url.startsWith(CALLBACK)) {
        const query = new URL(url).searchParams;
        if (query.get('error')) throw new Error(`authorization refused: ${query}`);
        this.codes.push({ code: query.get('code'), iss: query.get('iss') ?? undefined });
        return;
      }
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
      const response = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(';');
        const eq = pair.indexOf('=');
        jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
      }
      const location = response.headers.get('location');
      if (response.status < 300 || response.status > 399 || !location) {
        throw new Error(`authorization stopped at ${url} with HTTP ${response.status}`);
      }
      url = new URL(location, url).toString();
    }
    throw new Error('authorization did not reach the callback in 20 redirects');
  }

  // { code, iss }: v2 checks the RFC 9207 `iss` of the response (finishAuth's
  // second argument); v1 takes the code alone.
  takeCode() {
    const arrived = this.codes.shift();
    if (!arrived) throw new Error('no authorization code arrived');
    return arrived;
  }
}

// Everything in memory, for this run only.
class MemoryProvider {
  constructor(browser) {
    this.browser = browser;
    this.client = undefined;
    this.saved = undefined;
    this.verifier = undefined;
  }

  get redirectUrl() {
    return CALLBACK;
  }

  get clientMetadata() {
    return {
      client_name: 'typescript-sdk-interop',
      redirect_uris: [CALLBACK],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  clientInformation() {
    return this.client;
  }

  saveClientInformation(info) {
    this.client = info;
  }

  tokens() {
    return this.saved;
  }

  saveTokens(tokens) {
    this.saved = tokens;
  }

  async redirectToAuthorization(url) {
    await this.browser.open(url);
  }

  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }

  // v2 binds the callback to the authorization server it discovered.
  saveDiscoveryState(state) {
    this.discovery = state;
  }

  discoveryState() {
    return this.discovery;
  }

  codeVerifier() {
    if (!this.verifier) throw new Error('no PKCE verifier saved');
    return this.verifier;
  }
}

function text(result) {
  if (result.isError) throw new Error(`tool call failed: ${JSON.stringify(result.content)}`);
  return result.content[0].text;
}

async function calls(client) {
  const tools = await client.listTools();
  const time = text(await client.callTool({ name: 'get_time', arguments: {} }));
  const whoami = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
  return { tools: tools.tools.map((t) => t.name).sort(), time, whoami };
}

async function withHeaders(url, pairs) {
  const headers = Object.fromEntries(pairs.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
  const client = new Client({ name: 'typescript-sdk-interop', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(transport);
  try {
    return await calls(client);
  } finally {
    await transport.terminateSession();
    await client.close();
  }
}

// Runs `step`; when the SDK stops for a login (UnauthorizedError after
// redirectToAuthorization), hands the code to the transport `step` used
// (`transport()`) and runs `step` again.
async function authorized(browser, transport, step) {
  try {
    return await step();
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
    const { code, iss } = browser.takeCode();
    await transport().finishAuth(code, iss);
    return step();
  }
}

async function withOAuth(url) {
  const browser = new HeadlessBrowser();
  const provider = new MemoryProvider(browser);
  let client;
  let transport;
  const connect = async () => {
    client = new Client({ name: 'typescript-sdk-interop', version: '1.0.0' });
    transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    await client.connect(transport);
  };
  // The first request meets the 401: log in, then connect again.
  await authorized(browser, () => transport, connect);
  try {
    const out = await calls(client);
    // Needs mcp:admin, which the first token lacks: a 403 step-up.
    try {
      out.admin_status = JSON.parse(
        text(await authorized(browser, () => transport, () => client.callTool({ name: 'admin_status', arguments: {} }))),
      );
      out.whoami_after_step_up = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
    } catch (e) {
      out.step_up_error = `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
    }
    out.authorizations = browser.authorizeUrls.map((u) => new URL(u).searchParams.get('scope') ?? '');
    out.resource = browser.authorizeUrls.map((u) => new URL(u).searchParams.get('resource') ?? '');
    return out;
  } finally {
    await transport.terminateSession().catch(() => {});
    await client.close();
  }
}

const [mode, url, ...rest] = process.argv.slice(2);
try {
  let out;
  if (mode === 'headers') out = await withHeaders(url, rest);
  else if (mode === 'oauth') out = await withOAuth(url);
  else throw new Error(`unknown mode ${mode}`);
  console.log(JSON.stringify(out));
  process.exit(0);
} catch (e) {
  console.error(`${e?.name ?? 'Error'}: ${e?.message ?? e}`);
  process.exit(1);
}
