"""The service's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from fitaas.service.db import DEFAULT_DATABASE
from fitaas.service.job_limits import JobLimits

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "ServiceSettings"]

DEFAULT_MAX_UPLOAD_MB = 64


@dataclass(frozen=True)
class ServiceSettings:
    """How a service instance runs.

    Attributes:
        database: SQLAlchemy URL of the database (jobs, users, results); a path means SQLite.
        max_upload_bytes: Largest request body, and largest decompressed upload, accepted.
        workers: Worker processes of the ``local`` endpoint (default: one per core).
        auth_failures_per_minute: Failed authentications a client may make in a minute
            before it is answered 429 for the rest of that minute.
        keep_workers: Seconds an endpoint's engine stays started after a job, for the next
            (0: stopped after every job).
        limits: What one job may ask for (:class:`~fitaas.service.job_limits.JobLimits`).
        forwarded_allow_ips: Addresses of proxies whose ``X-Forwarded-For`` is believed
            (comma-separated, ``*`` for any; empty: none, the peer's own address counts).
    """

    database: str = DEFAULT_DATABASE
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1_000_000
    workers: int | None = None
    auth_failures_per_minute: int = 20
    keep_workers: float = 300.0
    limits: JobLimits = field(default_factory=JobLimits)
    forwarded_allow_ips: str = ""
