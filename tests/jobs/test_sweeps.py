"""Sweeps: several pallets as one job on one engine, each pallet's results its own."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

import fitaas
from conftest import run_cli
from pallet_builders import variant

PATCHES = ["demo_700_0", "demo_800_200"]


def test_a_sweep_of_three_pallets_equals_their_scans(demo: Path, tmp_path: Path) -> None:
    folders = [variant(demo, tmp_path / name, extra) for name, extra in [("a", 0), ("b", 3)]]
    pair = f"{demo / 'BkgOnly.json'}:{demo / 'patchset.json'}"
    store = tmp_path / "store.sqlite"
    swept = fitaas.sweep(
        [*folders, pair], patches=PATCHES, store=store, compute=fitaas.Compute(workers=2)
    )
    assert list(swept) == ["a", "b", demo.name]  # a pair is named after its folder
    for source, result in zip([*folders, demo], swept.values(), strict=True):
        alone = fitaas.scan(source, patches=PATCHES, store=store)
        assert alone.computed == 0  # the sweep stored them, by content
        assert [p.cls_obs for p in alone] == [p.cls_obs for p in result]
    assert [p.cls_obs for p in swept["a"]] == [p.cls_obs for p in swept[demo.name]]
    assert [p.cls_obs for p in swept["a"]] != [p.cls_obs for p in swept["b"]]


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_all_regions_of_a_folder_from_the_cli(demo: Path, tmp_path: Path) -> None:
    variant(demo, tmp_path / "analysis" / "SR1", 0)
    variant(demo, tmp_path / "analysis" / "SR2", 3)
    ran = run_cli("scan", "analysis", "--all-regions", "-p", PATCHES[0], "-o", "out", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    written = sorted(p.name for p in (tmp_path / "out").glob("*.json"))
    assert written == ["analysis__SR1.json", "analysis__SR2.json"]
    assert "analysis/SR1" in ran.stderr and "analysis/SR2" in ran.stderr
    one = json.loads((tmp_path / "out" / "analysis__SR2.json").read_text())["results"]
    assert [r["patch"] for r in one] == [PATCHES[0]]
    # the same regions from an archive: every region too, the results from the store
    with tarfile.open(tmp_path / "analysis.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "analysis", arcname="analysis")
    packed = fitaas.sweep(
        [tmp_path / "analysis.tar.gz"], all_regions=True, patches=PATCHES[:1],
        compute=fitaas.Compute(workers=1),
        store=tmp_path / "fitaas-store.sqlite",  # (the CLI's, tests/conftest.py)
    )  # fmt: skip
    assert list(packed) == ["analysis/SR1", "analysis/SR2"]
    assert all(r.computed == 0 for r in packed.values())
