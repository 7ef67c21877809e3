"""The results store: one table, keyed by content, in an SQLite file or any SQL database."""

from __future__ import annotations

from pathlib import Path

import pytest

from fitaas.sql_store import SqlResultStore
from fitaas.store import ResultStore, open_store, result_key, store_label


def _put(store: ResultStore, key: str, status: str = "ok") -> None:
    store.put(
        key,
        workspace_digest="w",
        patch="p",
        patch_digest="pd",
        kind="hypotest",
        options={"poi_value": 1.0},
        pyhf_version="0.7.6",
        outcome={"status": status, "result": {"cls_obs": 0.1}, "error": None, "seconds": 1.0},
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
    with open_store(path) as again:  # kept on disk
        assert set(again.get(["k1"])) == {"k1"}


def test_open_store_takes_paths_and_database_urls(tmp_path: Path) -> None:
    with open_store(tmp_path / "a.sqlite") as plain:
        assert type(plain) is ResultStore
    with open_store(f"sqlite:///{tmp_path / 'b.sqlite'}") as sql:
        assert isinstance(sql, SqlResultStore)
    assert (tmp_path / "b.sqlite").is_file()
    assert not (tmp_path / "sqlite:").exists()  # (a URL once became a file of that name)
    assert store_label("postgresql://u:secret@host/db") == "postgresql://u:***@host/db"


def test_a_key_is_its_content() -> None:
    key = result_key("w", "p", "hypotest", {"a": 1, "b": 2}, "0.7.6")
    assert key == result_key("w", "p", "hypotest", {"b": 2, "a": 1}, "0.7.6")
    assert key != result_key("w", "p", "hypotest", {"a": 1, "b": 3}, "0.7.6")
    assert key != result_key("w", "p", "fit", {"a": 1, "b": 2}, "0.7.6")
    assert key != result_key("w", "p", "hypotest", {"a": 1, "b": 2}, "0.7.5")
