"""What the service's routes answer besides success, as the OpenAPI document declares it.

Every error is ``{"detail": "..."}``, one line in words (validation errors too: their
locations and messages joined), so a client reads one shape; each route declares the codes
it can answer, with that body.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ERRORS", "ErrorBody", "errors"]


class ErrorBody(BaseModel):
    """An error answer."""

    detail: str = Field(description="what is wrong, in words")


ERRORS = {
    400: "the body is not JSON",
    401: "missing or invalid token (send 'Authorization: Bearer <token>')",
    403: "not yours to use or change (an endpoint of other groups, another's job)",
    404: "no such document or job among yours",
    409: "not computed yet, or nothing of that kind in this job",
    413: "request body, or its decompressed upload, above the service's limit",
    422: "invalid input, or above a limit of the site: named in the detail",
    429: "too many failed authentications from this client (see Retry-After)",
    503: "storage unusable (disk full, database gone) or too busy (see Retry-After)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route (or router) for these error codes."""
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in codes}
