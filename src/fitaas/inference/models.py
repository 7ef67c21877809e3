"""A point's model: the workspace with its patch applied (copying only what the patch
touches), the measurement checked by name, pyhf's ``Model`` and data built as plain pyhf
builds them, and counts the model cannot take named by channel and bin.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch
import numpy as np
import pyhf

from fitaas.errors import InputError
from fitaas.inference.options import InferenceOptions, plain_json

__all__ = [
    "build_model",
    "check_measurement",
    "check_physical",
    "patched_spec",
]


def _pointer(path: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]


def _copy_along(spec: dict[str, Any], path: str, copied: set[int]) -> None:
    """Shallow-copy the containers on the way to ``path`` (copy on write)."""
    parent: Any = spec
    for token in _pointer(path)[:-1]:
        try:
            key: Any = int(token) if isinstance(parent, list) else token
            child = parent[key]
        except (ValueError, KeyError, IndexError, TypeError):
            return  # the patch does not apply: jsonpatch says why
        if not isinstance(child, dict | list):
            return
        if id(child) not in copied:
            child = dict(child) if isinstance(child, dict) else list(child)
            parent[key] = child
            copied.add(id(child))
        parent = child


class _Specification(dict[str, Any]):
    """A model specification whose deep copy is a pickle round trip.

    ``pyhf.Model`` deep-copies its specification; ``copy.deepcopy``'s general walk (a memo
    entry per object) took 0.10 s of a 1Lbb model's 0.25 s, a JSON copy (``plain_json``)
    66 ms, a pickle round trip 47 ms (the specification is JSON: dicts, lists, strings,
    numbers, as pickle copies them). The copy is the model's own, equal to pyhf's.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        copied: dict[str, Any] = pickle.loads(pickle.dumps(dict(self), protocol=5))
        return copied


def patched_spec(
    workspace: pyhf.Workspace, measurement: dict[str, Any], operations: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The model specification ``workspace.model`` builds for one patch.

    pyhf deep-copies the whole specification to apply a patch, and ``pyhf.Model`` copies
    it again; here only the containers the patch changes are copied (the model's own copy
    follows, a JSON copy: :class:`_Specification`), which gives the same specification.
    """
    spec: dict[str, Any] = {
        "channels": workspace["channels"],
        "parameters": measurement["config"]["parameters"],
    }
    operations = plain_json(operations)
    copied: set[int] = set()
    for operation in operations:
        for key in ("path", "from"):
            if isinstance(operation.get(key), str):
                _copy_along(spec, operation[key], copied)
    return _Specification(jsonpatch.JsonPatch(operations).apply(spec, in_place=True))


def check_measurement(workspace: Mapping[str, Any], name: str | None) -> None:
    """Refuse a measurement the workspace lacks, naming those it has (before any work).

    Raises:
        InputError: No measurement by that name, or none at all.
    """
    names = [str(m.get("name")) for m in workspace.get("measurements", [])]
    if not names:
        raise InputError("the workspace defines no measurement (pyhf needs one)")
    if name is not None and name not in names:
        raise InputError(
            f"no measurement '{name}' in the workspace; its measurements: {', '.join(names)}",
            option="measurement",
            value=names[0],
        )


def _measurement(workspace: pyhf.Workspace, name: str | None) -> dict[str, Any]:
    """``workspace.get_measurement(measurement_name=name)`` without its schema check.

    pyhf validates the measurement on every call, and its validator keeps ~24 kB per call
    (measured: a worker grew 6 MB per 1,000 points, 0.6 GB over a 100,000-model scan); the
    workspace was validated whole when it was loaded, and the name checked by the caller
    (:func:`check_measurement`, in :func:`build_model`).
    """
    if name is None:
        return dict(workspace["measurements"][0])
    return dict(workspace["measurements"][workspace.measurement_names.index(name)])


def build_model(
    workspace: pyhf.Workspace,
    operations: Sequence[dict[str, Any]] | None,
    options: InferenceOptions,
    without_poi: bool = False,
) -> tuple[pyhf.pdf.Model, list[float]]:
    """Build the model of a workspace with one patch applied, and its observed data.

    This is ``workspace.model(patches=[patch])`` and ``workspace.data(model)``, as in
    plain pyhf, without pyhf's full copy of the specification per patch
    (:func:`patched_spec`). Schema validation of the patched model is skipped: the
    workspace and the patchset were validated once when they were loaded.

    Args:
        workspace: The background-only workspace.
        operations: The JSON patch operations of the signal point, or ``None``.
        options: Inference options (measurement, interpolation codes).
        without_poi: A workspace whose POI is in no sample (a background-only workspace)
            makes a model without POI, for fits, instead of an error.

    Returns:
        The model and the observed data (main + auxiliary).
    """
    check_measurement(workspace, options.measurement)
    kwargs: dict[str, Any] = {"validate": False}
    if options.modifier_settings is not None:
        kwargs["modifier_settings"] = options.pyhf_modifier_settings()
    if not operations:
        try:
            model = workspace.model(measurement_name=options.measurement, **kwargs)
        except pyhf.exceptions.InvalidModel as exc:
            if "not declared" not in str(exc):
                raise
            if not without_poi:
                poi = workspace.get_measurement(measurement_name=options.measurement)["config"]
                raise InputError(
                    f"the workspace's parameter of interest '{poi['poi']}' is in no sample: a "
                    "background-only workspace needs its patchset (give PATCHSET, or a folder "
                    "or archive holding both)"
                ) from None
            model = workspace.model(measurement_name=options.measurement, poi_name=None, **kwargs)
    else:
        measurement = _measurement(workspace, options.measurement)
        model = pyhf.Model(
            patched_spec(workspace, measurement, operations),
            poi_name=measurement["config"]["poi"],
            **kwargs,
        )
    data = workspace.data(model)
    check_physical(model, data)
    return model, data


def check_physical(model: pyhf.pdf.Model, data: Sequence[float]) -> None:
    """Refuse a model no fit can make sense of: counts that are negative or not finite.

    pyhf's schema accepts any number: a negative observed count makes -2lnL undefined
    (NaN), and the fits then run until their iteration limit (measured on the demo with
    two negative counts: minutes per point). Sample yields may be negative in a bin (as in
    published likelihoods with negative-weight simulation), but not NaN or infinite, nor
    the expected counts at the start of the fits.

    Raises:
        InputError: What is wrong, naming the channel and bin.
    """
    observed = np.asarray(data[: model.config.nmaindata], dtype=float)
    expected = np.asarray(model.expected_actualdata(model.config.suggested_init()), dtype=float)
    checks = (
        ("observed count", observed, ~np.isfinite(observed) | (observed < 0), "finite, >= 0"),
        ("expected count", expected, ~np.isfinite(expected), "finite"),
    )
    for name, values, wrong, rule in checks:
        bad = np.flatnonzero(wrong)
        if bad.size:
            channel, index = _channel_bin(model, int(bad[0]))
            raise InputError(
                f"{name} {values[bad[0]]} in channel '{channel}' bin {index} "
                f"({bad.size} bin(s) in all): counts must be {rule}"
            )


def _channel_bin(model: pyhf.pdf.Model, flat: int) -> tuple[str, int]:
    for channel in model.config.channels:
        size = model.config.channel_nbins[channel]
        if flat < size:
            return channel, flat
        flat -= size
    return "?", flat
