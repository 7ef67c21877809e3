"""Scan results: one :class:`PointResult` per signal point, gathered in a :class:`ScanResult`.

``ScanResult.to_dict()`` is the JSON layout later tools rely on::

    {"workspace": {"digest": ...}, "options": {...}, "pyhf_version": ...,
     "results": [{"patch": NAME, "values": [...], "labels": [...], "poi_value": 1.0,
                  "cls_obs": x, "cls_exp": [5 floats, -2σ..+2σ], "clsb_obs": x, "clb_obs": x,
                  "upper_limit": {"obs": x, "exp": [5], ...} or null, "fit": {...} or null,
                  "status": "ok"|"failed", "error": null or text, "seconds": t}]}
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fitaas._version import __version__
from fitaas.errors import InputError
from fitaas.inference import FitResult, HypotestResult, InferenceOptions, UpperLimitResult
from fitaas.inference.results import strict_json
from fitaas.inference.teststats import test_statistic
from fitaas.inputs.json_files import load_json

if TYPE_CHECKING:  # pragma: no cover
    import pandas

__all__ = ["PointResult", "ScanResult", "counted", "csv_cell", "read_results", "status_line"]

_SIGMAS = ("m2", "m1", "0", "p1", "p2")


def counted(count: int, noun: str) -> str:
    """``"1 point"``, ``"2 points"``: a count and its noun, in the right number."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# A point's statuses, in the order tables show them.
STATUSES = ("ok", "suspect", "failed")


def status_line(count: int, noun: str, counts: Mapping[str, int]) -> str:
    """``"20 points: 19 ok, 0 suspect, 1 failed"``: the start of every summary line."""
    return f"{counted(count, noun)}: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES)


@dataclass(frozen=True)
class PointResult:
    """Everything computed for one signal point.

    Attributes:
        patch: The patch name (``None`` for an unpatched workspace).
        values: The patch's metadata values.
        labels: The patchset's labels for those values.
        hypotest: The CLs hypothesis test, if computed and successful.
        upper_limit: The upper limits, if asked for and successful.
        fit: The maximum-likelihood fit, if asked for and successful.
        status: ``"ok"``, ``"suspect"`` (numbers computed, but the fits look wrong even
            after retries) or ``"failed"``.
        error: What failed, in words.
        seconds: Compute time spent on the point (as first computed, when reused).
        reason: Why a point is suspect or failed (or what a retry fixed), in words.
        diagnostics: The hypothesis test's fits and checks (see
            :class:`fitaas.inference.diagnostics.Diagnosis`).
    """

    patch: str | None
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    hypotest: HypotestResult | None
    upper_limit: UpperLimitResult | None
    fit: FitResult | None
    status: str
    error: str | None
    seconds: float
    reason: str | None = None
    diagnostics: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether everything asked for this point was computed."""
        return self.status == "ok"

    @property
    def cls_obs(self) -> float | None:
        """Observed CLs, if the hypothesis test succeeded."""
        return self.hypotest.cls_obs if self.hypotest else None

    def to_dict(self) -> dict[str, Any]:
        """The point's entry of the results JSON."""
        ht = self.hypotest
        return {
            "patch": self.patch,
            "values": list(self.values),
            "labels": list(self.labels),
            "poi_value": ht.poi_value if ht else None,
            "cls_obs": ht.cls_obs if ht else None,
            "cls_exp": list(ht.cls_exp) if ht else None,
            "clsb_obs": ht.clsb_obs if ht else None,
            "clb_obs": ht.clb_obs if ht else None,
            **(ht.discovery_dict() if ht else {}),
            "calctype": ht.calctype if ht else None,
            "toys": ht.toys.to_dict() if ht and ht.toys else None,
            "upper_limit": self.upper_limit.to_dict() if self.upper_limit else None,
            "fit": self.fit.to_dict() if self.fit else None,
            "status": self.status,
            "error": self.error,
            "reason": self.reason,
            "diagnostics": self.diagnostics,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], test_stat: str = "qtilde") -> PointResult:
        """Inverse of :meth:`to_dict`."""
        ht = None
        if data.get("cls_obs") is not None:
            ht = HypotestResult.from_dict({"test_stat": test_stat, **data})
        ul = data.get("upper_limit")
        fit = data.get("fit")
        return cls(
            patch=data.get("patch"),
            values=tuple(data.get("values") or ()),
            labels=tuple(data.get("labels") or ()),
            hypotest=ht,
            upper_limit=UpperLimitResult.from_dict(ul) if ul else None,
            fit=FitResult.from_dict(fit) if fit else None,
            status=str(data.get("status", "ok")),
            error=data.get("error"),
            seconds=float(data.get("seconds") or 0.0),
            reason=data.get("reason"),
            diagnostics=data.get("diagnostics"),
        )


