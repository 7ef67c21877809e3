"""Inputs the tests build from the demo pallet: theory models and their JSON Lines file, a
second analysis to combine with it, variants of it for sweeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fitaas.inputs.pallets import digest

__all__ = ["analysis_b", "jsonl", "theory_models", "variant"]


def theory_models(demo: Path) -> list[dict[str, Any]]:
    patchset = json.loads((demo / "patchset.json").read_text())
    return [
        {"name": p["metadata"]["name"], "values": p["metadata"]["values"], "patch": p["patch"]}
        for p in patchset["patches"]
    ]


def jsonl(path: Path, models: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in models))
    return path


def analysis_b(demo: Path, folder: Path, conflict: bool = False) -> Path:
    """A second analysis: the demo's SR_high shared (filled as the demo fills it, unless
    ``conflict``), its other regions its own (renamed, signal halved), channels in another
    order; three of the demo's points and one of its own."""
    spec = json.loads((demo / "BkgOnly.json").read_text())
    patchset = json.loads((demo / "patchset.json").read_text())
    order = ["SR_mid", "SR_high", "SR_low"]
    new = {"SR_mid": "B_SR_mid", "SR_high": "SR_high", "SR_low": "B_SR_low"}
    channels = {c["name"]: c for c in spec["channels"]}
    observed = {o["name"]: o for o in spec["observations"]}
    renamed = json.loads(
        json.dumps([channels[n] for n in order])
        .replace('"staterror_SR_low"', '"staterror_B_SR_low"')
        .replace('"staterror_SR_mid"', '"staterror_B_SR_mid"')
    )
    for channel, name in zip(renamed, order, strict=True):
        channel["name"] = new[name]
    spec_b = {
        **spec,
        "channels": renamed,
        "observations": [{**observed[n], "name": new[n]} for n in order],
    }
    names_a = [c["name"] for c in spec["channels"]]
    patches = []
    shared = [patchset["patches"][i] for i in (6, 9, 12)]  # CLs 0.03, 0.13, 0.32 alone
    for patch in [*shared, {**patchset["patches"][3], "metadata": {
            "name": "only_in_b", "values": [1, 2]}}]:  # fmt: skip
        operations = []
        for op in patch["patch"]:
            name = names_a[int(op["path"].split("/")[2])]
            value = json.loads(json.dumps(op["value"]))
            if name != "SR_high" or conflict:
                value["data"] = [0.5 * x for x in value["data"]]
            path = f"/channels/{order.index(name)}/samples/-"
            operations.append({"op": "add", "path": path, "value": value})
        patches.append({"metadata": patch["metadata"], "patch": operations})
    patchset_b = {**patchset, "patches": patches}
    patchset_b["metadata"] = {**patchset["metadata"], "digests": {"sha256": digest(spec_b)}}
    folder.mkdir()
    (folder / "BkgOnly.json").write_text(json.dumps(spec_b))
    (folder / "patchset.json").write_text(json.dumps(patchset_b))
    return folder


def variant(demo: Path, folder: Path, extra: float) -> Path:
    """The demo pallet with ``extra`` events more observed in every bin."""
    folder.mkdir(parents=True)
    spec = json.loads((demo / "BkgOnly.json").read_text())
    for observation in spec["observations"]:
        observation["data"] = [v + extra for v in observation["data"]]
    (folder / "BkgOnly.json").write_text(json.dumps(spec))
    patchset = json.loads((demo / "patchset.json").read_text())
    patchset["metadata"]["digests"] = {"sha256": digest(spec)}
    (folder / "patchset.json").write_text(json.dumps(patchset))
    return folder
