"""The service's database: users, groups, endpoints, uploaded documents, jobs, results.

One SQLAlchemy schema for SQLite (default) and PostgreSQL. :func:`migrate` brings any
database to the current schema version, one numbered step at a time, each in its own
transaction and recorded in ``schema_version``; a fresh database gets the ``local``
endpoint, open to every user.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fitaas.errors import FitaasError
from fitaas.store.sql import results_table, sqlalchemy_url

__all__ = [
    "DEFAULT_DATABASE",
    "SCHEMA_VERSION",
    "connect",
    "document_owners",
    "documents",
    "endpoint_groups",
    "endpoints",
    "groups",
    "jobs",
    "memberships",
    "metadata",
    "migrate",
    "sqlite_path",
    "storage_reason",
    "users",
]


def storage_reason(exc: BaseException) -> str:
    """One line saying what the database refused (disk full, read-only, gone)."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return f"storage error: {text[0] if text else type(original).__name__}"


DEFAULT_DATABASE = "sqlite:///fitaas-service.sqlite"

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created", sa.Float, nullable=False),
)
groups = sa.Table(
    "groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
)
memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("group_id", sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)
endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("engine", sa.String(16), nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("open_to_all", sa.Boolean, nullable=False, default=False),
    sa.Column("created", sa.Float, nullable=False),
)
endpoint_groups = sa.Table(
    "endpoint_groups",
    metadata,
    sa.Column("endpoint_id", sa.ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("group_id", sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)
documents = sa.Table(
    "documents",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),  # gzip-compressed JSON
    sa.Column("created", sa.Float, nullable=False),
)
document_owners = sa.Table(
    "document_owners",
    metadata,
    sa.Column("digest", sa.ForeignKey("documents.digest", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner_id", sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("endpoint_id", sa.ForeignKey("endpoints.id"), nullable=False),
    sa.Column("group_id", sa.ForeignKey("groups.id", ondelete="SET NULL"), nullable=True),
    sa.Column("workspace_digest", sa.String(64), nullable=False),
    sa.Column("patchset_digest", sa.String(64), nullable=True),
    sa.Column("patches", sa.JSON, nullable=True),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("started", sa.Float, nullable=True),
    sa.Column("finished", sa.Float, nullable=True),
    # which server runs the job, and until when its claim holds (renewed every few seconds)
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    # a ranking's POI or a likelihood scan's parameter and grid
    sa.Column("params", sa.JSON, nullable=True),
    # beyond one workspace and patchset: a sweep's or combination's named pallets, or a
    # theory scan's models document and labels (see fitaas.service.job_inputs)
    sa.Column("inputs", sa.JSON, nullable=True),
)
results = results_table(metadata)
schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied", sa.Float, nullable=False),
)


def _v1(conn: sa.Connection) -> None:
    """The first schema, and the ``local`` endpoint open to everyone."""
    metadata.create_all(conn, checkfirst=True)
    conn.execute(
        sa.insert(endpoints).values(
            name="local",
            engine="local",
            settings={"engine": "local"},
            open_to_all=True,
            created=time.time(),
        )
    )


def _v2(conn: sa.Connection) -> None:
    """Job leases: several servers on one database run each job once."""
    present = {column["name"] for column in sa.inspect(conn).get_columns("jobs")}
    if "lease_owner" not in present:  # (a fresh database got them from _v1's create_all)
        conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN lease_owner VARCHAR(128)"))
        conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN lease_until FLOAT"))


def _v3(conn: sa.Connection) -> None:
    """Job parameters of the analyst's fits (a ranking's POI, a likelihood scan's grid)."""
    present = {column["name"] for column in sa.inspect(conn).get_columns("jobs")}
    if "params" not in present:
        conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN params JSON"))


def _v4(conn: sa.Connection) -> None:
    """Job inputs of sweeps, combinations and theory scans."""
    present = {column["name"] for column in sa.inspect(conn).get_columns("jobs")}
    if "inputs" not in present:
        conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN inputs JSON"))


# Numbered steps; a new schema change is a new function appended here.
MIGRATIONS: tuple[Callable[[sa.Connection], None], ...] = (_v1, _v2, _v3, _v4)
SCHEMA_VERSION = len(MIGRATIONS)


def _current_version(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def migrate(engine: sa.Engine) -> int:
    """Apply the migrations this database lacks.

    Returns:
        The schema version now.

    Raises:
        FitaasError: The database is newer than this fitaas, or unreachable.
    """
    with engine.begin() as conn:
        current = _current_version(conn)
    if current > SCHEMA_VERSION:
        raise FitaasError(
            f"the database has schema version {current}, this fitaas knows {SCHEMA_VERSION}: "
            "upgrade fitaas"
        )
    for number in range(current + 1, SCHEMA_VERSION + 1):
        with engine.begin() as conn:
            MIGRATIONS[number - 1](conn)
            schema_version.create(conn, checkfirst=True)
            conn.execute(sa.insert(schema_version).values(version=number, applied=time.time()))
    return SCHEMA_VERSION


def sqlite_path(engine: sa.Engine) -> Path | None:
    """The file of a SQLite database (None: another database, or one in memory)."""
    if engine.dialect.name != "sqlite":
        return None
    name = engine.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).resolve()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def connect(url: str = DEFAULT_DATABASE) -> sa.Engine:
    """A SQLAlchemy engine on the service database, migrated to the current schema.

    Args:
        url: ``sqlite:///path`` (default ``fitaas-service.sqlite`` here) or
            ``postgresql://user:password@host:port/name``; a plain path means SQLite.

    Raises:
        FitaasError: An unusable URL or an unreachable database.
    """
    url = sqlalchemy_url(url)
    try:
        engine = sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise FitaasError(f"--database {url}: not usable ({exc})") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate(engine)
    except sa.exc.OperationalError as exc:
        hint = ""
        path = sqlite_path(engine)
        if path is not None and not os.access(path.parent, os.W_OK):
            hint = f" ({path.parent} is read-only: SQLite writes beside its file)"
        raise FitaasError(
            f"cannot open the database {engine.url.render_as_string(hide_password=True)}: "
            f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}{hint}"
        ) from None
    return engine
