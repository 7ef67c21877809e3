"""Watches the service's storage: its SQLite file removed, replaced or made read-only while
it runs, its disk full (any database: a write refused for lack of space is noted).

SQLite keeps writing to a file that was deleted or replaced under it (the open handle
still points at the old one): nothing fails, and everything written is gone at the next
start. The watch notices within a heartbeat, logs it once, and the service refuses new work
with 503 and the reason (reads go on) until the file is back; ``/health`` says
``degraded`` with the same reason. A full disk is seen before a write fails where the file is
local (less than ``LOW_SPACE_BYTES`` free), and from the failure itself otherwise (for
``FULL_SECONDS`` after the last one).
"""

from __future__ import annotations

import logging
import os
import shutil
import time

import sqlalchemy as sa

from fitaas.service.db import sqlite_path

__all__ = ["FULL_SECONDS", "LOW_SPACE_BYTES", "StorageWatch"]

# Free space on the database file's disk below which the service takes no new work.
LOW_SPACE_BYTES = 1_000_000
# How long a write refused for lack of space counts (where the disk cannot be looked at).
FULL_SECONDS = 10.0

log = logging.getLogger("fitaas.service")


class StorageWatch:
    """The state of the database file, checked with :meth:`check`.

    Args:
        engine: The service database (only SQLite files are watched).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.path = sqlite_path(engine)
        self.problem: str | None = None
        self._inode = self._stat()
        self._full: tuple[str, float] | None = None  # a write refused for lack of space

    def noted(self, reason: str) -> None:
        """A write failed with ``reason``; one for lack of space makes a problem now, where
        the disk cannot be looked at (a database server; a local file's disk is looked at
        by :meth:`check`, and space that returns counts at once)."""
        lowered = reason.lower()
        if self.path is None and ("full" in lowered or "no space" in lowered):
            self._full = (reason, time.monotonic())
            self._settle(self._file_problem() or reason)

    def _stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def check(self) -> str | None:
        """Look at the storage now; returns the problem (None: none), logging each new one."""
        problem = self._file_problem()
        if problem is None and self._full is not None:
            reason, since = self._full
            if time.monotonic() - since < FULL_SECONDS:
                problem = reason
            else:
                self._full = None
        return self._settle(problem)

    def _settle(self, problem: str | None) -> str | None:
        if problem != self.problem:
            if problem:
                log.error("%s", problem)
            else:
                log.info("the service's storage is usable again")
        self.problem = problem
        return problem

    def _file_problem(self) -> str | None:
        if self.path is None:
            return None
        now = self._stat()
        problem = None
        if now is None:
            problem = (
                f"storage error: the database file {self.path} was removed while the service "
                "runs (what it writes now is lost at the next start): put it back or restart"
            )
        elif self._inode is not None and now != self._inode:
            problem = (
                f"storage error: the database file {self.path} was replaced while the service "
                "runs (it still writes to the old one): restart the service"
            )
        elif not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK):
            problem = f"storage error: the database file {self.path} is read-only"
        else:
            try:
                free = shutil.disk_usage(self.path.parent).free
            except OSError:
                free = LOW_SPACE_BYTES
            if free < LOW_SPACE_BYTES:
                problem = (
                    f"storage error: the disk of the database file {self.path} is full "
                    f"({free:,} bytes free): make space"
                )
        return problem
