"""Watches the service's SQLite file: removed, replaced or made read-only while it runs.

SQLite keeps writing to a file that was deleted or replaced under it (the open handle
still points at the old one): nothing fails, and everything written is gone at the next
start. The watch notices within a heartbeat, logs it once, and the service refuses new work
with 503 and the reason (reads go on) until the file is back.
"""

from __future__ import annotations

import logging
import os

import sqlalchemy as sa

from fitaas.service.db import sqlite_path

__all__ = ["StorageWatch"]

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

    def _stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def check(self) -> str | None:
        """Look at the file now; returns the problem (None: none), logging each new one."""
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
        if problem != self.problem:
            if problem:
                log.error("%s", problem)
            else:
                log.info("the database file %s is usable again", self.path)
        self.problem = problem
        return problem
