"""The results store: one table, keyed by content, in an SQLite file or any SQL database."""

from __future__ import annotations

from pathlib import Path

import pytest

from fitaas.jobs.outcomes import Outcome
from fitaas.store import (
    Record,
    ResultStore,
    SqliteResultStore,
    open_store,
    result_key,
    store_label,
)
from fitaas.store.sql import SqlResultStore


def _put(store: ResultStore, key: str, status: str = "ok") -> None:
    outcome = Outcome(status, {"cls_obs": 0.1} if status == "ok" else None, None, 1.0)
    store.put(
        Record(key, "w", "p", "pd", "hypotest", {"poi_value": 1.0}, "0.7.6", outcome.to_dict())
    )


@pytest.mark.parametrize("where", ["plain.sqlite", "sqlite:///{tmp}/url.sqlite"])
def test_both_stores_keep_outcomes_by_key(where: str, tmp_path: Path) -> None:
    path = where.format(tmp=tmp_path) if "://" in where else tmp_path / where
    with open_store(path) as store:
        assert isinstance(store, SqlResultStore) == ("://" in where)
        _put(store, "k1")
        _put(store, "k2", status="failed")
        _put(store, "k1")  # replaced, not duplicated
        found = store.get(["k1", "k2", "k3", "k1"])
    assert set(found) == {"k1", "k2"}
    assert found["k1"].status == "ok" and found["k1"].outcome["result"] == {"cls_obs": 0.1}
    assert found["k2"].status == "failed"
    assert Outcome.from_dict(found["k1"].outcome) == Outcome("ok", {"cls_obs": 0.1}, None, 1.0)
    with open_store(path) as again:  # kept on disk
        assert set(again.get(["k1"])) == {"k1"}


def test_open_store_takes_paths_and_database_urls(tmp_path: Path) -> None:
    with open_store(tmp_path / "a.sqlite") as plain:
        assert type(plain) is SqliteResultStore and isinstance(plain, ResultStore)
    with open_store(f"sqlite:///{tmp_path / 'b.sqlite'}") as sql:
        assert isinstance(sql, SqlResultStore) and isinstance(sql, ResultStore)
    assert (tmp_path / "b.sqlite").is_file()
    assert not (tmp_path / "sqlite:").exists()  # (a URL once became a file of that name)
    assert store_label("postgresql://u:secret@host/db") == "postgresql://u:***@host/db"


def test_one_table_definition_serves_both_stores(tmp_path: Path) -> None:
    import sqlite3

    import sqlalchemy as sa

    with open_store(tmp_path / "plain.sqlite"):
        pass
    with open_store(f"sqlite:///{tmp_path / 'sql.sqlite'}"):
        pass
    shapes = []
    for name in ("plain.sqlite", "sql.sqlite"):
        engine = sa.create_engine(f"sqlite:///{tmp_path / name}")
        inspector = sa.inspect(engine)
        columns = [(c["name"], c["nullable"]) for c in inspector.get_columns("results")]
        indexes = [tuple(i["column_names"]) for i in inspector.get_indexes("results")]
        shapes.append((columns, indexes))
        engine.dispose()
    assert shapes[0] == shapes[1]
    assert shapes[0][1] == [("workspace_digest", "kind")]
    assert [name for name, _ in shapes[0][0]][:2] == ["key", "workspace_digest"]
    assert sqlite3.sqlite_version  # (the plain store needs nothing but the standard library)


def test_a_key_is_its_content() -> None:
    key = result_key("w", "p", "hypotest", {"a": 1, "b": 2}, "0.7.6")
    assert key == result_key("w", "p", "hypotest", {"b": 2, "a": 1}, "0.7.6")
    assert key != result_key("w", "p", "hypotest", {"a": 1, "b": 3}, "0.7.6")
    assert key != result_key("w", "p", "fit", {"a": 1, "b": 2}, "0.7.6")
    assert key != result_key("w", "p", "hypotest", {"a": 1, "b": 2}, "0.7.5")


def test_the_digest_is_pyhfs_without_importing_pyhf() -> None:
    import subprocess
    import sys

    import pyhf

    from fitaas.inputs.digests import digest

    for obj in ({"b": 1.5, "a": [1, 2.0, None]}, {"name": "µ→τ", "x": 1e-300}, [], "text"):
        assert digest(obj) == pyhf.utils.digest(obj, algorithm="sha256")
    # keying a record, and the service's admin database, leave pyhf (and numpy) unimported
    code = (
        "import sys; from fitaas.store.records import result_key; import fitaas.service.db; "
        "result_key('w', 'p', 'hypotest', {}, '0.7'); "
        "print(sorted({'pyhf', 'numpy', 'fastapi'} & set(sys.modules)))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"
