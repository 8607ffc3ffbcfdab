"""The floor: the least a Python ASGI proxy can do per request, kept here as the yardstick.

A bare ASGI app under uvicorn (one worker, uvloop, httptools, no access log) that forwards each
request body to the upstream with one pooled aiohttp ClientSession and passes the answer back as
bytes: no validation, no logging, no JSON parsing, streams forwarded read by read. It holds the
upstream key itself, as the gateway does. `/v1/<path>` maps to `<upstream>/<path>`.
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]

_HEALTH = b'{"status":"ok"}'


class Floor:
    def __init__(self, upstream: str, api_key: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # No connection limit: the floor must never queue on its own pool.
                self._session = aiohttp.ClientSession(
                    headers=self._headers,
                    connector=aiohttp.TCPConnector(limit=0),
                    timeout=aiohttp.ClientTimeout(total=None),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Any, send: Any) -> None:
        path: str = scope["path"]
        if path == "/health":
            await _whole(send, 200, b"application/json", _HEALTH)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        assert self._session is not None
        target = self._upstream + path.removeprefix("/v1")
        async with self._session.request(scope["method"], target, data=b"".join(chunks)) as resp:
            content_type = resp.headers.get("Content-Type", "application/octet-stream").encode()
            if not content_type.startswith(b"text/event-stream"):
                await _whole(send, resp.status, content_type, await resp.read())
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": [(b"content-type", content_type), (b"cache-control", b"no-cache")],
                }
            )
            async for data in resp.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _whole(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description="The floor: a bare passthrough proxy.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://h:p/api/v1")
    parser.add_argument("--api-key", default="perf-key")
    args = parser.parse_args()
    uvicorn.run(
        Floor(args.upstream, args.api_key),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        workers=1,
    )


if __name__ == "__main__":
    main()
