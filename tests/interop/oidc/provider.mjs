// A real authorization server for the tests: oidc-provider with PKCE
// required, resource indicators issuing JWT access tokens whose aud is the
// MCP server, dynamic registration, two pre-registered clients for logins,
// machine clients for the client_credentials grant (one with a secret,
// one with a private key when MACHINE_PUBLIC_KEY is set), and an
// interaction endpoint that approves login and consent without a person.
//
// Env: PORT (required), RESOURCE (the MCP server URL), REDIRECT_URIS
// (comma-separated, for the pre-registered clients), ACCESS_TOKEN_TTL
// (seconds, default 3600), ROTATE_REFRESH_TOKEN (default: oidc-provider's,
// which rotates public clients' refresh tokens; `false` never rotates),
// MACHINE_PUBLIC_KEY (a PEM file: the public key of the client
// `mcp-machine-key`, which authenticates with private_key_jwt).
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const resource = process.env.RESOURCE;
const redirects = (process.env.REDIRECT_URIS || 'http://127.0.0.1:3030/callback').split(',');
const issuer = `http://127.0.0.1:${port}`;
const scopes = 'mcp:tools mcp:admin';
const accessTokenTTL = Number(process.env.ACCESS_TOKEN_TTL || 3600);

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

// Machine-to-machine clients: no redirect, the client_credentials grant only.
const machine = {
  redirect_uris: [],
  response_types: [],
  grant_types: ['client_credentials'],
};
const machineClients = [
  {
    ...machine,
    client_id: 'mcp-machine',
    client_secret: 'mcp-machine-secret-0123456789abcdef',
    token_endpoint_auth_method: 'client_secret_basic',
  },
];
if (process.env.MACHINE_PUBLIC_KEY) {
  const pub = createPublicKey(readFileSync(process.env.MACHINE_PUBLIC_KEY));
  machineClients.push({
    ...machine,
    client_id: 'mcp-machine-key',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks: { keys: [{ ...pub.export({ format: 'jwk' }), use: 'sig', alg: 'ES256' }] },
  });
}

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  cookies: { keys: ['interop-cookie-key-not-a-secret'] },
  clients: [
    {
      client_id: 'mcp-confidential',
      client_secret: 'mcp-confidential-secret-0123456789',
      redirect_uris: redirects,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      application_type: 'native',
    },
    {
      client_id: 'mcp-public',
      redirect_uris: redirects,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    },
    ...machineClients,
  ],
  scopes: ['openid', 'offline_access', 'mcp:tools', 'mcp:admin'],
  pkce: { required: () => true },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => ({
        scope: scopes,
        audience: resourceIndicator,
        accessTokenTTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ...(process.env.ROTATE_REFRESH_TOKEN === 'false' ? { rotateRefreshToken: false } : {}),
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

// Like most deployed authorization servers, scopes are not fixed at dynamic
// registration: oidc-provider would otherwise allow a registered client only
// the scopes it named when registering, and an MCP client that registered on
// the first 401 could never step up to a scope a later 403 asks for.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/reg' || !ctx.is('application/json')) return next();
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  let metadata;
  try {
    metadata = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    ctx.status = 400;
    ctx.body = { error: 'invalid_client_metadata', error_description: 'body is not JSON' };
    return undefined;
  }
  if (metadata && typeof metadata === 'object') delete metadata.scope;
  ctx.request.body = metadata;
  return next();
});

provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: 'test-user' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details || {};
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, s] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, s.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
