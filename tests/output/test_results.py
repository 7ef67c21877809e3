"""Result types: round trips and the flat (CSV) layout."""

from __future__ import annotations

import csv
import io

from fitaas.inference import FitResult, InferenceOptions
from fitaas.output.results import PointResult, ScanResult


def _fit(names: tuple[str, ...], values: tuple[float, ...]) -> FitResult:
    return FitResult(
        parameters=names,
        bestfit=values,
        uncertainties=tuple(v / 10 for v in values),
        twice_nll=12.5,
        converged=True,
        nfev=40,
        message="ok",
    )


def _point(patch: str, fit: FitResult | None, status: str = "ok") -> PointResult:
    return PointResult(patch, (1, 2), ("m1", "m2"), None, None, fit, status, None, 0.1)


def test_csv_of_a_scan_with_fits_has_every_parameter_column() -> None:
    result = ScanResult(
        workspace_digest="d",
        options=InferenceOptions(),
        pyhf_version="0.7.6",
        labels=("m1", "m2"),
        points=(
            _point("a", _fit(("mu", "lumi"), (1.5, 1.0))),
            _point("b", _fit(("mu", "lumi", "sig_unc"), (0.5, 0.98, 0.2))),
            _point("c", None, status="failed"),
        ),
    )
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert [row["fit_mu"] for row in rows] == ["1.5", "0.5", ""]
    assert [row["fit_lumi_error"] for row in rows] == ["0.1", "0.098", ""]
    assert [row["fit_sig_unc"] for row in rows] == ["", "0.2", ""]  # only in b's model
    assert rows[0]["twice_nll"] == "12.5" and rows[0]["fit_converged"] == "True"
    no_fits = ScanResult("d", InferenceOptions(), "0.7.6", (), (_point("a", None),))
    assert not any(name.startswith("fit_") for name in no_fits.rows()[0])


def test_csv_cells_that_begin_as_formulas_come_back_as_text() -> None:
    # jobs are shared with groups: a model named as a formula ran in a colleague's
    # spreadsheet (OWASP "CSV injection"); numbers stay numbers
    point = PointResult("=HYPERLINK(1)", (-1.5, 2), ("m1", "m2"), None, None, None, "ok", None, 0.1)
    result = ScanResult("d", InferenceOptions(), "0.7.6", ("=cmd|' /C calc'!A0", "m2"), (point,))
    rows = list(csv.reader(io.StringIO(result.to_csv())))
    assert rows[0][:3] == ["patch", "'=cmd|' /C calc'!A0", "m2"]
    assert rows[1][:3] == ["'=HYPERLINK(1)", "-1.5", "2"]


def test_counts_are_said_in_the_right_number() -> None:
    from fitaas.output.results import counted

    assert [counted(n, "point") for n in (0, 1, 2)] == ["0 points", "1 point", "2 points"]
