// The peer a TypeScript user would pick instead: an MCP server on the official
// TypeScript SDK (@modelcontextprotocol/sdk) behind express, with the SDK's
// requireBearerAuth middleware and a JWKS verifier (jose's createRemoteJWKSet,
// keys cached). Serves get_time over streamable HTTP, one transport per
// session, as in the SDK's examples.
//
// Usage: node ts_server.mjs PORT ISSUER JWKS_URL RESOURCE
// Started by mcp-auth-bench (mode typescript-sdk); not a test fixture.
import { randomUUID } from 'node:crypto';
import express from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const [port, issuer, jwksUrl, resource] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUrl));

const verifier = {
  async verifyAccessToken(token) {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, jwks, { issuer, audience: resource, algorithms: ['RS256'] }));
    } catch (e) {
      throw new InvalidTokenError(`invalid token: ${e.code ?? e.message}`);
    }
    return {
      token,
      clientId: String(payload.client_id ?? ''),
      scopes: String(payload.scope ?? '').split(' ').filter(Boolean),
      expiresAt: payload.exp,
      resource: new URL(resource),
    };
  },
};

const auth = requireBearerAuth({
  verifier,
  requiredScopes: ['mcp:tools'],
  resourceMetadataUrl: `${new URL(resource).origin}/.well-known/oauth-protected-resource${new URL(resource).pathname}`,
});

const transports = new Map();

function newServer() {
  const server = new McpServer({ name: 'typescript-sdk-peer', version: '1.0.0' });
  server.registerTool('get_time', { description: 'Current date and time (ISO 8601, UTC)' }, async () => ({
    content: [{ type: 'text', text: new Date().toISOString() }],
  }));
  return server;
}

const app = express();
app.use(express.json());
app.post('/mcp', auth, async (req, res) => {
  const id = req.headers['mcp-session-id'];
  let transport = id ? transports.get(id) : undefined;
  if (!transport) {
    if (id || !isInitializeRequest(req.body)) {
      res.status(id ? 404 : 400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'no such session' }, id: null });
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sid) => transports.set(sid, transport),
    });
    transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
    await newServer().connect(transport);
  }
  await transport.handleRequest(req, res, req.body);
});
app.delete('/mcp', auth, async (req, res) => {
  const transport = transports.get(req.headers['mcp-session-id']);
  if (!transport) {
    res.status(404).end();
    return;
  }
  await transport.handleRequest(req, res);
});

app.listen(Number(port), '127.0.0.1');
