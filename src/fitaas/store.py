"""The results store: every outcome kept under a key made of its content.

A key is the digest of (workspace digest, patch digest, task kind, the options that
kind depends on, pyhf version): asking twice computes once, and an interrupted scan
resumes where it stopped. SQLite by default; each result is committed the moment it
arrives, so a crash or Ctrl-C loses nothing already computed.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

from fitaas.errors import FitaasError
from fitaas.pallets import digest

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


@dataclass(frozen=True)
class Column:
    """One column of the results table (both stores build their table from these)."""

    name: str
    kind: str  # "text" or "float"
    length: int | None = None  # a bounded string where a database wants one
    nullable: bool = False


# The results table: one definition for the SQLite store and the SQL one.
COLUMNS = (
    Column("key", "text", 64),
    Column("workspace_digest", "text", 64),
    Column("patch", "text", nullable=True),
    Column("patch_digest", "text", 64),
    Column("kind", "text", 16),
    Column("options", "text"),
    Column("pyhf_version", "text", 32),
    Column("status", "text", 16),
    Column("outcome", "text"),
    Column("created", "float"),
)
INDEX = ("results_by_workspace", ("workspace_digest", "kind"))


def _sqlite_schema() -> str:
    columns = ",\n".join(
        f"    {c.name} {'REAL' if c.kind == 'float' else 'TEXT'}"
        + (" PRIMARY KEY" if c.name == "key" else "")
        + ("" if c.nullable else " NOT NULL")
        for c in COLUMNS
    )
    name, indexed = INDEX
    return (
        f"CREATE TABLE IF NOT EXISTS results (\n{columns}\n);\n"
        f"CREATE INDEX IF NOT EXISTS {name} ON results ({', '.join(indexed)});\n"
    )


def result_key(
    workspace_digest: str,
    patch_digest: str,
    kind: str,
    options: Mapping[str, Any],
    pyhf_version: str,
) -> str:
    """The content key of one result.

    Args:
        workspace_digest: Digest of the background-only workspace.
        patch_digest: Digest of the patch operations.
        kind: ``"hypotest"``, ``"upper_limit"`` or ``"fit"``.
        options: The options this kind depends on (``InferenceOptions.for_kind``).
        pyhf_version: The pyhf version computing it.

    Returns:
        A hex sha256 digest.
    """
    return digest(
        {
            "workspace": workspace_digest,
            "patch": patch_digest,
            "kind": kind,
            "options": dict(options),
            "pyhf": pyhf_version,
        }
    )


@dataclass(frozen=True)
class StoredOutcome:
    """One stored outcome: ``{"status", "result", "error", "seconds"}`` and when it was made."""

    key: str
    status: str
    outcome: dict[str, Any]
    created: float


@dataclass(frozen=True)
class Record:
    """One outcome to store, with what its key is made of (the table's columns).

    Attributes:
        key: Its content key (:func:`result_key`).
        workspace_digest: Digest of the background-only workspace.
        patch: The patch's name (for people reading the table).
        patch_digest: Digest of the patch operations.
        kind: The task kind (``"hypotest"``, ...; ``"toys"`` for a block of toys).
        options: The options the kind depends on.
        pyhf_version: The pyhf version that computed it.
        outcome: The outcome as JSON (``Outcome.to_dict``, or a block of toys).
    """

    key: str
    workspace_digest: str
    patch: str | None
    patch_digest: str
    kind: str
    options: Mapping[str, Any]
    pyhf_version: str
    outcome: Mapping[str, Any]

    def row(self) -> dict[str, Any]:
        """As a row of the results table (``COLUMNS``), stamped now."""
        return {
            "key": self.key,
            "workspace_digest": self.workspace_digest,
            "patch": self.patch,
            "patch_digest": self.patch_digest,
            "kind": self.kind,
            "options": json.dumps(dict(self.options), sort_keys=True),
            "pyhf_version": self.pyhf_version,
            "status": self.outcome["status"],
            "outcome": json.dumps(dict(self.outcome)),
            "created": time.time(),
        }


@runtime_checkable
class ResultStore(Protocol):
    """What a results store does: outcomes by content key (:func:`open_store` opens one)."""

    path: str

    def get(self, keys: Iterable[str]) -> dict[str, StoredOutcome]:
        """The stored outcomes among ``keys``, by key."""
        ...

    def put(self, record: Record) -> None:
        """Store (or replace) one outcome, committed at once."""
        ...

    def count(self, status: str | None = None) -> int:
        """How many outcomes are stored (with the given status, if any)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class SqliteResultStore:
    """Results by content key in an SQLite file (``":memory:"`` for a throwaway store).

    Args:
        path: The SQLite file; created with its folder if missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_sqlite_schema())
        except sqlite3.DatabaseError as exc:
            raise FitaasError(f"{self.path}: cannot use as a results store ({exc})") from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def get(self, keys: Iterable[str]) -> dict[str, StoredOutcome]:
        """The stored outcomes among ``keys``.

        Args:
            keys: Content keys.

        Returns:
            Key to stored outcome, for the keys present.
        """
        wanted = list(dict.fromkeys(keys))
        found: dict[str, StoredOutcome] = {}
        for chunk in chunks(wanted, 500):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, status, outcome, created FROM results WHERE key IN ({marks})", chunk
            )
            for key, status, outcome, created in rows:
                found[key] = StoredOutcome(key, status, json.loads(outcome), created)
        return found

    def put(self, record: Record) -> None:
        """Store (or replace) one outcome, committed at once."""
        values = record.row()
        names = ", ".join(values)
        marks = ", ".join("?" * len(values))
        self._db.execute(
            f"INSERT OR REPLACE INTO results ({names}) VALUES ({marks})", tuple(values.values())
        )

    def count(self, status: str | None = None) -> int:
        """How many outcomes are stored (with the given status, if any)."""
        if status is None:
            row = self._db.execute("SELECT COUNT(*) FROM results").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM results WHERE status = ?", (status,)
            ).fetchone()
        return int(row[0])


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def open_store(where: str | Path) -> ResultStore:
    """The results store at a path (an SQLite file, ``":memory:"``) or a database URL
    (``postgresql://user:password@host/name``, ``sqlite:///path``; needs the service extra).

    Raises:
        FitaasError: The file or database cannot be used as a store.
    """
    if "://" in str(where):
        from fitaas.sql_store import SqlResultStore

        return SqlResultStore(str(where))
    return SqliteResultStore(where)


def store_label(where: str | Path) -> str:
    """How to name a store to a user: its path, or its URL without the password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", str(where))