# What a spreadsheet reads as a formula at the start of a cell (OWASP, "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell no spreadsheet runs: text that begins as a formula would
    (``= + - @``, tab, carriage return) gets a leading ``'``, as OWASP recommends; numbers,
    and text that is a number (``-1.5``), stay as they are."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


@dataclass(frozen=True)
class ScanResult:
    """The results of a scan, in the order of the points asked for.

    Attributes:
        workspace_digest: Digest of the background-only workspace.
        options: The inference options used.
        pyhf_version: The pyhf version that computed the results.
        labels: The patchset's labels.
        points: One result per point.
        computed: How many (point, kind) results this run computed.
        reused: How many were taken from the results store.
        source: Where the pallet came from.
        units: Units of the labels, when the patchset gives them.
        kinds: Per task kind, how many results this run computed and how many it reused.
    """

    workspace_digest: str
    options: InferenceOptions
    pyhf_version: str
    labels: tuple[str, ...]
    points: tuple[PointResult, ...]
    computed: int = 0
    reused: int = 0
    source: str = ""
    units: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, dict[str, int]] = field(default_factory=dict)

    def __iter__(self) -> Iterator[PointResult]:
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, patch: str) -> PointResult:
        for point in self.points:
            if point.patch == patch:
                return point
        raise KeyError(patch)

    @property
    def failed(self) -> tuple[PointResult, ...]:
        """The points where something failed."""
        return tuple(p for p in self.points if p.status == "failed")

    @property
    def suspect(self) -> tuple[PointResult, ...]:
        """The points whose numbers exist but whose fits look wrong, even after retries."""
        return tuple(p for p in self.points if p.status == "suspect")

    def counts(self) -> dict[str, int]:
        """Number of points per status."""
        out: dict[str, int] = {}
        for point in self.points:
            out[point.status] = out.get(point.status, 0) + 1
        return out

    def excluded(self, cl: float = 0.95) -> tuple[int, int]:
        """Points excluded at confidence level ``cl``: observed, expected (median)."""
        level = 1.0 - cl
        tested = [p.hypotest for p in self.points if p.hypotest is not None]
        return sum(h.cls_obs < level for h in tested), sum(h.cls_exp[2] < level for h in tested)

    def status_cells(self) -> list[str]:
        """Points, ok, suspect and failed, as table cells."""
        counts = self.counts()
        return [str(len(self.points)), *(str(counts.get(s, 0)) for s in STATUSES)]

    def to_dict(self) -> dict[str, Any]:
        """The results JSON (see the module docstring)."""
        return {
            "workspace": {"digest": self.workspace_digest, "source": self.source},
            "options": self.options.to_dict(),
            "pyhf_version": self.pyhf_version,
            "fitaas_version": __version__,
            "labels": list(self.labels),
            "units": dict(self.units),
            "summary": {
                "points": len(self.points),
                **self.counts(),
                "computed": self.computed,
                "reused": self.reused,
                "kinds": self.kinds,
            },
            "results": [p.to_dict() for p in self.points],
        }

    def to_json(self, path: str | Path | None = None, indent: int | None = 1) -> str:
        """The results JSON as text, also written to ``path`` if given."""
        text = json.dumps(strict_json(self.to_dict()), indent=indent, allow_nan=False)
        if path is not None:
            _write_atomic(Path(path), text)
        return text

    def jsonl_header(self) -> dict[str, Any]:
        """The first line of the JSON Lines layout: the results JSON without its
        ``results`` and ``summary`` (which follow as lines)."""
        data = strict_json(self.to_dict())
        del data["results"], data["summary"]
        return dict(data)

    def to_jsonl(self, path: str | Path | None = None) -> str:
        """The results as JSON Lines (as a streamed scan writes them: a header line, one
        line per point, a summary line), also written to ``path`` if given."""
        data = strict_json(self.to_dict())
        points, summary = data.pop("results"), data.pop("summary")
        lines = [self.jsonl_header(), *points, {"summary": summary}]
        text = "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines)
        if path is not None:
            _write_atomic(Path(path), text)
        return text

    def work(self) -> str:
        """What this run computed and reused, per task kind, in words."""
        names = {"hypotest": "hypothesis tests", "upper_limit": "upper limits", "fit": "fits"}
        parts = []
        for kind, counts in self.kinds.items():
            said = [f"{n} {what}" for what, n in counts.items() if n]
            parts.append(f"{names.get(kind, kind)}: {', '.join(said) or 'none'}")
        return "; ".join(parts) or f"{self.computed} computed, {self.reused} reused"

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per point (the CSV and pandas layout); with fits, ``twice_nll``,
        ``fit_converged`` and every parameter's ``fit_<name>`` and ``fit_<name>_error``
        (empty where a point's model lacks it)."""
        fitted = [p.fit for p in self.points if p.fit is not None]
        parameters = list(dict.fromkeys(n for f in fitted for n in f.parameters))
        rows = []
        for point in self.points:
            row: dict[str, Any] = {"patch": point.patch}
            row.update({label: v for label, v in zip(self.labels, point.values, strict=False)})
            ht, ul = point.hypotest, point.upper_limit
            row["poi_value"] = ht.poi_value if ht else None
            row["cls_obs"] = ht.cls_obs if ht else None
            for sigma, i in zip(_SIGMAS, range(5), strict=True):
                row[f"cls_exp_{sigma}"] = ht.cls_exp[i] if ht else None
            row["clsb_obs"] = ht.clsb_obs if ht else None
            row["clb_obs"] = ht.clb_obs if ht else None
            if test_statistic(self.options.test_stat).discovery:
                row["p0_obs"] = ht.p0_obs if ht else None
                row["z_obs"] = ht.z_obs if ht else None
                z_exp = ht.z_exp if ht and ht.z_exp else (None,) * 5
                for sigma, value in zip(_SIGMAS, z_exp, strict=True):
                    row[f"z_exp_{sigma}"] = value
            if self.options.toybased:
                toys = ht.toys if ht else None
                row["cls_obs_error"] = toys.cls_obs_error if toys else None
                row["ntoys_sb"] = toys.ntoys_sb if toys else None
                row["ntoys_b"] = toys.ntoys_b if toys else None
                row["failed_toys"] = toys.failed_sb + toys.failed_b if toys else None
            row["ul_obs"] = ul.obs if ul else None
            for sigma, i in zip(_SIGMAS, range(5), strict=True):
                row[f"ul_exp_{sigma}"] = ul.exp[i] if ul else None
            if fitted:
                row.update(_fit_cells(point.fit, parameters))
            row["status"] = point.status
            row["error"] = point.error
            row["reason"] = point.reason
            row["strategy"] = (point.diagnostics or {}).get("strategy")
            row["seconds"] = point.seconds
            rows.append(row)
        return rows

    def to_csv(self, path: str | Path | None = None) -> str:
        """The results as CSV text (one row per point), also written to ``path`` if given."""
        rows = self.rows()
        buffer = io.StringIO()
        names = list(rows[0]) if rows else ["patch"]
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([csv_cell(name) for name in names])
        writer.writerows([csv_cell(row.get(name)) for name in names] for row in rows)
        if path is not None:
            _write_atomic(Path(path), buffer.getvalue())
        return buffer.getvalue()

    def to_pandas(self) -> pandas.DataFrame:
        """The results as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install 'fitaas[pandas]'") from None
        return pd.DataFrame(self.rows())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanResult:
        """Read the results JSON back."""
        options = InferenceOptions.from_dict(data.get("options", {}))
        summary = data.get("summary", {})
        return cls(
            workspace_digest=data["workspace"]["digest"],
            options=options,
            pyhf_version=str(data.get("pyhf_version", "")),
            labels=tuple(data.get("labels") or ()),
            points=tuple(
                PointResult.from_dict(p, options.test_stat) for p in data.get("results", [])
            ),
            computed=int(summary.get("computed", 0)),
            reused=int(summary.get("reused", 0)),
            kinds={
                str(k): {str(w): int(n) for w, n in v.items()}
                for k, v in (summary.get("kinds") or {}).items()
            },
            source=str(data["workspace"].get("source", "")),
            units=dict(data.get("units") or {}),
        )


def _fit_cells(fit: FitResult | None, parameters: Sequence[str]) -> dict[str, Any]:
    """A point's fit as CSV cells: -2lnL, convergence, each parameter's value and error."""
    cells: dict[str, Any] = {
        "twice_nll": fit.twice_nll if fit else None,
        "fit_converged": fit.converged if fit else None,
    }
    found = (
        dict(zip(fit.parameters, zip(fit.bestfit, fit.uncertainties, strict=True), strict=True))
        if fit
        else {}
    )
    for name in parameters:
        value, error = found.get(name, (None, None))
        cells[f"fit_{name}"] = value
        cells[f"fit_{name}_error"] = error
    return cells


def read_results(path: str | Path) -> ScanResult:
    """Read a results JSON file written by ``fitaas scan``.

    Raises:
        InputError: The file is missing, malformed or not a fitaas results file.
    """

    if Path(path).suffix.lower() == ".csv":
        raise InputError(
            f"{path}: a CSV table (for spreadsheets and pandas); fitaas reads its results "
            "from the JSON it writes: scan again with -o results.json (the store keeps every "
            "point, so nothing is computed twice)"
        )
    if str(path).lower().endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return _read_jsonl(Path(path))
    data = load_json(path)
    if not isinstance(data, dict) or "results" not in data or "workspace" not in data:
        raise InputError(f"{path}: not a fitaas results file (no 'workspace'/'results')")
    try:
        return ScanResult.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: damaged fitaas results file ({exc!r})") from None


def _read_jsonl(path: Path) -> ScanResult:
    """A streamed scan's JSON Lines (header, one line per point, maybe a summary): the
    summary is recounted from the lines when the scan did not finish."""
    import gzip

    opener: Any = gzip.open if path.name.endswith(".gz") else open
    header: dict[str, Any] | None = None
    results: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    if number > 1:  # a line cut short by an interrupted scan: the rest
                        break
                    raise InputError(
                        f"{path}: not a fitaas results file (line 1 is not JSON)"
                    ) from None
                if header is None:
                    header = item
                elif "summary" in item and "patch" not in item:
                    summary = item["summary"]
                else:
                    results.append(item)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(header, dict) or "workspace" not in header:
        raise InputError(f"{path}: not a fitaas results file (no 'workspace' header line)")
    try:
        return ScanResult.from_dict({**header, "results": results, "summary": summary})
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: damaged fitaas results file ({exc!r})") from None


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
