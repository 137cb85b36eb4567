"""A real legacy HTTP+SSE MCP client (the official Python SDK's sse_client).

Usage: sse_client.py URL [Header=value ...]
Lists tools and calls get_time and whoami; prints one JSON line. Exits non-zero
on any failure (the error is printed on stderr).
"""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.sse import sse_client


async def main() -> None:
    url = sys.argv[1]
    headers = dict(arg.split("=", 1) for arg in sys.argv[2:])
    async with sse_client(url, headers=headers, timeout=10, sse_read_timeout=30) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            now = await session.call_tool("get_time", {})
            who = await session.call_tool("whoami", {})
            print(json.dumps({
                "tools": sorted(t.name for t in tools.tools),
                "time": now.content[0].text,
                "whoami": json.loads(who.content[0].text),
            }))


if __name__ == "__main__":
    asyncio.run(main())
