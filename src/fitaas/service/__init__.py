"""The fitaas HTTP service: users, groups, endpoints, jobs and a live web page.

Start it with ``fitaas serve``; manage it with ``fitaas admin``; use it with
:class:`fitaas.Client` or ``fitaas submit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fitaas.service.app import create_app
    from fitaas.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]


def __getattr__(name: str) -> Any:
    # (imported when asked for: `fitaas admin` reads the database without the web app)
    if name == "create_app":
        from fitaas.service.app import create_app

        return create_app
    if name == "ServiceSettings":
        from fitaas.service.settings import ServiceSettings

        return ServiceSettings
    raise AttributeError(f"module 'fitaas.service' has no attribute {name!r}")
