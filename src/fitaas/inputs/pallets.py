"""Published likelihoods ("pallets"): the :class:`Pallet` and :class:`Point` types, and
finding and loading them (files, folders, archives), fingerprinted by content.

A pallet is a background-only workspace plus, optionally, a patchset of signal
hypotheses. It can be given as a workspace file (``.json`` or ``.json.gz``) and a
patchset file, as a directory holding ``BkgOnly.json`` and ``patchset.json``
(possibly one level down, in region folders), or as a HEPData likelihood archive
(``.tar.gz``/``.tgz``) with the same layout inside. Reading the JSON is
:mod:`fitaas.inputs.json_files`'s; the schema checks are :mod:`fitaas.inputs.validation`'s.
"""

from __future__ import annotations

import difflib
import hashlib
import tarfile
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pyhf

from fitaas._version import __version__
from fitaas.caches import keep, kept
from fitaas.errors import InputError
from fitaas.inputs.digests import digest
from fitaas.inputs.downloads import fetch, is_address
from fitaas.inputs.json_files import load_json, parse_json_bytes
from fitaas.inputs.validation import validate_patchset, validated_workspace

__all__ = [
    "ARCHIVE_SUFFIXES",
    "Pallet",
    "PalletSpecs",
    "Point",
    "digest",
    "load_pallet",
    "pallet_specs",
    "regions",
]

_WORKSPACE_NAMES = ("BkgOnly.json", "BkgOnly.json.gz", "bkgonly.json", "bkgonly.json.gz")
_PATCHSET_NAMES = ("patchset.json", "patchset.json.gz")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass(frozen=True)
class Point:
    """One signal hypothesis of a pallet: a named patch with its metadata values.

    Attributes:
        name: The patch name (``None`` for the workspace itself, unpatched).
        values: The patch's metadata values (e.g. masses), in the order of the labels.
        operations: The JSON patch operations.
        digest: Content digest of the operations.
    """

    name: str | None
    values: tuple[Any, ...]
    operations: tuple[dict[str, Any], ...] = field(repr=False)
    digest: str

    def task_data(self) -> dict[str, Any]:
        """The point as worker tasks take it: ``{"name", "digest", "operations"}``."""
        return {"name": self.name, "digest": self.digest, "operations": list(self.operations)}


