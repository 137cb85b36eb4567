// The official TypeScript MCP SDK logging in through mcp-auth-server's
// authorization-server facade, for the interop matrix's `facade` and
// `facade dpop` columns.
//
// Usage: BROWSER=tests/interop/consent-browser.py [TS_SDK=v2] [CLIENT_METADATA_URL=https://...] [DPOP=1]
//        node ts_facade_client.mjs URL
//
// The SDK's own OAuth flow from the 401 alone, with nothing registered
// beforehand: protected resource metadata, the server's RFC 8414 metadata,
// then a client ID metadata document when CLIENT_METADATA_URL is set (and the
// server advertises `client_id_metadata_document_supported`): the URL is the
// client ID, nothing is registered, the server fetches the document; the SDK
// takes only an https URL with a path. Dynamic registration at the server
// otherwise. Then PKCE, `resource`. The matrix runs v1 with registration, and
// TS_SDK=v2 twice, each run a new process with nothing kept from the other:
// with a document (served by tests/interop/metadata_document_server.py),
// then without CLIENT_METADATA_URL, when it registers although the server
// advertises documents. The browser step is a real loopback redirect, as a
// desktop app does it: the client listens on 127.0.0.1 (a free port; its
// redirect URI) and opens the authorization URL with $BROWSER, which presses
// Allow on the server's consent page and follows on through the upstream
// provider's login and the server's callback to this listener.
//
// Prints one JSON line (tools, get_time, whoami, the client ID (the document
// URL with CLIENT_METADATA_URL), whether it was registered, each authorization
// URL's scope and resource); exits 1 with the error on stderr. TS_SDK=v2 runs
// on the v2 client package (@modelcontextprotocol/client), otherwise on
// @modelcontextprotocol/sdk v1.
//
// DPOP=1 (v2 only: v1 has no DPoP) is for the matrix's `facade dpop` column:
// the provider then implements dpop(), the v2 client's one DPoP switch (RFC
// 9449, SEP-1932), returning one DpopSession (a fresh ES256 key, in memory)
// for the run. The SDK then signs a proof into the token request and presents
// a DPoP-bound token as `Authorization: DPoP` with a proof on every MCP
// request, retrying once on a `use_dpop_nonce` challenge; the driver does
// nothing of that itself. It only watches, through the transport's `fetch`
// option (below the SDK's DPoP layer, so it sees each request as sent,
// retries included), and adds `dpop` to the JSON line: the session's public
// JWK, thumbprint and alg, the saved tokens' token_type, and each HTTP
// request to the server's origin (method, path, Authorization scheme, the
// claims of its DPoP proof without the signature, the response status, and
// for a 401 its WWW-Authenticate scheme, error and DPoP-Nonce). No token
// value is recorded. Without DPOP=1 nothing changes.
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';

const v2 = process.env.TS_SDK === 'v2';
const { Client } = await import(v2 ? '@modelcontextprotocol/client' : '@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = await import(
  v2 ? '@modelcontextprotocol/client' : '@modelcontextprotocol/sdk/client/streamableHttp.js'
);
const { UnauthorizedError } = await import(v2 ? '@modelcontextprotocol/client' : '@modelcontextprotocol/sdk/client/auth.js');
const dpopOn = process.env.DPOP === '1';
if (dpopOn && !v2) {
  console.error('Error: DPOP=1 needs TS_SDK=v2: the v1 SDK has no DPoP');
  process.exit(1);
}
const { DpopSession } = dpopOn ? await import('@modelcontextprotocol/client') : {};

const LOGIN_TIMEOUT_MS = 60_000;

// The client's redirect URI: an HTTP listener on 127.0.0.1, a free port.
class LoopbackCallback {
  constructor() {
    this.waiting = [];
    this.arrived = [];
    this.server = createServer((req, res) => {
      const url = new URL(req.url, 'http://127.0.0.1');
      if (url.pathname !== '/callback') {
        res.writeHead(404).end();
        return;
      }
      const query = Object.fromEntries(url.searchParams);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('Logged in; you can close this window.');
      const next = this.waiting.shift();
      if (next) next(query);
      else this.arrived.push(query);
    });
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}/callback`;
  }

  next() {
    if (this.arrived.length) return Promise.resolve(this.arrived.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nothing arrived at ${this.url} in ${LOGIN_TIMEOUT_MS} ms`)), LOGIN_TIMEOUT_MS);
      this.waiting.push((q) => {
        clearTimeout(timer);
        resolve(q);
      });
    });
  }

  close() {
    this.server.closeAllConnections?.();
    this.server.close();
  }
}

// Opens the authorization URL with $BROWSER.
class SystemBrowser {
  constructor() {
    this.command = process.env.BROWSER;
    if (!this.command) throw new Error('BROWSER is not set');
    this.authorizeUrls = [];
  }

  open(url) {
    this.authorizeUrls.push(url.toString());
    return new Promise((resolve, reject) => {
      execFile(this.command, [url.toString()], { timeout: LOGIN_TIMEOUT_MS }, (error, stdout, stderr) => {
        if (!error) return resolve();
        const lines = `${stderr || stdout}`.trim().split('\n');
        return reject(new Error(`the browser (${this.command}) failed: ${error.code ?? error.signal}: ${lines.at(-1)}`));
      });
    });
  }
}

