"""Users, tokens, groups and endpoints: what the admin CLI does, on the database directly.

Tokens are 256 random bits shown once; only their sha256 is stored, and a presented token
is compared with the stored hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from fitaas.errors import InputError
from fitaas.service import db

__all__ = [
    "EndpointInfo",
    "User",
    "add_endpoint",
    "add_group",
    "add_user",
    "authenticate",
    "list_endpoints",
    "list_users",
    "remove_user",
    "rotate_token",
    "usable_endpoints",
]

TOKEN_PREFIX = "fitaas_"


@dataclass(frozen=True)
class User:
    """An authenticated user and the groups they belong to."""

    id: int
    name: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class EndpointInfo:
    """An endpoint and who may use it."""

    name: str
    engine: str
    open_to_all: bool
    groups: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        return {
            "name": self.name,
            "engine": self.engine,
            "open_to_all": self.open_to_all,
            "groups": list(self.groups),
        }


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _inserted(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _group_id(conn: sa.Connection, name: str, create: bool = False) -> int:
    found = conn.execute(sa.select(db.groups.c.id).where(db.groups.c.name == name)).scalar()
    if found is not None:
        return int(found)
    if not create:
        raise InputError(f"no group named '{name}' (add it with: fitaas admin group add {name})")
    return _inserted(conn.execute(sa.insert(db.groups).values(name=name)))


def _check_name(name: str, what: str) -> None:
    if not name or len(name) > 100 or not all(c.isalnum() or c in "-_." for c in name):
        raise InputError(f"{what} name '{name}': use 1-100 letters, digits, '-', '_' or '.'")


def add_group(engine: sa.Engine, name: str) -> None:
    """Create a group (no-op if it exists)."""
    _check_name(name, "group")
    with engine.begin() as conn:
        _group_id(conn, name, create=True)


def add_user(engine: sa.Engine, name: str, groups: tuple[str, ...] = ()) -> str:
    """Create a user in the given groups (created if missing).

    Returns:
        The user's new token: shown once, only its hash is kept.

    Raises:
        InputError: The name is taken or invalid.
    """
    _check_name(name, "user")
    token = _new_token()
    with engine.begin() as conn:
        taken = conn.execute(sa.select(db.users.c.id).where(db.users.c.name == name)).scalar()
        if taken is not None:
            raise InputError(f"a user named '{name}' exists (fitaas admin token rotate {name})")
        user_id = _inserted(
            conn.execute(
                sa.insert(db.users).values(name=name, token_hash=_hash(token), created=time.time())
            )
        )
        for group in groups:
            _check_name(group, "group")
            conn.execute(
                sa.insert(db.memberships).values(
                    user_id=user_id, group_id=_group_id(conn, group, create=True)
                )
            )
    return token


def _user_id(conn: sa.Connection, name: str) -> int:
    found = conn.execute(sa.select(db.users.c.id).where(db.users.c.name == name)).scalar()
    if found is None:
        raise InputError(f"no user named '{name}'")
    return int(found)


def remove_user(engine: sa.Engine, name: str) -> None:
    """Remove a user; their token stops working at once (their jobs go with them)."""
    with engine.begin() as conn:
        user_id = _user_id(conn, name)
        conn.execute(sa.delete(db.memberships).where(db.memberships.c.user_id == user_id))
        conn.execute(sa.delete(db.document_owners).where(db.document_owners.c.user_id == user_id))
        conn.execute(sa.delete(db.jobs).where(db.jobs.c.owner_id == user_id))
        conn.execute(sa.delete(db.users).where(db.users.c.id == user_id))


def rotate_token(engine: sa.Engine, name: str) -> str:
    """Replace a user's token; the old one stops working.

    Returns:
        The new token.
    """
    token = _new_token()
    with engine.begin() as conn:
        user_id = _user_id(conn, name)
        conn.execute(
            sa.update(db.users).where(db.users.c.id == user_id).values(token_hash=_hash(token))
        )
    return token


def list_users(engine: sa.Engine) -> list[User]:
    """Every user with their groups."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.users.c.id, db.users.c.name).order_by(db.users.c.name))
        return [User(int(i), str(n), _groups_of(conn, int(i))) for i, n in rows]


def _groups_of(conn: sa.Connection, user_id: int) -> tuple[str, ...]:
    rows = conn.execute(
        sa.select(db.groups.c.name)
        .join(db.memberships, db.memberships.c.group_id == db.groups.c.id)
        .where(db.memberships.c.user_id == user_id)
        .order_by(db.groups.c.name)
    )
    return tuple(str(r[0]) for r in rows)


def authenticate(engine: sa.Engine, token: str) -> User | None:
    """The user holding this token, or ``None``."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    presented = _hash(token)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(db.users.c.id, db.users.c.name, db.users.c.token_hash).where(
                db.users.c.token_hash == presented
            )
        ).first()
        if row is None or not hmac.compare_digest(str(row.token_hash), presented):
            return None
        return User(int(row.id), str(row.name), _groups_of(conn, int(row.id)))


def add_endpoint(
    engine: sa.Engine,
    name: str,
    settings: dict[str, Any],
    groups: tuple[str, ...] = (),
    open_to_all: bool = False,
) -> None:
    """Add (or replace) an endpoint: validated engine settings and the groups that may use it.

    Raises:
        InputError: Invalid settings, unknown groups, or an invalid name.
    """
    from fitaas.engines.endpoint import validate_settings

    _check_name(name, "endpoint")
    settings = validate_settings(settings, f"endpoint '{name}'")
    with engine.begin() as conn:
        group_ids = [_group_id(conn, g) for g in groups]
        existing = conn.execute(
            sa.select(db.endpoints.c.id).where(db.endpoints.c.name == name)
        ).scalar()
        values = {
            "engine": settings["engine"],
            "settings": settings,
            "open_to_all": open_to_all,
        }
        if existing is None:
            endpoint_id = _inserted(
                conn.execute(
                    sa.insert(db.endpoints).values(name=name, created=time.time(), **values)
                )
            )
        else:
            endpoint_id = existing
            conn.execute(
                sa.update(db.endpoints).where(db.endpoints.c.id == existing).values(values)
            )
            conn.execute(
                sa.delete(db.endpoint_groups).where(db.endpoint_groups.c.endpoint_id == existing)
            )
        for group_id in group_ids:
            conn.execute(
                sa.insert(db.endpoint_groups).values(endpoint_id=endpoint_id, group_id=group_id)
            )


def list_endpoints(engine: sa.Engine) -> list[EndpointInfo]:
    """Every endpoint with the groups that may use it."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.endpoints).order_by(db.endpoints.c.name)).all()
        out = []
        for row in rows:
            names = conn.execute(
                sa.select(db.groups.c.name)
                .join(db.endpoint_groups, db.endpoint_groups.c.group_id == db.groups.c.id)
                .where(db.endpoint_groups.c.endpoint_id == row.id)
                .order_by(db.groups.c.name)
            )
            out.append(
                EndpointInfo(
                    row.name, row.engine, bool(row.open_to_all), tuple(str(n[0]) for n in names)
                )
            )
        return out


def usable_endpoints(engine: sa.Engine, user: User) -> list[EndpointInfo]:
    """The endpoints this user may use."""
    return [e for e in list_endpoints(engine) if e.open_to_all or set(e.groups) & set(user.groups)]
