"""One compiled objective per model structure, the arrays that differ passed as arguments.

pyhf's jax backend compiles its objective for every new ``Model`` object (seconds per
signal point). Points of one analysis share their structure: only a few of the model's
internal arrays (nominal rates, interpolation tensors, masks, constraint widths) differ.
A :class:`Structure` builds one *template* model, finds by tracing (pyhf's jax backend)
which of its arrays the likelihood reads, and compiles -2lnL and its gradient once with those arrays
as arguments. Any model of the same structure (built with pyhf's numpy backend, as
plain pyhf builds it) is then evaluated by handing its own arrays to the compiled code.

Every model is checked before use: the compiled -2lnL must equal pyhf's own (numpy)
-2lnL of that model at two parameter points, or the model is not served (the caller
falls back to plain pyhf). pyhf does the statistics; this only evaluates its likelihood
faster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyhf

from fitaas.fast.descriptions import LeafPath, keep_description, kept_description, structure_key
from fitaas.fast.exports import configure_jax, exported, exports_folder
from fitaas.fast.scales import constrained_parameters, evaluation_noise, parameter_scales

__all__ = [
    "Bound",
    "Structure",
]

Objective = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]

# The compiled -2lnL may differ from pyhf's by summation order only.
GUARD_RTOL = 1e-10
GUARD_ATOL = 1e-8
# Its gradient's projection on a step of 1e-4 constraint widths, against pyhf's -2lnL's
# finite differences along it (measured on the shared pallets: below 3e-7 of |grad|·|step|;
# a derivative of the wrong sign at a kink: above 0.1).
GUARD_STEP = 1e-4
GUARD_GRAD_RTOL = 1e-5
# Columns of the Hessian per compiled call of Hessian-vector products (see
# Structure._blocked_hessian).
HESSIAN_BLOCK = 32


def _walk(obj: Any, path: LeafPath, seen: set[int], out: list[LeafPath]) -> None:
    """Paths to every float or bool array reachable from a pyhf model object."""
    import jax

    if isinstance(obj, jax.Array | np.ndarray):
        if obj.dtype.kind in "fb":
            out.append(path)
        return
    if id(obj) in seen:
        return
    if isinstance(obj, dict):
        seen.add(id(obj))
        for key in sorted(obj, key=str):
            _walk(obj[key], (*path, (False, key)), seen, out)
    elif isinstance(obj, list):
        seen.add(id(obj))
        for index, value in enumerate(obj):
            _walk(value, (*path, (False, index)), seen, out)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("pyhf"):
        seen.add(id(obj))
        attributes = vars(obj)
        for key in sorted(attributes):
            _walk(attributes[key], (*path, (True, key)), seen, out)


def _get(obj: Any, path: LeafPath) -> Any:
    for attribute, key in path:
        obj = getattr(obj, key) if attribute else obj[key]
    return obj


def _put(obj: Any, path: LeafPath, value: Any) -> None:
    *head, (attribute, key) = path
    parent = _get(obj, tuple(head))
    if attribute:
        setattr(parent, key, value)
    else:
        parent[key] = value


def _guard(
    model: Any, compiled: Callable[[np.ndarray, np.ndarray], Any], scales: np.ndarray
) -> bool:
    """Whether the compiled -2lnL and its gradient are pyhf's for this very model.

    The values must equal pyhf's own (numpy) -2lnL at the start of every fit (pyhf's
    suggested initial values) and at a point off it; the gradient's projection on a
    direction must equal pyhf's -2lnL's slope along it, taken by finite differences of
    second order: one-sided towards lower values at the start (where normsys and histosys
    interpolations with a kink at 0 have theirs, and where a derivative that is not one of
    the function's pushed fits the wrong way), central at the other point.
    """
    init = np.asarray(model.config.suggested_init(), dtype=float)
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    # (off the start by a tenth of each parameter's width: a gamma of width 1e-6 moved by 0.1
    # would put -2lnL at 1e9, where rounding alone is larger than the slope's tolerance)
    shifted = np.clip(
        init + 0.1 * scales * np.cos(np.arange(len(init))), bounds[:, 0], bounds[:, 1]
    )

    def nll(pars: np.ndarray, data: np.ndarray) -> float:
        return float(pyhf.infer.mle.twice_nll(pars, data, model)[0])

    step = GUARD_STEP * scales * (0.5 + np.random.default_rng(0).random(len(init)))
    # (each point with the other's expected data: at its own, the gradient of the main
    # term vanishes whatever the rates' derivatives are)
    for pars, other, one_sided in ((init, shifted, True), (shifted, init, False)):
        data = np.asarray(model.expected_data(other), dtype=float)
        value, grad = compiled(pars, data)
        expected = nll(pars, data)
        noise = evaluation_noise(model, pars, data)
        if not abs(float(value) - expected) <= GUARD_ATOL + GUARD_RTOL * abs(expected) + noise:
            return False
        direction = np.where(pars - 2 * step >= bounds[:, 0], step, 0.0)
        if one_sided:  # second order: (3 f(x) - 4 f(x-h) + f(x-2h)) / 2h
            slope = (
                1.5 * expected
                - 2 * nll(pars - direction, data)
                + 0.5 * nll(pars - 2 * direction, data)
            )
        else:
            slope = 0.5 * (nll(pars + direction, data) - nll(pars - direction, data))
        projected = float(np.asarray(grad) @ direction)
        tolerance = GUARD_ATOL + GUARD_GRAD_RTOL * float(np.abs(grad) @ direction) + 4 * noise
        if not abs(slope - projected) <= tolerance:
            return False
    return True


@contextmanager
def _traced_under_jax() -> Iterator[Callable[[], None]]:
    """Within: pyhf's numpy backend, and a switch to its jax backend for tracing.

    The template is a numpy model, traced under pyhf's jax backend: built under jax, its
    construction would run op by op in jax, each op compiled on its own (~1 s). pyhf
    recomputes every live model's index tables when its backend changes (its
    "tensorlib_changed" event), op by op again; the models alive now, the template
    included, are numpy models that stay so, and pyhf's own switch turns the event off for
    the visit. The backend and the event are restored on leaving.
    """
    previous = pyhf.get_backend()
    muted = "tensorlib_changed" in getattr(pyhf.events, "__disabled_events", set())
    patched: list[Any] = []

    def to_jax() -> None:
        pyhf.events.disable("tensorlib_changed")
        pyhf.set_backend("jax", precision="64b")
        backend = type(pyhf.get_backend()[0])
        if not patched:  # (the attribute as the class holds it: contexts may nest)
            patched.append((backend, vars(backend).get("abs")))
            backend.abs = staticmethod(_left_abs)

    try:
        pyhf.set_backend("numpy", precision="64b")
        yield to_jax
    finally:
        for backend, original in patched:
            if original is None:
                del backend.abs
            else:
                backend.abs = original
        pyhf.set_backend(*previous)
        if not muted:
            pyhf.events.enable("tensorlib_changed")


def _left_abs(tensor: Any) -> Any:
    """``|x|`` whose derivative at 0 is -1: the left derivative, as pyhf's branches pick.

    pyhf's interpolations with a kink at 0 pick their ``α <= 0`` branch at 0 (code0:
    ``where(α > 0, up, down)``; code1: ``where(α > 0, up, down) ** |α|``). jax's own
    ``|x|`` has derivative +1 at 0, which makes code1's derivative at α = 0 the down
    branch's with the wrong sign (ln(down) instead of -ln(down)): a fit started at the
    nominal point (where pyhf starts every normsys) is pushed the wrong way or stops there.
    With this ``|x|`` every derivative at a kink is the left one, and the gradient is the
    derivative of one branch, as a gradient method needs.
    """
    return _abs_with_left_derivative()(tensor)


@cache
def _abs_with_left_derivative() -> Any:
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def left_abs(x: Any) -> Any:
        return jnp.abs(x)

    @left_abs.defjvp
    def _jvp(primals: Any, tangents: Any) -> Any:
        (x,), (dx,) = primals, tangents
        return jnp.abs(x), jnp.where(x > 0, 1.0, -1.0).astype(dx.dtype) * dx

    return left_abs


class Structure:
    """-2lnL and its gradient, compiled once for every model with this structure.

    Args:
        model: A model (numpy backend) whose structure this is; a template built from its
            specification is traced under pyhf's jax backend.
        modifier_settings: The interpolation codes the models are built with.
    """

    def __init__(self, model: Any, modifier_settings: dict[str, Any] | None = None) -> None:
        configure_jax()
        # Example inputs for tracing, computed by the given (numpy) model.
        init = np.asarray(model.config.suggested_init(), dtype=float)
        data = np.asarray(model.expected_data(init), dtype=float)
        kwargs: dict[str, Any] = {"validate": False, "poi_name": model.config.poi_name}
        if modifier_settings:
            kwargs["modifier_settings"] = modifier_settings
        self._template_inputs = (model.spec, kwargs)
        self._traced: Callable[..., Any] | None = None
        self._variants: dict[tuple[str, int, tuple[bool, ...]], Any] = {}
        key = structure_key(model, modifier_settings)
        described = kept_description(key)
        if described is not None:  # traced by an earlier process: its description and programs
            self.paths = [tuple((bool(a), k) for a, k in path) for path in described["paths"]]
            self.digest = str(described["digest"])
            arrays = self.arrays(model, [(tuple(s), np.dtype(d)) for s, d in described["shapes"]])
            if arrays is None:
                described = None
        traced = described is None
        if traced:
            arrays = self._trace(init, data)
        assert arrays is not None
        self.shapes = [(a.shape, a.dtype) for a in arrays]
        self.npars = len(init)
        self.ndata = len(data)
        self._example = (init, data, arrays)
        if traced:
            keep_description(key, self.paths, arrays, self.digest)
        self._value_and_grad = self._program(
            "value_and_grad", (init, data, arrays), lambda jax: jax.value_and_grad(self._function)
        )

    def _trace(self, init: np.ndarray, data: np.ndarray) -> list[np.ndarray]:
        """Build the template, find the arrays its likelihood reads (``paths``) and the
        digest of what it computes; returns the template's values of those arrays."""
        import jax

        spec, kwargs = self._template_inputs
        with _traced_under_jax() as to_jax:
            template = pyhf.Model(spec, **kwargs)
            to_jax()
            candidates: list[LeafPath] = []
            _walk(template, (), set(), candidates)

            def every(pars: Any, data: Any, arrays: Sequence[Any]) -> Any:
                return self._twice_nll(template, candidates, pars, data, arrays)

            values = [_get(template, p) for p in candidates]
            jaxpr = jax.make_jaxpr(every)(init, data, values).jaxpr
            read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
            read |= {id(v) for v in jaxpr.outvars}
            inputs = jaxpr.invars[2:]
            self.paths = [p for p, v in zip(candidates, inputs, strict=True) if id(v) in read]
            paths = self.paths

            def used(pars: Any, data: Any, arrays: Sequence[Any]) -> Any:
                return self._twice_nll(template, paths, pars, data, arrays)

            arrays = [np.asarray(_get(template, p)) for p in paths]
            lowered = jax.jit(jax.value_and_grad(used)).lower(init, data, arrays)
            # what this structure computes, for the programs kept on disk (exported)
            self.digest = hashlib.sha256(lowered.as_text().encode()).hexdigest()[:32]
        self._traced = used
        return arrays

    def _function(self, pars: Any, data: Any, arrays: Sequence[Any]) -> Any:
        """-2lnL as jax traces it (the template built and traced on first use: a structure
        read from disk needs it only for a program that is not there)."""
        if self._traced is None:
            init, data_, _ = self._example
            read, digest = self.paths, self.digest
            self._trace(init, data_)
            if self.paths != read:  # (the programs so far take the description's arrays)
                raise RuntimeError(
                    "a structure's description on disk names other arrays than its trace: "
                    f"delete {exports_folder()} and run again"
                )
            self.digest = digest  # (the programs on disk are named by it)
        assert self._traced is not None
        return self._traced(pars, data, arrays)

    def _program(self, name: str, example: tuple[Any, ...], make: Callable[[Any], Any]) -> Any:
        """``make(jax)`` jitted and compiled for ``example``, its program kept on disk by
        this structure's digest (:func:`fitaas.fast.exports.exported`)."""
        import jax

        with _traced_under_jax() as to_jax:
            to_jax()
            return exported(f"{name}-{self.digest}", lambda: jax.jit(make(jax)), example)

    def batched_value_and_grad(self, size: int) -> Any:
        """-2lnL and its gradient for ``size`` (parameters, data) pairs at once (``vmap``).

        Compiled once per size and kept: ``f(pars[size, npars], data[size, ndata], arrays)``
        gives ``(values[size], gradients[size, npars])``.
        """
        return self._variant("value_and_grad", size)

    def batched_value(self, size: int) -> Any:
        """-2lnL at ``size`` parameter points on one dataset: ``f(pars[size, npars], data,
        arrays)`` gives ``values[size]``; compiled once per size and kept."""
        return self._variant("value", size)

    def hessian(self) -> Any:
        """The Hessian of -2lnL, ``h(pars, data, arrays)``, compiled on first use."""
        return self._variant("hessian", 0)

    def stacked_value_and_grad(self, size: int, varying: tuple[bool, ...]) -> Any:
        """-2lnL and its gradient of ``size`` models of this structure at once (``vmap``).

        ``f(pars[size, npars], data[size, ndata], arrays)`` where the arrays marked in
        ``varying`` carry one row per model (``[size, ...]``) and the others are shared;
        compiled once per size and pattern and kept.
        """
        return self._variant("stacked", size, varying)

    def _variant(self, name: str, size: int, varying: tuple[bool, ...] = ()) -> Any:
        found = self._variants.get((name, size, varying))
        if found is not None:
            return found
        init, data, arrays = self._example
        pars, rows = np.tile(init, (size, 1)), np.tile(data, (size, 1))
        if name == "stacked":
            axes = [0 if v else None for v in varying]
            per_model = [
                np.stack([a] * size) if v else a for a, v in zip(arrays, varying, strict=True)
            ]
            pattern = "".join("1" if v else "0" for v in varying)
            made = self._program(
                f"stacked{size}-{pattern}",
                (pars, rows, per_model),
                lambda jax: jax.vmap(jax.value_and_grad(self._function), in_axes=(0, 0, axes)),
            )
        elif name == "hessian":
            made = self._blocked_hessian(init, data, arrays)
        elif name == "value":
            made = self._program(
                f"value{size}",
                (pars, data, arrays),
                lambda jax: jax.vmap(self._function, in_axes=(0, None, None)),
            )
        else:
            made = self._program(
                f"batched{size}",
                (pars, rows, arrays),
                lambda jax: jax.vmap(jax.value_and_grad(self._function), in_axes=(0, 0, None)),
            )
        self._variants[name, size, varying] = made
        return made

    def _blocked_hessian(self, init: Any, data: Any, arrays: Any) -> Any:
        """The Hessian as Hessian-vector products, ``HESSIAN_BLOCK`` columns per call.

        ``jax.hessian`` pushes every column through the gradient at once; on the CPU its
        intermediate arrays outgrow the caches, and blocks of 32 columns are ~3x faster
        (1Lbb, 126 parameters: 26 ms against 80 ms), to the same numbers.
        """

        def columns(jax: Any) -> Any:
            gradient = jax.grad(self._function)

            def blocked(pars: Any, rows: Any, arrays: Any, seeds: Any) -> Any:
                def product(seed: Any) -> Any:
                    return jax.jvp(lambda p: gradient(p, rows, arrays), (pars,), (seed,))[1]

                return jax.vmap(product)(seeds)

            return blocked

        size = min(self.npars, HESSIAN_BLOCK)
        seeds = np.zeros((size, self.npars))
        compiled = self._program(f"hessian{size}", (init, data, arrays, seeds), columns)
        identity = np.eye(self.npars)
        blocks = [identity[i : i + size] for i in range(0, self.npars, size)]
        blocks = [np.vstack([b, np.zeros((size - len(b), self.npars))]) for b in blocks]

        def hessian(pars: Any, rows: Any, arrays: Any) -> np.ndarray:
            found = [np.asarray(compiled(pars, rows, arrays, b), dtype=float) for b in blocks]
            return np.vstack(found)[: self.npars]

        return hessian

    @staticmethod
    def _twice_nll(
        template: Any, paths: Sequence[LeafPath], pars: Any, data: Any, arrays: Sequence[Any]
    ) -> Any:
        saved = [_get(template, p) for p in paths]
        try:
            for path, value in zip(paths, arrays, strict=True):
                _put(template, path, value)
            return -2.0 * template.logpdf(pars, data)[0]
        finally:
            for path, value in zip(paths, saved, strict=True):
                _put(template, path, value)

    def arrays(
        self, model: Any, shapes: Sequence[tuple[tuple[int, ...], Any]] | None = None
    ) -> list[np.ndarray] | None:
        """The model's own values of the arrays the likelihood reads (``None``: other shape)."""
        try:
            arrays = [np.asarray(_get(model, p)) for p in self.paths]
        except (AttributeError, KeyError, IndexError, TypeError):
            return None
        if [(a.shape, a.dtype) for a in arrays] != list(shapes or self.shapes):
            return None
        return arrays

    def bind(self, model: Any) -> Bound | None:
        """This structure with ``model``'s arrays, checked against pyhf's -2lnL (the guard).

        Returns:
            ``None`` if the model is not of this structure or fails the guard.
        """
        if model.config.npars != self.npars or model.config.nmaindata + model.config.nauxdata != (
            self.ndata
        ):
            return None
        found = self.arrays(model)
        if found is None:
            return None
        import jax

        arrays = jax.device_put(found)  # once per model, not once per call
        compiled_vg = self._value_and_grad
        last_data: list[Any] = [None, None]

        def value_and_grad(pars: np.ndarray, data: np.ndarray) -> tuple[float, np.ndarray]:
            if last_data[0] is not data:  # the fits of one minimisation share their data
                last_data[:] = [data, jax.device_put(data)]
            value, grad = compiled_vg(pars, last_data[1], arrays)
            return float(value), np.asarray(grad)

        scales = parameter_scales(model)
        if not _guard(model, lambda pars, data: compiled_vg(pars, data, arrays), scales):
            return None
        return Bound(self, arrays, value_and_grad, scales, constrained_parameters(model))


@dataclass(frozen=True)
class Bound:
    """A compiled structure with one model's arrays: what a model's fits evaluate.

    Attributes:
        structure: The structure.
        arrays: The model's own arrays (on jax's device).
        value_and_grad: -2lnL and its gradient of the model, ``f(pars, data)``.
        scales: Each parameter's constraint width (see :func:`parameter_scales`).
        constrained: Which parameters have a constraint term.
    """

    structure: Structure
    arrays: Any
    value_and_grad: Objective
    scales: np.ndarray
    constrained: np.ndarray
