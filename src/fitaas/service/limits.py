"""Request bodies above the size limit are refused with 413 before they are read whole."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodySizeLimit"]


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: 413 for a body above ``limit`` bytes (declared or streamed).

    Args:
        app: The wrapped ASGI application.
        limit: The largest body accepted, in bytes.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, send: Any, size: str) -> None:
        body = json.dumps(
            {
                "detail": f"request body {size} is above the limit of "
                f"{self.limit / 1e6:g} MB (fitaas serve --max-upload-mb)"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, f"of {int(declared) / 1e6:.1f} MB")
            return
        seen = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, "streamed")
