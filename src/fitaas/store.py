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
from typing import Any

from fitaas.errors import FitaasError
from fitaas.pallets import digest

__all__ = ["ResultStore", "StoredOutcome", "open_store", "result_key", "store_label"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    workspace_digest TEXT NOT NULL,
    patch TEXT,
    patch_digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    options TEXT NOT NULL,
    pyhf_version TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_workspace ON results (workspace_digest, kind);
"""


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


class ResultStore:
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
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise FitaasError(f"{self.path}: cannot use as a results store ({exc})") from None

    def __enter__(self) -> ResultStore:
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
        for chunk in _chunks(wanted, 500):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, status, outcome, created FROM results WHERE key IN ({marks})", chunk
            )
            for key, status, outcome, created in rows:
                found[key] = StoredOutcome(key, status, json.loads(outcome), created)
        return found

    def put(
        self,
        key: str,
        *,
        workspace_digest: str,
        patch: str | None,
        patch_digest: str,
        kind: str,
        options: Mapping[str, Any],
        pyhf_version: str,
        outcome: Mapping[str, Any],
    ) -> None:
        """Store (or replace) one outcome, committed at once."""
        self._db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                workspace_digest,
                patch,
                patch_digest,
                kind,
                json.dumps(dict(options), sort_keys=True),
                pyhf_version,
                outcome["status"],
                json.dumps(dict(outcome)),
                time.time(),
            ),
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


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
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
    return ResultStore(where)


def store_label(where: str | Path) -> str:
    """How to name a store to a user: its path, or its URL without the password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", str(where))
