"""What the service refuses before any work: bodies above the size limit (413), clients
that keep presenting bad tokens (429), and the headers that keep the page from being framed
or fed foreign scripts."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

__all__ = ["BodySizeLimit", "FailedAuthLimiter", "SecurityHeaders"]

# The page's scripts, styles and pictures come from the service itself; nothing may frame it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# FastAPI's interactive documentation loads its own scripts; it gets the other headers only.
_OWN_POLICY_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    """ASGI middleware: CSP, X-Frame-Options, nosniff and no referrer on every response.

    Args:
        app: The wrapped ASGI application.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(_SECURITY_HEADERS)
        if not str(scope.get("path", "")).startswith(_OWN_POLICY_PATHS):
            extra.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in extra if name not in present
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


class FailedAuthLimiter:
    """Counts failed authentications per client; too many in a window mean 429 for a while.

    Tokens are 256 random bits, so guessing is hopeless anyway: the limit keeps a client that
    hammers the service with bad tokens from costing it work (a client over the limit is
    refused before its token is looked up) and from filling its log.

    Args:
        failures: Failed attempts allowed per client within ``window`` seconds.
        window: The window, in seconds; a client over the limit waits until its oldest
            counted failure is older than this.
    """

    def __init__(self, failures: int = 20, window: float = 60.0) -> None:
        self.failures = failures
        self.window = window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[client]
        return times

    def retry_after(self, client: str) -> float:
        """Seconds this client must wait before its token is looked at again (0: none)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.failures:
                return 0.0
            return max(1.0, times[0] + self.window - now)

    def failed(self, client: str) -> None:
        """Count one failed authentication of this client."""
        now = time.monotonic()
        with self._lock:
            self._recent(client, now)
            self._seen.setdefault(client, deque()).append(now)
            if len(self._seen) > 100_000:  # many clients: forget the quietest half
                for key in sorted(self._seen, key=lambda k: self._seen[k][-1])[:50_000]:
                    del self._seen[key]


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
                "detail": f"request body {size} is above the limit of {self.limit:,} bytes "
                f"({self.limit / 1e6:g} MB, fitaas serve --max-upload-mb)"
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
        if declared is not None and declared.isdigit():
            # the server reads no more than the declared length
            if int(declared) > self.limit:
                await self._refuse(send, f"of {int(declared):,} bytes")
                return
            await self.app(scope, receive, send)
            return
        # A chunked body has no declared size: read it here, up to the limit, so that the
        # answer is 413 whichever route it was for (a route parsing JSON would otherwise
        # report the interrupted read as a malformed body).
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._refuse(send, f"of more than {self.limit:,} bytes (chunked)")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await self.app(
            scope,
            _replay([{"type": "http.request", "body": body, "more_body": False}], receive),
            send,
        )


def _replay(messages: list[dict[str, Any]], then: Any) -> Any:
    """A ``receive`` that gives these messages, then what the server sends (a disconnect)."""
    pending = list(messages)

    async def receive() -> Any:
        if pending:
            return pending.pop(0)
        return await then()

    return receive
