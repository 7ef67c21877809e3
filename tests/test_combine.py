"""``fitaas combine``: pyhf's combination of renamed inputs, and clashes as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pyhf
import pytest

from conftest import run_cli
from fitaas import InputError
from fitaas.combine import Renames, combine_workspaces


def _prefixed(spec: dict[str, object], prefix: str) -> pyhf.Workspace:
    workspace = pyhf.Workspace(spec)
    return workspace.rename(channels={c: prefix + c for c in workspace.channels})


def test_combine_equals_pyhf_on_renamed_inputs(demo: Path, tmp_path: Path) -> None:
    spec = json.loads((demo / "BkgOnly.json").read_text())
    made = run_cli(
        "combine", str(demo), str(demo / "BkgOnly.json"), "-o", "c.json", "--prefix", "A_",
        "--prefix", "B_", "--rename-measurement", "2:demo=other", "--rename-param",
        "2:JES=JES_B", cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    combined = json.loads((tmp_path / "c.json").read_text())
    renamed = {"modifiers": {"JES": "JES_B"}, "measurements": {"demo": "other"}}
    second = _prefixed(spec, "B_").rename(**renamed)
    expected = pyhf.Workspace.combine(_prefixed(spec, "A_"), second)
    assert combined == json.loads(json.dumps(dict(expected)))
    pyhf.Workspace(combined)  # valid for pyhf's schema
    assert {n for n, _ in pyhf.Workspace(combined).modifiers} >= {"JES", "JES_B", "lumi"}


def test_clashes_and_bad_renames_are_one_line(demo: Path, tmp_path: Path) -> None:
    clash = run_cli("combine", str(demo), str(demo), "-o", "c.json", cwd=tmp_path)
    assert clash.returncode == 2 and len(clash.stderr.strip().splitlines()) == 1
    assert "channels in common" in clash.stderr and "SR_low" in clash.stderr
    assert not (tmp_path / "c.json").exists()
    spec = json.loads((demo / "BkgOnly.json").read_text())
    with pytest.raises(InputError, match="workspace 2: no modifier named 'JESS'"):
        combine_workspaces([spec, spec], renames=[None, Renames(modifiers={"JESS": "X"})])
    with pytest.raises(InputError, match="two workspaces at least"):
        combine_workspaces([spec])
    joined = combine_workspaces([spec, spec], join="outer")
    assert len(joined["channels"]) == len(spec["channels"])