// Everything in memory, for this run only; nothing registered beforehand.
class MemoryProvider {
  constructor(browser, callback) {
    this.browser = browser;
    this.callback = callback;
    this.client = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.registrations = 0;
    if (process.env.CLIENT_METADATA_URL) this.clientMetadataUrl = process.env.CLIENT_METADATA_URL;
  }

  get redirectUrl() {
    return this.callback.url;
  }

  get clientMetadata() {
    return {
      client_name: 'typescript-sdk-interop',
      redirect_uris: [this.callback.url],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  clientInformation() {
    return this.client;
  }

  saveClientInformation(info) {
    // Called after dynamic registration; a metadata-document client ID is
    // saved too, as { client_id: URL, issuer }, which is no registration.
    if (info.client_id !== this.clientMetadataUrl) this.registrations += 1;
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

// The provider with DPoP on (DPOP=1): one session (key pair and nonces) for
// the run, as the SDK asks ("return the same session across calls").
class DpopMemoryProvider extends MemoryProvider {
  dpop() {
    this._dpop ??= DpopSession.create();
    return this._dpop;
  }
}

// The claims of a JWT (a DPoP proof), read without checking it, with `ath`
// only as present or not, and its header as `header` (alg, typ, and the
// embedded JWK's kty and crv).
function jwtParts(jwt) {
  const [header, payload] = jwt.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url').toString()));
  const { jwk, ...rest } = header;
  return { header: { ...rest, jwk_kty: jwk?.kty, jwk_crv: jwk?.crv }, ...payload, ath: payload.ath ? true : undefined };
}

// A fetch that records each request to `origin` (see DPOP=1 above) in `http`.
function watchingFetch(origin, http) {
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input.toString());
    const headers = new Headers(input instanceof Request ? input.headers : undefined);
    new Headers(init?.headers).forEach((v, k) => headers.set(k, v));
    const response = await fetch(input, init);
    if (url.origin === origin) {
      const authorization = headers.get('authorization');
      const proof = headers.get('dpop');
      const challenge = response.status === 401 ? response.headers.get('www-authenticate') ?? '' : undefined;
      // A token request refused (RFC 9449 section 8: 400 use_dpop_nonce with
      // a DPoP-Nonce): its error code and the nonce.
      const refusal =
        url.pathname.endsWith('/oauth/token') && response.status === 400
          ? await response.clone().json().catch(() => ({}))
          : undefined;
      http.push({
        method: (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase(),
        path: url.pathname,
        scheme: authorization ? authorization.split(' ')[0] : null,
        proof: proof ? jwtParts(proof) : null,
        status: response.status,
        ...(challenge === undefined
          ? {}
          : {
              challenge: challenge.split(/[\s,]/)[0],
              error: /error="([^"]*)"/.exec(challenge)?.[1] ?? null,
              nonce: response.headers.get('dpop-nonce'),
            }),
        ...(refusal === undefined
          ? {}
          : { error: refusal.error ?? null, nonce: response.headers.get('dpop-nonce') }),
      });
    }
    return response;
  };
}

function text(result) {
  if (result.isError) throw new Error(`tool call failed: ${JSON.stringify(result.content)}`);
  return result.content[0].text;
}

async function withFacade(url) {
  const callback = new LoopbackCallback();
  await callback.listen();
  const browser = new SystemBrowser();
  const provider = dpopOn ? new DpopMemoryProvider(browser, callback) : new MemoryProvider(browser, callback);
  const http = [];
  const watched = dpopOn ? { fetch: watchingFetch(new URL(url).origin, http) } : {};
  let client;
  let transport;
  const connect = async () => {
    client = new Client({ name: 'typescript-sdk-interop', version: '1.0.0' });
    transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, ...watched });
    await client.connect(transport);
  };
  try {
    try {
      await connect();
    } catch (e) {
      // The first request met the 401 and the browser has run: hand the code
      // from the callback to the transport, then connect again.
      if (!(e instanceof UnauthorizedError)) throw e;
      const query = await callback.next();
      if (query.error) throw new Error(`authorization refused: ${JSON.stringify(query)}`);
      await transport.finishAuth(query.code, query.iss);
      await connect();
    }
    try {
      const tools = await client.listTools();
      const time = text(await client.callTool({ name: 'get_time', arguments: {} }));
      const whoami = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
      let dpop;
      if (dpopOn) {
        const session = await provider.dpop();
        dpop = {
          alg: session.alg,
          public_jwk: session.publicJwk,
          thumbprint: session.thumbprint,
          token_type: provider.tokens()?.token_type ?? null,
          http,
        };
      }
      return {
        tools: tools.tools.map((t) => t.name).sort(),
        time,
        whoami,
        client_id: provider.client?.client_id ?? null,
        registered: provider.registrations > 0,
        authorizations: browser.authorizeUrls.map((u) => new URL(u).searchParams.get('scope') ?? ''),
        resource: browser.authorizeUrls.map((u) => new URL(u).searchParams.get('resource') ?? ''),
        ...(dpop ? { dpop } : {}),
      };
    } finally {
      await transport.terminateSession().catch(() => {});
      await client.close();
    }
  } finally {
    callback.close();
  }
}

try {
  console.log(JSON.stringify(await withFacade(process.argv[2])));
  process.exit(0);
} catch (e) {
  console.error(`${e?.name ?? 'Error'}: ${e?.message ?? e}`);
  process.exit(1);
}
