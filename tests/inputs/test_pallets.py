"""Loading pallets from every supported form, and clear errors for bad input."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest

from fitaas import InputError, load_pallet
from fitaas.inputs.pallets import digest


def _write(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def test_json_and_gzip_give_the_same_pallet(demo: Path, tmp_path: Path) -> None:
    gz = tmp_path / "patchset.json.gz"
    gz.write_bytes(gzip.compress((demo / "patchset.json").read_bytes()))
    plain = load_pallet(demo / "BkgOnly.json", demo / "patchset.json")
    zipped = load_pallet(demo / "BkgOnly.json", gz)
    assert plain.workspace_digest == zipped.workspace_digest
    assert [p.digest for p in plain.points] == [p.digest for p in zipped.points]
    assert plain.labels == ("m1", "m2")
    assert len(plain.points) == 20
    assert plain.points[0].values == (300, 0)


def test_directory_with_regions(demo: Path, tmp_path: Path) -> None:
    for region in ("RegionA", "RegionB"):
        for name in ("BkgOnly.json", "patchset.json"):
            (tmp_path / region).mkdir(exist_ok=True)
            (tmp_path / region / name).write_bytes((demo / name).read_bytes())
    with pytest.raises(InputError, match=r"choose a region: RegionA, RegionB"):
        load_pallet(tmp_path)
    with pytest.raises(InputError, match=r"no region 'RegionC'; regions: RegionA, RegionB"):
        load_pallet(tmp_path, region="RegionC")
    pallet = load_pallet(tmp_path, region="RegionB")
    assert len(pallet.points) == 20
    assert "RegionB" in pallet.source


def test_hepdata_archive(demo: Path, tmp_path: Path) -> None:
    archive = tmp_path / "likelihoods.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(demo / "BkgOnly.json", arcname="SUSY-0000-00/BkgOnly.json")
        tar.add(demo / "patchset.json", arcname="SUSY-0000-00/patchset.json")
    pallet = load_pallet(archive)
    assert len(pallet.points) == 20
    assert pallet.workspace_digest == load_pallet(demo / "BkgOnly.json").workspace_digest


def test_archive_without_likelihood(tmp_path: Path) -> None:
    readme = _write(tmp_path / "README.json", {"nothing": "here"})
    archive = tmp_path / "empty.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(readme, arcname="README.json")
    with pytest.raises(InputError, match="the archive holds no likelihood"):
        load_pallet(archive)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "BkgOnly.json"
    bad.write_text('{\n  "channels": [\n    {"name": "x",,}\n  ]\n}\n')
    with pytest.raises(InputError, match=r"BkgOnly.json: malformed JSON at line 3, column"):
        load_pallet(bad)


def test_schema_invalid_workspace_names_the_key(demo: Path, tmp_path: Path) -> None:
    spec = json.loads((demo / "BkgOnly.json").read_text())
    del spec["channels"][1]["samples"][0]["data"]
    with pytest.raises(
        InputError, match=r"fails pyhf's schema at 'channels\[1\].samples\[0\]'.*'data'"
    ):
        load_pallet(_write(tmp_path / "ws.json", spec))
    # a typo'd key of a modifier: named, not the whole modifier "not valid under any of
    # the given schemas"
    spec = json.loads((demo / "BkgOnly.json").read_text())
    modifier = spec["channels"][0]["samples"][0]["modifiers"][0]
    modifier["nmae"] = modifier.pop("name")
    with pytest.raises(InputError) as caught:
        load_pallet(_write(tmp_path / "typo.json", spec))
    said = str(caught.value)
    assert "modifiers[0]'" in said and "('nmae' was unexpected)" in said
    assert "'name' is a required property" in said
    assert "not valid under any of the given schemas" not in said
    modifier["name"] = modifier.pop("nmae")
    modifier["data"] = {"hi": 1.1, "lwo": 0.9}
    with pytest.raises(InputError, match=r"data: 'lo' is a required property"):
        load_pallet(_write(tmp_path / "typo2.json", spec))


def test_patchset_for_another_workspace(demo: Path, tmp_path: Path, workspaces: Path) -> None:
    other = workspaces / "pyhf-examples" / "example_patchset.json"
    with pytest.raises(
        InputError, match=r"was not made for .*digest verification failed.*without the check"
    ):
        load_pallet(demo / "BkgOnly.json", other)


def test_no_verify_accepts_a_mismatched_patchset(demo: Path, tmp_path: Path) -> None:
    spec = json.loads((demo / "patchset.json").read_text())
    spec["metadata"]["digests"]["sha256"] = "0" * 64
    path = _write(tmp_path / "ps.json", spec)
    with pytest.raises(InputError, match="digest"):
        load_pallet(demo / "BkgOnly.json", path)
    assert len(load_pallet(demo / "BkgOnly.json", path, verify=False).points) == 20


def test_unknown_patch_lists_near_matches(demo: Path) -> None:
    pallet = load_pallet(demo / "BkgOnly.json", demo / "patchset.json")
    with pytest.raises(InputError, match=r"no patch named 'demo_700_10'.*did you mean demo_700_0"):
        pallet.select(["demo_700_10"])
    assert [p.name for p in pallet.select(["demo_800_200", "demo_300_0"])] == [
        "demo_800_200",
        "demo_300_0",
    ]


def test_missing_and_unreadable_files(demo: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothere.json: no such file"):
        load_pallet(tmp_path / "nothere.json")
    with pytest.raises(InputError, match=r"no BkgOnly.json found"):
        load_pallet(tmp_path)
    (tmp_path / "ps.json").mkdir()
    with pytest.raises(InputError, match=r"ps.json: is a directory"):
        load_pallet(demo / "BkgOnly.json", tmp_path / "ps.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(InputError, match=r"bin.json: not UTF-8"):
        load_pallet(tmp_path / "bin.json")
    (tmp_path / "trunc.json.gz").write_bytes(gzip.compress(b'{"a": 1}')[:12])
    with pytest.raises(InputError, match=r"trunc.json.gz: the gzip data is cut short"):
        load_pallet(tmp_path / "trunc.json.gz")


def test_digest_is_pyhfs(demo: Path) -> None:
    import pyhf

    spec = json.loads((demo / "BkgOnly.json").read_text())
    assert digest(spec) == pyhf.utils.digest(spec)
    assert load_pallet(demo / "BkgOnly.json").workspace_digest == pyhf.utils.digest(spec)


def test_a_pallet_is_parsed_once_per_content(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from fitaas.inputs import pallets

    monkeypatch.setenv("FITAAS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "pallet"
    shutil.copytree(demo, folder)
    first = load_pallet(folder)
    calls = []
    real = pallets._load
    monkeypatch.setattr(pallets, "_load", lambda *a: calls.append(a) or real(*a))
    again = load_pallet(folder)
    assert again == first and calls == []  # the same bytes: parsed, validated, digested once
    spec = json.loads((folder / "BkgOnly.json").read_text())
    spec["observations"][0]["data"][0] += 1
    (folder / "BkgOnly.json").write_text(json.dumps(spec))
    changed = load_pallet(folder, verify=False)
    assert len(calls) == 1 and changed.workspace_digest != first.workspace_digest
    for cached in (tmp_path / "cache" / "pallets").iterdir():
        cached.chmod(0o666)  # writable by others: never unpickled
    load_pallet(folder, verify=False)
    assert len(calls) == 2
    # one kept by another version (its classes elsewhere: not unpicklable here) is made
    # again, and kept anew
    for cached in (tmp_path / "cache" / "pallets").iterdir():
        cached.chmod(0o644)
        cached.write_bytes(b"\x80\x05\x95\x10\x00cfitaas.pallets\nPallet\n.")
    assert load_pallet(folder, verify=False) == changed and len(calls) == 3
    assert load_pallet(folder, verify=False) == changed and len(calls) == 3


def test_files_in_the_wrong_order_are_said(demo: Path) -> None:
    load_pallet(demo)  # (kept by its files' roles and bytes: the wrong order is not it)
    with pytest.raises(InputError, match=r"patchset.json is a patchset and .*BkgOnly.json a "):
        load_pallet(demo / "patchset.json", demo / "BkgOnly.json")
    with pytest.raises(InputError, match="is a patchset: give its background-only workspace"):
        load_pallet(demo / "patchset.json")
