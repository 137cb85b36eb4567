"""The peer a Python user would pick instead: an MCP server on the official Python SDK
(`mcp` on PyPI, MCPServer) with a JWT token verifier over the issuer's JWKS (PyJWT's
PyJWKClient, keys cached), as in the seed project. Serves `get_time` over streamable HTTP.

Usage: python_server.py PORT ISSUER JWKS_URL RESOURCE
Started by mcp-auth-bench (mode python-sdk); not a test fixture.
"""

import sys
from datetime import datetime, timezone

import jwt
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

port, issuer, jwks_url, resource = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class JwksVerifier:
    """RS256 access tokens of `issuer` for `resource`, keys from the JWKS (cached)."""

    def __init__(self) -> None:
        self.keys = jwt.PyJWKClient(jwks_url, cache_keys=True)

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            key = self.keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=["RS256"], issuer=issuer, audience=resource)
        except jwt.PyJWTError:
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=claims.get("exp"),
            resource=resource,
            subject=claims.get("sub"),
        )


mcp = MCPServer(
    "python-sdk-peer",
    token_verifier=JwksVerifier(),
    auth=AuthSettings(
        issuer_url=issuer,
        resource_server_url=resource,
        required_scopes=["mcp:tools"],
        validate_token_resource=True,
    ),
    log_level="WARNING",
)


@mcp.tool()
def get_time() -> str:
    """Current date and time (ISO 8601, UTC)."""
    return datetime.now(timezone.utc).isoformat()


mcp.run("streamable-http", host="127.0.0.1", port=port)