@dataclass(frozen=True)
class Pallet:
    """A validated background-only workspace and its signal points.

    Attributes:
        workspace: The workspace specification (decoded JSON).
        workspace_digest: Content digest of the workspace specification.
        labels: The patchset's labels for the point values (empty without patchset).
        points: The signal points, in patchset order; one unpatched point without patchset.
        source: A human description of where the pallet came from.
        patchset_description: The patchset's description, if any.
        units: Units of the labels, from the patchset metadata's ``units`` (a fitaas
            convention, e.g. ``{"m1": "GeV"}``), for axis titles.
    """

    workspace: dict[str, Any] = field(repr=False)
    workspace_digest: str
    labels: tuple[str, ...]
    points: tuple[Point, ...] = field(repr=False)
    source: str
    patchset_description: str | None = None
    units: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_specs(
        cls,
        workspace: Any,
        patchset: Any | None = None,
        *,
        verify: bool = True,
        source: str = "workspace",
        patchset_source: str = "patchset",
    ) -> Pallet:
        """Validate a workspace and optional patchset given as decoded JSON.

        Args:
            workspace: The workspace specification.
            patchset: The patchset specification, or ``None`` for the bare workspace.
            verify: Check the patchset's digest against the workspace (``PatchSet.verify``).
            source: How to name the workspace in error messages.
            patchset_source: How to name the patchset in error messages.

        Returns:
            The validated pallet.

        Raises:
            InputError: Schema violations, a digest mismatch, or duplicate patch names.
        """
        ws, workspace_digest = validated_workspace(workspace, source)
        if patchset is None:
            point = Point(name=None, values=(), operations=(), digest=digest([]))
            return cls(workspace, workspace_digest, (), (point,), source)
        ps = validate_patchset(patchset, patchset_source)
        if verify:
            try:
                ps.verify(ws)
            except pyhf.exceptions.PatchSetVerificationError as exc:
                raise InputError(
                    f"{patchset_source} was not made for {source}: {exc} "
                    "(apply it without the check to use it anyway)",
                    option="verify",
                ) from None
        points = tuple(
            Point(
                name=p.name,
                values=tuple(p.values),
                operations=tuple(p.patch),
                digest=digest(p.patch),
            )
            for p in ps.patches
        )
        units = patchset["metadata"].get("units")
        return cls(
            workspace,
            workspace_digest,
            tuple(ps.labels),
            points,
            f"{source} + {patchset_source}",
            ps.description,
            {str(k): str(v) for k, v in units.items()} if isinstance(units, dict) else {},
        )

    def point(self, name: str | None) -> Point:
        """The one point a single-point command works on: the named patch, else the only
        point (the workspace itself without patchset).

        Raises:
            InputError: No such patch, or several patches and no name.
        """
        if name:
            (found,) = self.select([name])
            return found
        if len(self.points) == 1:
            return self.points[0]
        names = ", ".join(str(p.name) for p in self.points[:5])
        raise InputError(
            f"the patchset has {len(self.points)} patches: choose one (e.g. {names}), or scan "
            "them all",
            option="patch",
        )

    def select(self, names: Sequence[str] | None) -> tuple[Point, ...]:
        """The points with the given patch names, in the order given, each once.

        Args:
            names: Patch names, or ``None`` (or empty) for every point; a name given
                twice selects its point once.

        Returns:
            The selected points.

        Raises:
            InputError: A name that is not in the patchset (near matches are listed).
        """
        if not names:
            return self.points
        by_name = {p.name: p for p in self.points if p.name is not None}
        selected = []
        for name in dict.fromkeys(names):
            if name not in by_name:
                near = difflib.get_close_matches(name, list(by_name), n=5, cutoff=0.6)
                hint = f"; did you mean {', '.join(near)}?" if near else ""
                what = "no patchset was given" if not by_name else f"{len(by_name)} patches"
                raise InputError(f"no patch named '{name}' ({what}){hint}")
            selected.append(by_name[name])
        return tuple(selected)


def _pick_region(regions: dict[str, dict[str, str]], region: str | None, where: str) -> str:
    if region is not None:
        if region not in regions:
            raise InputError(
                f"{where}: no region '{region}'; regions: {', '.join(sorted(regions))}"
            )
        return region
    if len(regions) == 1:
        return next(iter(regions))
    raise InputError(
        f"{where} holds several likelihoods; choose a region: {', '.join(sorted(regions))}",
        option="region",
    )


def _find_layout(names: Sequence[str], max_depth: int) -> dict[str, dict[str, str]]:
    """Group workspace and patchset files by region (the name of their folder).

    Args:
        names: File names relative to the top of a directory or archive.
        max_depth: How many folders down a likelihood may lie.

    Returns:
        Region name (``"."`` at the top) to ``{"workspace": name, "patchset": name}``.
    """
    regions: dict[str, dict[str, str]] = {}
    for name in names:
        path = PurePosixPath(name)
        if len(path.parts) - 1 > max_depth:
            continue
        region = path.parent.name or "."
        if path.name in _WORKSPACE_NAMES:
            regions.setdefault(region, {})["workspace"] = name
        elif path.name in _PATCHSET_NAMES:
            regions.setdefault(region, {})["patchset"] = name
    return {k: v for k, v in regions.items() if "workspace" in v}


def _directory_layout(path: Path) -> dict[str, dict[str, str]]:
    names = [p.relative_to(path).as_posix() for p in path.glob("**/*.json*") if p.is_file()]
    return _find_layout(names, max_depth=1)


