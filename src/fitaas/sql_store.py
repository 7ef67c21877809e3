"""The results store in any SQL database SQLAlchemy reaches (PostgreSQL, SQLite).

Same table, keys and behaviour as :class:`fitaas.store.ResultStore`; used by the service,
whose jobs and results live in one database, and by ``--store postgresql://...``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from fitaas.errors import FitaasError
from fitaas.store import ResultStore, StoredOutcome, _chunks

__all__ = ["SqlResultStore", "results_table", "sqlalchemy_url"]


def sqlalchemy_url(url: str) -> str:
    """A database URL for SQLAlchemy: ``postgresql://`` with the driver fitaas installs
    (psycopg 3), a plain path as SQLite."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def results_table(metadata: Any) -> Any:
    """The ``results`` table (the columns of the SQLite store) on a SQLAlchemy MetaData."""
    import sqlalchemy as sa

    return sa.Table(
        "results",
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("workspace_digest", sa.String(64), nullable=False, index=True),
        sa.Column("patch", sa.Text),
        sa.Column("patch_digest", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("pyhf_version", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )


class SqlResultStore(ResultStore):
    """Results by content key in a SQL database.

    Args:
        engine: A SQLAlchemy engine, or a database URL (``postgresql://...``).
    """

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self._owned = isinstance(engine, str)
        if isinstance(engine, str):
            engine = sqlalchemy_url(engine)
            try:
                engine = sa.create_engine(engine, pool_pre_ping=True)
            except (sa.exc.ArgumentError, ImportError) as exc:
                raise FitaasError(f"{engine}: not a usable database URL ({exc})") from None
        self.engine = engine
        self.path = str(engine.url.render_as_string(hide_password=True))
        metadata = sa.MetaData()
        self._table = results_table(metadata)
        try:
            metadata.create_all(engine, checkfirst=True)
        except sa.exc.SQLAlchemyError as exc:
            raise FitaasError(f"{self.path}: cannot use as a results store ({exc})") from None

    def close(self) -> None:
        """Dispose of the connection pool when this store created it."""
        if self._owned:
            self.engine.dispose()

    def get(self, keys: Iterable[str]) -> dict[str, StoredOutcome]:
        """The stored outcomes among ``keys``."""
        import sqlalchemy as sa

        wanted = list(dict.fromkeys(keys))
        found: dict[str, StoredOutcome] = {}
        t = self._table
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted, 500):
                rows = conn.execute(
                    sa.select(t.c.key, t.c.status, t.c.outcome, t.c.created).where(
                        t.c.key.in_(chunk)
                    )
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
        import sqlalchemy as sa

        row = {
            "key": key,
            "workspace_digest": workspace_digest,
            "patch": patch,
            "patch_digest": patch_digest,
            "kind": kind,
            "options": json.dumps(dict(options), sort_keys=True),
            "pyhf_version": pyhf_version,
            "status": outcome["status"],
            "outcome": json.dumps(dict(outcome)),
            "created": time.time(),
        }
        t = self._table
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.key == key))
            conn.execute(sa.insert(t).values(**row))

    def count(self, status: str | None = None) -> int:
        """How many outcomes are stored (with the given status, if any)."""
        import sqlalchemy as sa

        t = self._table
        query = sa.select(sa.func.count()).select_from(t)
        if status is not None:
            query = query.where(t.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
