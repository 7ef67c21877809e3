"""The results store: every outcome kept under a key made of its content.

A key is the digest of (workspace digest, patch digest, task kind, the options that
kind depends on, pyhf version): asking twice computes once, and an interrupted scan
resumes where it stopped. SQLite by default (:mod:`fitaas.store.sqlite`), any SQL database
SQLAlchemy reaches with the service extra (:mod:`fitaas.store.sql`); the shared vocabulary
is :mod:`fitaas.store.records`.
"""

from __future__ import annotations

from pathlib import Path

from fitaas.store.records import (
    COLUMNS,
    Column,
    Record,
    ResultStore,
    StoredOutcome,
    result_key,
    store_label,
)
from fitaas.store.sqlite import SqliteResultStore

__all__ = [
    "COLUMNS",
    "Column",
    "Record",
    "ResultStore",
    "SqliteResultStore",
    "StoredOutcome",
    "open_store",
    "result_key",
    "store_label",
]


def open_store(where: str | Path) -> ResultStore:
    """The results store at a path (an SQLite file, ``":memory:"``) or a database URL
    (``postgresql://user:password@host/name``, ``sqlite:///path``; needs the service extra).

    Raises:
        FitaasError: The file or database cannot be used as a store.
    """
    if "://" in str(where):
        from fitaas.store.sql import SqlResultStore

        return SqlResultStore(str(where))
    return SqliteResultStore(where)
