"""``fitaas combine``: pyhf's combination of renamed inputs, and clashes as one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyhf
import pytest

from conftest import plain_hypotest, run_cli
from fitaas import InputError, load_pallet
from fitaas.inputs.combine import Renames, combine_workspaces
from fitaas.jobs.combined_scans import combine_pallets
from pallet_builders import analysis_b


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
    from click.testing import CliRunner

    from fitaas.cli import cli

    out = str(tmp_path / "c.json")
    clash = CliRunner().invoke(cli, ["combine", str(demo), str(demo), "-o", out])
    assert clash.exit_code == 2 and len(clash.stderr.strip().splitlines()) == 1
    assert "channels in common" in clash.stderr and "SR_low" in clash.stderr
    assert not (tmp_path / "c.json").exists()
    spec = json.loads((demo / "BkgOnly.json").read_text())
    with pytest.raises(InputError, match="workspace 2: no modifier named 'JESS'"):
        combine_workspaces([spec, spec], renames=[None, Renames(modifiers={"JESS": "X"})])
    with pytest.raises(InputError, match="two workspaces at least"):
        combine_workspaces([spec])
    joined = combine_workspaces([spec, spec], join="outer")
    assert len(joined["channels"]) == len(spec["channels"])


def _by_hand(demo: Path, b: Path, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The combined workspace by pyhf, and the point's combined patch written out: every
    operation of both analyses addressed by channel name, the shared channel filled once."""
    specs = [json.loads((f / "BkgOnly.json").read_text()) for f in (demo, b)]
    combined = dict(pyhf.Workspace.combine(*(pyhf.Workspace(s) for s in specs), join="outer"))
    index = {c["name"]: i for i, c in enumerate(combined["channels"])}
    operations: list[dict[str, Any]] = []
    for folder, spec in zip((demo, b), specs, strict=True):
        patchset = json.loads((folder / "patchset.json").read_text())
        patch = next(p for p in patchset["patches"] if p["metadata"]["name"] == name)
        for op in patch["patch"]:
            channel = spec["channels"][int(op["path"].split("/")[2])]["name"]
            if folder == b and channel == "SR_high":
                continue  # filled by the demo already, identically
            operations.append({**op, "path": f"/channels/{index[channel]}/samples/-"})
    return combined, operations


def test_a_scan_of_a_combination_equals_the_hand_built_combined_model(
    demo: Path, tmp_path: Path
) -> None:
    b = analysis_b(demo, tmp_path / "b")
    from click.testing import CliRunner

    from fitaas.cli import cli

    args = [
        "scan",
        str(demo),
        str(b),
        "--combine",
        "--join",
        "outer",
        "-o",
        str(tmp_path / "c.json"),
    ]
    ran = CliRunner().invoke(cli, args, prog_name="fitaas")
    assert ran.exit_code == 0, ran.stderr
    assert "17 points of " in ran.stderr and "1 point of b is not in every" in ran.stderr
    results = json.loads((tmp_path / "c.json").read_text())["results"]
    names = json.loads((demo / "patchset.json").read_text())["patches"]
    assert [r["patch"] for r in results] == [names[i]["metadata"]["name"] for i in (6, 9, 12)]
    for result in results[:2]:
        combined, operations = _by_hand(demo, b, result["patch"])
        cls_obs, cls_exp, _, _ = plain_hypotest(combined, operations)
        assert result["cls_obs"] == pytest.approx(cls_obs, rel=1e-4, abs=1e-7)
        assert result["cls_exp"] == pytest.approx(cls_exp, rel=1e-4, abs=1e-7)
        alone = plain_hypotest(json.loads((demo / "BkgOnly.json").read_text()), next(
            p["patch"] for p in names if p["metadata"]["name"] == result["patch"]))  # fmt: skip
        assert result["cls_obs"] < 0.9 * alone[0]  # B's signal counts too


def test_a_shared_channel_filled_differently_is_named(demo: Path, tmp_path: Path) -> None:
    entries = [
        ("demo", load_pallet(demo)),
        ("b", load_pallet(analysis_b(demo, tmp_path / "b", True))),
    ]
    with pytest.raises(InputError, match="demo and b fill channel 'SR_high' differently"):
        combine_pallets(entries, join="outer")
    with pytest.raises(InputError, match="channels in common"):
        combine_pallets(entries)  # join none: SR_high is in both
    combination = combine_pallets(
        [("demo", load_pallet(demo)), ("b", load_pallet(analysis_b(demo, tmp_path / "b2")))],
        join="outer",
        match="values",
    )
    assert len(combination.pallet.points) == 3 and combination.unmatched["b"] == ("only_in_b",)
