"""The results store in an SQLite file (the default): each result committed the moment it
arrives, so a crash or Ctrl-C loses nothing already computed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Self

from fitaas.errors import FitaasError
from fitaas.store.records import COLUMNS, INDEX, Record, StoredOutcome, chunks

__all__ = ["SqliteResultStore"]


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
