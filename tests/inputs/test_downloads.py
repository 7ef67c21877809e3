"""Pallets by address: downloaded once from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import fitaas
from conftest import run_cli


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback serving ``tmp_path/www``; yields its address and the
    paths it was asked for."""
    root = tmp_path / "www"
    root.mkdir()
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", asked
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_a_pallet_by_address_is_downloaded_once(
    demo: Path, tmp_path: Path, server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, asked = server
    monkeypatch.setenv("FITAAS_CACHE", str(tmp_path / "cache"))
    with tarfile.open(tmp_path / "www" / "likelihoods.tar.gz", "w:gz") as archive:
        for name in ("BkgOnly.json", "patchset.json"):
            archive.add(demo / name, arcname=f"demo/{name}")
    local = fitaas.load_pallet(demo)
    fetched = fitaas.load_pallet(f"{address}/likelihoods.tar.gz")
    assert fetched.workspace_digest == local.workspace_digest
    assert [p.name for p in fetched.points] == [p.name for p in local.points]
    tested = run_cli("hypotest", f"{address}/likelihoods.tar.gz", "-p", "demo_700_0")
    assert tested.returncode == 0, tested.stderr
    assert asked == ["/likelihoods.tar.gz"]  # the second and third use the cache
    missing = run_cli("scan", f"{address}/nothing.tar.gz")
    assert missing.returncode == 2 and "nothing.tar.gz: cannot download it" in missing.stderr
    assert "404" in missing.stderr
    assert not list((tmp_path / "cache" / "downloads").glob("*/nothing.tar.gz"))