def _load_directory(path: Path, region: str | None) -> tuple[Any, Any | None, str, str]:
    layout = _directory_layout(path)
    if not layout:
        raise InputError(f"{path}: no BkgOnly.json found here or one folder down")
    chosen = layout[_pick_region(layout, region, str(path))]
    ws_path = path / chosen["workspace"]
    ps_path = path / chosen["patchset"] if "patchset" in chosen else None
    return (
        load_json(ws_path),
        load_json(ps_path) if ps_path else None,
        str(ws_path),
        str(ps_path),
    )


def _load_archive(path: Path, region: str | None) -> tuple[Any, Any | None, str, str]:
    try:
        archive = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"{path}: not a readable tar archive ({exc})") from None
    with archive:
        try:
            members = {m.name: m for m in archive.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{path}: damaged tar archive ({exc})") from None
        # Archives are often wrapped in one top folder: regions may lie two levels down.
        layout = _find_layout(list(members), max_depth=2)
        if not layout:
            raise InputError(f"{path}: the archive holds no likelihood (no BkgOnly.json)")
        chosen = layout[_pick_region(layout, region, str(path))]

        def read(name: str) -> Any:
            handle = archive.extractfile(members[name])
            if handle is None:  # pragma: no cover - members are regular files
                raise InputError(f"{path}: cannot read {name}")
            return parse_json_bytes(handle.read(), f"{path}:{name}")

        ps_name = chosen.get("patchset")
        return (
            read(chosen["workspace"]),
            read(ps_name) if ps_name else None,
            f"{path}:{chosen['workspace']}",
            f"{path}:{ps_name}",
        )


def regions(path: str | Path) -> list[str]:
    """The region folders of a directory or archive holding likelihoods (``"."``: one at
    its top), in order.

    Raises:
        InputError: Neither a directory nor a readable archive, or no likelihood in it.
    """
    where = Path(path)
    if where.is_dir():
        layout = _directory_layout(where)
    elif where.name.endswith(ARCHIVE_SUFFIXES):
        try:
            with tarfile.open(where, mode="r:*") as archive:
                layout = _find_layout([m.name for m in archive.getmembers() if m.isfile()], 2)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{where}: not a readable tar archive ({exc})") from None
    else:
        raise InputError(f"{where}: regions live in a directory or an archive")
    if not layout:
        raise InputError(f"{where}: no likelihood (no BkgOnly.json) here")
    return sorted(layout)


def load_pallet(
    workspace: str | Path | dict[str, Any],
    patchset: str | Path | dict[str, Any] | None = None,
    *,
    region: str | None = None,
    verify: bool = True,
) -> Pallet:
    """Load and validate a pallet from files, a directory, an archive or decoded JSON.

    Args:
        workspace: A workspace file, a directory, a HEPData archive, an http(s) address of
            a file or archive (downloaded once, see :mod:`fitaas.inputs.downloads`), or a decoded
            spec.
        patchset: A patchset file, address or decoded spec; found automatically in a
            directory or archive when not given.
        region: The region folder to use when a directory or archive holds several.
        verify: Check the patchset's digest against the workspace.

    Returns:
        The validated pallet.

    Raises:
        InputError: Anything that makes the inputs unusable, named in one line.
    """

    if is_address(workspace):
        workspace = fetch(str(workspace))
    if is_address(patchset):
        patchset = fetch(str(patchset))
    files = _source_files(workspace, patchset, region)
    key = _pallet_key(files, region, verify) if files else None
    found = kept("pallets", key) if key else None
    if isinstance(found, Pallet):  # these very bytes were parsed, validated, digested
        return found
    pallet = _load(workspace, patchset, region, verify)
    if key:
        keep("pallets", key, pallet)
    return pallet


def _source_files(
    workspace: str | Path | dict[str, Any], patchset: Any, region: str | None
) -> list[tuple[str, Path]] | None:
    """The files whose bytes make the pallet, each with its role (``None``: decoded inputs,
    nothing to key)."""
    if isinstance(workspace, dict) or isinstance(patchset, dict):
        return None
    path = Path(workspace)
    files = [("workspace", path)]
    if path.is_dir():
        layout = _directory_layout(path)
        if not layout:
            return None
        with suppress(InputError):
            chosen = layout[_pick_region(layout, region, str(path))]
            files = [(role, path / name) for role, name in sorted(chosen.items())]
    if patchset is not None:
        files.append(("patchset", Path(patchset)))
    return files if all(f.is_file() for _, f in files) else None


def _pallet_key(files: list[tuple[str, Path]], region: str | None, verify: bool) -> str | None:
    """The content key of a pallet loaded from ``files``: their roles and bytes (and how
    they are read), pyhf's and fitaas's versions."""

    hasher = hashlib.sha256()
    try:
        for role, path in files:
            hasher.update(f"{role}:{path.stat().st_size}:".encode())
            hasher.update(path.read_bytes())
    except OSError:
        return None
    hasher.update(repr((region, verify, str(pyhf.__version__), __version__)).encode())
    hasher.update(_this_code())  # (what a kept pallet is: this module's classes)
    return hasher.hexdigest()


@cache
def _this_code() -> bytes:
    """A digest of this module's code: a pallet kept by other code is not read back."""
    return hashlib.sha256(Path(__file__).read_bytes()).digest()


@dataclass(frozen=True)
class PalletSpecs:
    """A pallet's documents as read, not yet validated.

    Attributes:
        workspace: The workspace specification (decoded JSON).
        patchset: The patchset specification, or ``None``.
        workspace_source: Where the workspace was read (for messages).
        patchset_source: Where the patchset was read.
    """

    workspace: Any = field(repr=False)
    patchset: Any | None = field(repr=False)
    workspace_source: str = "workspace"
    patchset_source: str = "patchset"


def pallet_specs(
    workspace: str | Path | dict[str, Any],
    patchset: str | Path | dict[str, Any] | None = None,
    region: str | None = None,
) -> PalletSpecs:
    """Read a pallet's workspace and patchset JSON from files, a directory, an archive, an
    address (downloaded once) or decoded JSON, without validating them (a client uploads
    them as they are).

    Raises:
        InputError: A file that cannot be read or parsed, or no likelihood found.
    """

    if is_address(workspace):
        workspace = fetch(str(workspace))
    if is_address(patchset):
        patchset = fetch(str(patchset))
    ps_spec: Any | None
    ps_source = "patchset"
    if isinstance(workspace, dict):
        ws_spec, ws_source, ps_spec = workspace, "workspace", None
    else:
        path = Path(workspace)
        if path.is_dir():
            ws_spec, ps_spec, ws_source, ps_source = _load_directory(path, region)
        elif path.name.endswith(ARCHIVE_SUFFIXES):
            ws_spec, ps_spec, ws_source, ps_source = _load_archive(path, region)
        else:
            ws_spec, ws_source, ps_spec = load_json(path), str(path), None
    if patchset is not None:
        if isinstance(patchset, dict):
            ps_spec, ps_source = patchset, "patchset"
        else:
            ps_spec, ps_source = load_json(patchset), str(patchset)
    if _kind_of(ws_spec) == "patchset":  # (said, not swapped behind the user's back)
        if _kind_of(ps_spec) == "workspace":
            raise InputError(
                f"{ws_source} is a patchset and {ps_source} a workspace: the workspace comes "
                "first (WORKSPACE PATCHSET)"
            )
        raise InputError(f"{ws_source} is a patchset: give its background-only workspace first")
    return PalletSpecs(ws_spec, ps_spec, ws_source, ps_source)


def _kind_of(spec: Any) -> str | None:
    """``"workspace"`` or ``"patchset"`` by the keys only each has (``None``: neither)."""
    if not isinstance(spec, dict):
        return None
    if "channels" in spec:
        return "workspace"
    return "patchset" if "patches" in spec else None


def _load(
    workspace: str | Path | dict[str, Any],
    patchset: str | Path | dict[str, Any] | None,
    region: str | None,
    verify: bool,
) -> Pallet:
    specs = pallet_specs(workspace, patchset, region)
    return Pallet.from_specs(
        specs.workspace,
        specs.patchset,
        verify=verify,
        source=specs.workspace_source,
        patchset_source=specs.patchset_source,
    )
