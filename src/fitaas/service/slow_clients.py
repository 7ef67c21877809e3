"""A deadline for a request's headers: a client that sends them slowly is let go.

uvicorn has no timeout on receiving a request: its keep-alive timeout is reset by every
byte, so a client that trickles a header a byte a second holds its connection (and one of
``--max-connections``) for as long as it likes ("slowloris"). The protocol here closes a
connection whose next request's headers have not arrived whole ``header_seconds`` after it
opened or after its last response; a request being read or answered is never cut.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["header_deadline_protocol"]


def header_deadline_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (h11) with a deadline of ``seconds`` for the headers."""

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, self._expire, self.cycle)

        def _expire(self, armed: Any) -> None:
            # no request's headers arrived whole since the deadline was set
            if self.cycle is armed and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline
