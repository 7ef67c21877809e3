"""The fitaas HTTP service: users, groups, endpoints, jobs and a live web page.

Start it with ``fitaas serve``; manage it with ``fitaas admin``; use it with
:class:`fitaas.Client` or ``fitaas submit``.
"""

from __future__ import annotations

from fitaas.service.app import create_app
from fitaas.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
