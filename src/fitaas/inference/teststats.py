"""The test statistics, one record each: what a new test statistic needs is one entry here.

pyhf keeps one registry (``pyhf.infer.utils.get_test_stat``) for the functions; this one
says, for each name fitaas accepts, what the rest of fitaas needs to know of it: where it
tests, where its toys are drawn, where its Asimov data sit, how a toy's value is clipped,
which of pyhf's numbers it reports, and how it is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fitaas.errors import InputError

__all__ = ["TEST_STATISTICS", "TestStatistic", "test_statistic"]


@dataclass(frozen=True)
class TestStatistic:
    """What fitaas needs to know of one test statistic.

    Attributes:
        name: Its name in options and on the command line (pyhf's ``get_test_stat`` name).
        label: How figures and tables write it.
        discovery: A discovery test (p0 and Z, tested at POI 0) rather than CLs.
        tilde: The POI's free fit is bounded at 0 (``qtilde``: the asymptotic formulae's
            second branch applies).
    """

    __test__ = False  # (not a pytest class)

    name: str
    label: str
    discovery: bool = False
    tilde: bool = False

    def tested_poi(self, poi_value: float) -> float:
        """The POI value the statistic tests (0 for a discovery test, as pyhf sets it)."""
        return 0.0 if self.discovery else float(poi_value)

    def generating_poi(self, ensemble: str, poi_value: float) -> float:
        """The POI value toys of ``ensemble`` are drawn at (pyhf's choice): ``"sb"``, the
        tested hypothesis; ``"b"``, the alternative (background only: 0; discovery: 1)."""
        if ensemble == "sb":
            return self.tested_poi(poi_value)
        return 1.0 if self.discovery else 0.0

    @property
    def asimov_poi(self) -> float:
        """The POI value of the Asimov data of the expected band (pyhf's)."""
        return 1.0 if self.discovery else 0.0

    def zero_where(self, muhat: Any, mu: float) -> Any:
        """Where the statistic is 0 by its one-sided definition (an array of ``muhat``):
        a discovery test below 0, the others above the tested value."""
        muhat = np.asarray(muhat)
        return muhat < 0 if self.discovery else muhat > mu

    @property
    def reported_row(self) -> int:
        """Which of the toys' rows pyhf reports first: CLs+b (p0, row 0) for a discovery
        test, CLs (row 2) otherwise."""
        return 0 if self.discovery else 2


TEST_STATISTICS: dict[str, TestStatistic] = {
    stat.name: stat
    for stat in (
        TestStatistic("qtilde", "q̃μ", tilde=True),
        TestStatistic("q", "qμ"),
        TestStatistic("q0", "q0", discovery=True),
    )
}


def test_statistic(name: str) -> TestStatistic:
    """The record of the test statistic ``name``.

    Raises:
        InputError: An unknown name, with the known ones.
    """
    try:
        return TEST_STATISTICS[name]
    except KeyError:
        raise InputError(
            f"option test_stat: '{name}' is not one of {tuple(TEST_STATISTICS)}"
        ) from None


test_statistic.__test__ = False  # type: ignore[attr-defined]  # (not a pytest test)
