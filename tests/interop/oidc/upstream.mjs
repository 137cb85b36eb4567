// An upstream provider for the authorization-server facade's tests: what
// Cognito, Google and GitHub look like to the facade. One static
// confidential client, no dynamic registration, PKCE required, and an
// interaction endpoint that logs the user in without a person.
//
// Env: PORT (required), PROXY_CALLBACK (the facade's callback URL, the
// client's only redirect URI), UPSTREAM_MODE: `oidc` (ID tokens; the
// facade names the issuer) or `github` (opaque access tokens and a
// userinfo endpoint at /user answering {id, login, email}, like GitHub's
// /user; the facade is configured with the three URLs by hand).
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const callback = process.env.PROXY_CALLBACK;
const mode = process.env.UPSTREAM_MODE || 'oidc';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'upstream-key', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  cookies: { keys: ['upstream-cookie-key-not-a-secret'] },
  clients: [
    {
      client_id: 'mcp-proxy',
      client_secret: 'mcp-proxy-secret-0123456789abcdef',
      redirect_uris: [callback],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  scopes: ['openid', 'email', 'profile', 'offline_access', 'read:user'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: false },
  },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com`, email_verified: true, name: 'Test User' }),
  }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

// GitHub's /user, answered from an access token this provider issued.
provider.use(async (ctx, next) => {
  if (ctx.path !== '/user' || mode !== 'github') return next();
  const auth = ctx.get('authorization') || '';
  const token = auth.startsWith('Bearer ') ? await provider.AccessToken.find(auth.slice(7)) : undefined;
  if (!token) {
    ctx.status = 401;
    ctx.body = { message: 'Bad credentials' };
    return undefined;
  }
  ctx.body = { id: 583231, login: token.accountId, email: `${token.accountId}@example.com` };
  return undefined;
});

provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: 'octocat' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details || {};
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
