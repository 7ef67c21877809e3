"""The HTML report's contracts: one row per point with its numbers, statuses that show,
names that stay text, pictures embedded, nothing fetched from elsewhere."""

from __future__ import annotations

import base64
import dataclasses
import re
from concurrent.futures import Executor
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import pytest

import fitaas
from fitaas.output.report import html_report

matplotlib.use("Agg")


class _Page(HTMLParser):
    """The rows (cell texts and class) and images of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.images: list[dict[str, str]] = []
        self.sources: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "tr" and "class" in found:
            self.rows.append((found["class"], []))
        if tag == "td" and self.rows:
            self._cell = []
        if tag == "img":
            self.images.append(found)
        self.sources += [v for k, v in found.items() if k in ("src", "href")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def scanned(demo: Path, inline: Executor) -> fitaas.ScanResult:
    names = ["demo_500_0", "demo_700_0", "demo_900_0"]
    return fitaas.scan(demo, patches=names, kinds=("hypotest", "upper_limit"), compute=inline)


@pytest.mark.slow  # (the default run stays under 5 minutes: pytest -m slow)
def test_every_point_is_a_row_with_its_numbers(scanned: fitaas.ScanResult) -> None:
    page = _Page()
    page.feed(html_report(scanned, {}, cl=0.95))
    assert [cells[0] for _, cells in page.rows] == [p.patch for p in scanned]
    for point, (status, cells) in zip(scanned, page.rows, strict=True):
        assert point.hypotest is not None and point.upper_limit is not None
        assert status == point.status
        assert cells[1:3] == [str(v) for v in point.values]
        numbers = [float(c) for c in cells[3:11]]
        want = [
            point.hypotest.cls_obs,
            *point.hypotest.cls_exp,
            point.upper_limit.obs,
            point.upper_limit.exp[2],
        ]
        assert numbers == pytest.approx(want, rel=5e-4)  # four significant digits
    excluded = scanned.excluded(0.95)[0]
    assert f"{len(scanned)} points: 3 ok, 0 suspect" in html_report(scanned, {})
    assert f"{excluded} excluded at 95% CL" in html_report(scanned, {})


def test_failed_points_show_why_and_names_stay_text(scanned: fitaas.ScanResult) -> None:
    hostile = '<img src=x onerror="alert(1)">'
    broken = dataclasses.replace(
        scanned.points[0], patch=hostile, status="failed", error="fit <did not> converge",
        hypotest=None, upper_limit=None,
    )  # fmt: skip
    result = dataclasses.replace(scanned, points=(broken, *scanned.points[1:]))
    text = html_report(result, {}, title="a <b>title</b>")
    page = _Page()
    page.feed(text)
    status, cells = page.rows[0]
    assert status == "failed" and cells[0] == hostile  # shown as text, not markup
    assert cells[-1] == "failed: fit <did not> converge"
    assert cells[3:11] == ["–"] * 8
    assert page.images == [] and "<title>a &lt;b&gt;title&lt;/b&gt;</title>" in text
    assert "1 failed" in text


def test_figures_are_embedded_and_nothing_is_fetched(scanned: fitaas.ScanResult) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([p.values[0] for p in scanned], [p.cls_obs for p in scanned])
    page = _Page()
    page.feed(html_report(scanned, {"CLs <obs>": figure}))
    plt.close(figure)
    assert [image["alt"] for image in page.images] == ["CLs <obs>"]
    match = re.fullmatch(r"data:image/png;base64,(.+)", page.images[0]["src"])
    assert match is not None
    assert base64.b64decode(match.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(source.startswith("data:") for source in page.sources)
