"""The results store in any SQL database SQLAlchemy reaches (PostgreSQL, SQLite).

Same table (:data:`fitaas.store.records.COLUMNS`), keys and behaviour as the SQLite store, a
sibling implementing :class:`fitaas.store.records.ResultStore`; used by the service,
whose jobs and results live in one database, and by ``--store postgresql://...``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Self

from fitaas.errors import FitaasError
from fitaas.store.records import COLUMNS, INDEX, Record, StoredOutcome, chunks

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
    """The ``results`` table (:data:`fitaas.store.records.COLUMNS`) on a SQLAlchemy MetaData."""
    import sqlalchemy as sa

    def column(c: Any) -> Any:
        kind = sa.Float if c.kind == "float" else sa.String(c.length) if c.length else sa.Text
        return sa.Column(c.name, kind, primary_key=c.name == "key", nullable=c.nullable)

    name, indexed = INDEX
    return sa.Table("results", metadata, *map(column, COLUMNS), sa.Index(name, *indexed))


class SqlResultStore:
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            for chunk in chunks(wanted, 500):
                rows = conn.execute(
                    sa.select(t.c.key, t.c.status, t.c.outcome, t.c.created).where(
                        t.c.key.in_(chunk)
                    )
                )
                for key, status, outcome, created in rows:
                    found[key] = StoredOutcome(key, status, json.loads(outcome), created)
        return found

    def put(self, record: Record) -> None:
        """Store (or replace) one outcome, committed at once."""
        import sqlalchemy as sa

        values = record.row()
        t = self._table
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.key == record.key))
            conn.execute(sa.insert(t).values(**values))

    def count(self, status: str | None = None) -> int:
        """How many outcomes are stored (with the given status, if any)."""
        import sqlalchemy as sa

        t = self._table
        query = sa.select(sa.func.count()).select_from(t)
        if status is not None:
            query = query.where(t.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
